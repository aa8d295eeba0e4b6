"""Mel shards: the log-mel spectrograms of many songs in one HDF5 file (docs/FORMATS.md), and
the failures TSV written beside each.

`ShardWriter` appends songs in call order; `read_index` checks a shard and returns its small
index (track IDs, frame offsets); `open_mel` opens its `mel` dataset for reading slices.
`mtt.formats.mel_store.MelStore` reads crops and songs from many shards with these.
"""
import hashlib
from pathlib import Path

import h5py
import numpy as np

from mtt.atomic import atomic_path
from mtt.formats.hdf5 import DatasetRefused, checked_dataset
from mtt.frontend import N_MELS, frontend_params

FORMAT = "mtt-mel-shard"
VERSION = 1  # the version written
READABLE_VERSIONS = (1,)
CHUNK_FRAMES = 128  # HDF5 chunk of `mel`: 128 frames x 128 bands x 2 bytes = 32 KiB
WRITE_CHUNKS = 64  # songs are buffered and written 64 whole chunks (2 MiB) at a time
FAILURE_COLUMNS = ("track_id", "path", "reason")


def source_fingerprint(track_ids, paths, min_seconds: float, audio_root=None) -> str:
    """The `source_sha256` attribute: identifies what a shard was built from (rows,
    --min-seconds and the resolved --audio-root), so a rerun on other input rebuilds it."""
    digest = hashlib.sha256(f"{FORMAT} {VERSION} {min_seconds!r}\n".encode())
    if audio_root is not None:
        digest.update(f"audio root {Path(audio_root).resolve()}\n".encode())
    for track_id, path in zip(track_ids, paths):
        digest.update(f"{track_id}\t{path}\n".encode())
    return digest.hexdigest()


def stored_fingerprint(path: Path) -> str | None:
    """The `source_sha256` of the shard at `path`; None when it has none or is unreadable."""
    try:
        with h5py.File(path, "r") as shard:
            return shard.attrs.get("source_sha256")
    except OSError:  # unreadable or foreign file
        return None


def shard_attributes(min_seconds: float, fingerprint: str) -> dict:
    return {"format": FORMAT, "format_version": VERSION, **frontend_params(),
            "min_seconds": float(min_seconds), "source_sha256": fingerprint}


class ShardWriter:
    """Appends songs to a new shard file in call order; `close()` writes the index."""

    def __init__(self, path: Path, attributes: dict):
        self.file = h5py.File(path, "w")
        for key, value in attributes.items():
            self.file.attrs[key] = value
        # track_times=False: HDF5 would otherwise store creation times and the bytes would
        # differ between two runs over the same input.
        self.mel = self.file.create_dataset(
            "mel", shape=(0, N_MELS), maxshape=(None, N_MELS), dtype=np.float16,
            chunks=(CHUNK_FRAMES, N_MELS), track_times=False)
        self.track_ids: list[str] = []
        self.offsets = [0]
        self.num_samples: list[int] = []
        self._pending: list[np.ndarray] = []
        self._pending_frames = 0
        self._written_frames = 0
        self._closing = False

    def add(self, track_id: str, mel: np.ndarray, num_samples: int) -> None:
        """Append one song: `mel` (frames, 128) in dB, stored as float16."""
        if mel.ndim != 2 or mel.shape[1] != N_MELS or mel.shape[0] < 1:
            raise ValueError(f"track {track_id!r}: mel must be (frames >= 1, {N_MELS}), "
                             f"got {mel.shape}")
        mel = np.asarray(mel, dtype=np.float16)
        self.track_ids.append(track_id)
        self.offsets.append(self.offsets[-1] + len(mel))
        self.num_samples.append(num_samples)
        self._pending.append(mel)
        self._pending_frames += len(mel)
        if self._pending_frames >= WRITE_CHUNKS * CHUNK_FRAMES:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._pending:
            return
        block = np.concatenate(self._pending)
        count = len(block) // CHUNK_FRAMES * CHUNK_FRAMES if whole_chunks_only else len(block)
        start = self._written_frames
        self.mel.resize(start + count, axis=0)
        self.mel[start:start + count] = block[:count]
        self._written_frames += count
        rest = block[count:]
        self._pending = [rest] if len(rest) else []
        self._pending_frames = len(rest)

    def abort(self) -> None:
        """Close after a failure, once: closing again after a failed close (a full disk)
        crashes libhdf5, so a failed close leaves the handle to the OS."""
        if self._closing:
            return
        self._closing = True
        try:
            self.file.close()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass

    def close(self) -> None:
        self._closing = True
        self._flush(whole_chunks_only=False)
        n = len(self.track_ids)
        self.file.create_dataset("track_id", shape=(n,), dtype=h5py.string_dtype("utf-8"),
                                 data=np.array(self.track_ids, dtype=object), track_times=False)
        self.file.create_dataset("offset", data=np.array(self.offsets, dtype=np.int64),
                                 track_times=False)
        self.file.create_dataset("num_samples", data=np.array(self.num_samples, dtype=np.int64),
                                 track_times=False)
        self.file.close()


def read_index(path: str) -> tuple[list[str], np.ndarray]:
    """track_ids and offsets of one shard, after checking it is a mel shard of this front end."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: mel shard not found")
    try:
        shard = h5py.File(path, "r", locking=False)
    except OSError as error:
        raise ValueError(f"{path}: not an HDF5 file ({error})") from None
    with shard:
        if shard.attrs.get("format") != FORMAT or \
                shard.attrs.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"{path}: not a mel shard of a supported version "
                             f"(format={shard.attrs.get('format')!r}, "
                             f"version={shard.attrs.get('format_version')!r})")
        for key, expected in frontend_params().items():
            stored = shard.attrs.get(key)
            if isinstance(stored, bytes):
                stored = stored.decode()
            if stored != expected:
                raise ValueError(f"{path}: made with a different front end "
                                 f"({key}={stored!r}, this code uses {expected!r})")
        datasets = {}
        for key in ("mel", "offset", "track_id"):
            # stored in the file, as large on disk as declared (mtt.formats.hdf5): checked
            # before anything is read
            datasets[key] = checked_dataset(shard, key, path)
            if datasets[key] is None:
                raise ValueError(f"{path}: not a mel shard (no {key!r} dataset)")
        if "num_samples" in shard:
            checked_dataset(shard, "num_samples", path)
        mel, offset = datasets["mel"], datasets["offset"]
        if mel.ndim != 2 or mel.shape[1] != N_MELS or mel.dtype.kind != "f":
            raise ValueError(f"{path}: 'mel' is {mel.dtype} {mel.shape}; a shard's mel is "
                             f"float (frames, {N_MELS})")
        if offset.ndim != 1 or offset.dtype.kind not in "iu":
            raise ValueError(f"{path}: 'offset' is {offset.dtype} {offset.shape}; expected "
                             "1-D integers")
        ids = datasets["track_id"]
        if ids.ndim != 1:
            raise ValueError(f"{path}: 'track_id' is {ids.shape}; expected 1-D strings")
        if len(offset) != len(ids) + 1:  # shapes agree before any is read
            raise ValueError(f"{path}: offset has {len(offset)} entries for "
                             f"{len(ids)} tracks (expected one more)")
        try:
            track_ids = list(datasets["track_id"].asstr()[()])
        except (TypeError, ValueError, OSError) as error:
            raise ValueError(f"{path}: 'track_id' is not a list of strings ({error})") from None
        offsets = offset[()].astype(np.int64)
        n_frames = mel.shape[0]
    if len(offsets) != len(track_ids) + 1:
        raise ValueError(f"{path}: offset has {len(offsets)} entries for "
                         f"{len(track_ids)} tracks (expected one more)")
    if offsets[0] != 0 or (np.diff(offsets) < 0).any():
        bad = int(np.flatnonzero(np.diff(offsets) < 0)[0]) + 1 if offsets[0] == 0 else 0
        raise ValueError(f"{path}: offsets are not ascending from 0 (entry {bad} is "
                         f"{int(offsets[bad])})")
    if offsets[-1] != n_frames:
        raise ValueError(f"{path}: the last offset is {int(offsets[-1])} but 'mel' has "
                         f"{n_frames} frames")
    return track_ids, offsets


def open_mel(path: str) -> h5py.Dataset:
    """The `mel` dataset of a shard, open for reading slices (close it with `.file.close()`)."""
    # shards never change once renamed into place: no HDF5 file locks, which some cluster file
    # systems do not support
    shard = h5py.File(path, "r", locking=False)
    try:
        mel = checked_dataset(shard, "mel", path)
    except DatasetRefused:
        shard.close()
        raise
    if mel is None:
        shard.close()
        raise ValueError(f"{path}: not a mel shard (no 'mel' dataset)")
    return mel


def write_failures(path: Path, failures: list[tuple[int, str, str, str]]) -> None:
    """Failures TSV (track_id, path, reason), one line per failure, reasons without tabs."""
    with atomic_path(path) as partial, open(partial, "w", newline="", encoding="utf-8") as out:
        out.write("\t".join(FAILURE_COLUMNS) + "\n")
        for _, track_id, track_path, reason in failures:
            out.write(f"{track_id}\t{track_path}\t{' '.join(reason.split())}\n")
