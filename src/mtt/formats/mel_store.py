"""`MelStore`: read songs, random crops or evenly spaced chunks from one or many mel shards.

The index (track_id -> shard, first frame, frame count) is built from each shard's small
`track_id` and `offset` datasets, checked by `mtt.formats.mel_shard.read_index`; the `mel` data
is read slice by slice, never whole. HDF5 files are opened lazily and reopened in a new process,
so a store can be handed to DataLoader workers (fork or spawn: it pickles without its open
files).
"""
import os
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from mtt.formats.mel_shard import open_mel, read_index
from mtt.frontend import DB_FLOOR, N_MELS


class NonFiniteMel(ValueError):
    """A song whose stored log-mel holds NaN or infinity, named with its shard, in one line: also
    when a DataLoader worker raised it (torch rebuilds the error in the main process from a
    message holding the worker's traceback, whose last line is this error's own)."""

    def __init__(self, message=""):
        last = str(message).strip().splitlines()[-1] if str(message).strip() else ""
        super().__init__(last.split("NonFiniteMel: ", 1)[-1])


class MelStore:
    def __init__(self, paths):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [str(Path(p)) for p in paths]
        track_ids, shard_of, starts, stops = [], [], [], []
        for shard, path in enumerate(self.paths):
            ids, offsets = read_index(path)
            track_ids.extend(ids)
            shard_of.append(np.full(len(ids), shard, dtype=np.int32))
            starts.append(offsets[:-1])
            stops.append(offsets[1:])
        self.track_ids: list[str] = track_ids
        self._shard = np.concatenate(shard_of) if shard_of else np.zeros(0, np.int32)
        self._start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self._stop = np.concatenate(stops) if stops else np.zeros(0, np.int64)
        self._row = {}
        for row, track_id in enumerate(track_ids):
            first = self._row.setdefault(track_id, row)
            if first != row:
                raise ValueError(f"track {track_id!r} is stored twice: in "
                                 f"{self.paths[self._shard[first]]} and "
                                 f"{self.paths[self._shard[row]]}")
        self._pid = None
        self._datasets = {}

    # ---------------------------------------------------------------------------------- index

    def __len__(self) -> int:
        return len(self.track_ids)

    def __contains__(self, track_id) -> bool:
        return track_id in self._row

    def keep_stored(self, track_ids, targets, what: str):
        """(track_ids, targets) without the tracks that have no mel here (e.g. failed
        decoding), saying how many on stderr; `what` names the tracks in that line."""
        keep = np.array([t in self._row for t in track_ids], dtype=bool)
        if not keep.all():
            print(f"note: {int((~keep).sum())} of {len(track_ids)} {what} tracks have no stored "
                  "mel; skipping them", file=sys.stderr)
        return [t for t, k in zip(track_ids, keep) if k], targets[keep]

    def num_frames(self, track_id: str) -> int:
        row = self._lookup(track_id)
        return int(self._stop[row] - self._start[row])

    def _lookup(self, track_id: str) -> int:
        try:
            return self._row[track_id]
        except KeyError:
            raise KeyError(f"track {track_id!r} is in none of the shards {self.paths}") from None

    # ---------------------------------------------------------------------------------- reads

    def read_song(self, track_id: str) -> np.ndarray:
        """The whole song, (128, frames) float32 dB."""
        row = self._lookup(track_id)
        return self._read(row, 0, int(self._stop[row] - self._start[row]))

    def read_crop(self, track_id: str, frames: int, rng: np.random.Generator) -> np.ndarray:
        """`frames` consecutive frames from a uniformly random start, (128, frames) float32.

        A song shorter than `frames` is returned whole, padded at the end with the dB floor."""
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        row = self._lookup(track_id)
        length = int(self._stop[row] - self._start[row])
        if length >= frames:
            start = int(rng.integers(0, length - frames + 1))
            return self._read(row, start, frames)
        return _pad(self._read(row, 0, length), frames)

    def read_chunks(self, track_id: str, starts, frames: int) -> np.ndarray:
        """The chunks of `frames` frames at `starts` (a plan of `mtt.inference.songs.chunk_starts`):
        (len(starts), 128, frames) float32. A song of at most `frames` frames is padded, each
        chunk a copy of it."""
        if len(starts) < 1 or frames < 1:
            raise ValueError(f"starts and frames must not be empty, got {len(starts)}, {frames}")
        row = self._lookup(track_id)
        length = int(self._stop[row] - self._start[row])
        if length <= frames:
            song = _pad(self._read(row, 0, length), frames)
            return np.repeat(song[None], len(starts), axis=0)
        if max(starts) + frames > length:
            raise ValueError(f"{track_id}: a chunk at {max(starts)} ends after its {length} frames")
        if len(starts) * frames < length:  # sparse chunks: read only them
            return np.stack([self._read(row, int(s), frames) for s in starts])
        song = self._read(row, 0, length)
        return np.stack([song[:, s:s + frames] for s in starts])

    def _read(self, row: int, start: int, frames: int) -> np.ndarray:
        mel = self._dataset(int(self._shard[row]))
        first = int(self._start[row]) + start
        block = torch.from_numpy(mel[first:first + frames])  # (frames, 128) float16
        # one pass that converts and transposes: twice as fast as numpy's astype + transpose
        out = torch.empty((N_MELS, len(block)), dtype=torch.float32).copy_(block.T)
        if not torch.isfinite(out).all():  # a shard we wrote never holds any (issue 33)
            raise NonFiniteMel(f"{self.paths[int(self._shard[row])]}: the log-mel of track "
                               f"{self.track_ids[row]!r} holds NaN or infinite values")
        return out.numpy()

    def _dataset(self, shard: int) -> h5py.Dataset:
        if self._pid != os.getpid():  # first use, or a new (forked) process: own handles
            self._datasets = {}
            self._pid = os.getpid()
        mel = self._datasets.get(shard)
        if mel is None:
            mel = open_mel(self.paths[shard])
            self._datasets[shard] = mel
        return mel

    def close(self) -> None:
        for mel in self._datasets.values():
            mel.file.close()
        self._datasets = {}

    # ------------------------------------------------------------------------------- pickling

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_datasets"] = {}
        state["_pid"] = None
        return state


def _pad(mel: np.ndarray, frames: int) -> np.ndarray:
    padded = np.full((N_MELS, frames), DB_FLOOR, dtype=np.float32)
    padded[:, :mel.shape[1]] = mel
    return padded
