"""`mtt preprocess`: decode the tracks of a TSV into one log-mel HDF5 shard.

Every track is decoded (`mtt.audio.load_audio`) and turned into log-mel by the model's own front
end (`mtt.frontend.LogMel`) in worker processes; the main process writes the songs in TSV order,
so the shard is byte-identical whatever the number of workers or their timing. The shard is
written under a temporary name and renamed when complete; the format (layout, writer, the
failures TSV) is `mtt.formats.mel_shard`. A track that cannot be used is listed in the failures
TSV and never stops the run.
"""
import argparse
import mmap
import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mtt.atomic import atomic_path
from mtt.audio import AudioError, load_audio
from mtt.formats.mel_shard import (ShardWriter, shard_attributes, source_fingerprint,
                                   stored_fingerprint, write_failures)
from mtt.frontend import N_MELS, SAMPLE_RATE, LogMel, num_frames
from mtt.formats.tsv_dialect import TsvError, read_tsv


class UsageError(Exception):
    """Arguments or inputs that make the job impossible (exit code 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio-root", required=True, type=Path,
                        help="folder the `path` column of the tracks TSV is relative to")
    parser.add_argument("--tracks", required=True, type=Path,
                        help="tab-separated file with a header and columns track_id and path")
    parser.add_argument("--out", required=True, type=Path, help="HDF5 shard to write")
    parser.add_argument("--failures", required=True, type=Path,
                        help="TSV of the tracks that could not be used (track_id, path, reason)")
    parser.add_argument("--workers", type=int, default=1,
                        help="decoding processes (default 1); this process only writes")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="tracks shorter than this are failures (default 1.0)")
    parser.add_argument("--shard-index", type=int, default=0,
                        help="with --num-shards N: take rows I, I+N, I+2N, ... of the TSV")
    parser.add_argument("--num-shards", type=int, default=1,
                        help="number of shards the TSV is split into (default 1)")


def run(args) -> int:
    try:
        tracks = select_tracks(args.tracks, args.shard_index, args.num_shards)
        check_options(args)
    except UsageError as error:
        print(f"mtt preprocess: error: {error}", file=sys.stderr)
        return 2
    fingerprint = source_fingerprint(tracks["track_id"], tracks["path"], args.min_seconds,
                                     args.audio_root)
    if is_up_to_date(args.out, args.failures, fingerprint):
        print(f"mtt preprocess: {args.out} is complete and up to date; nothing to do",
              file=sys.stderr)
        return 0
    try:
        stored, failures = build_shard(tracks, args.audio_root, args.out, args.failures,
                                       workers=args.workers, min_seconds=args.min_seconds,
                                       fingerprint=fingerprint)
    except OSError as error:
        # libhdf5's messages run over lines: the system's reason (e.g. no space left) is one
        reason = (os.strerror(error.errno) if error.errno else
                  " ".join(str(error).split())[:300])
        print(f"mtt preprocess: error: cannot write {args.out}: {reason}", file=sys.stderr)
        if getattr(error, "hdf5_close_failed", False):
            # libhdf5 crashes (SIGSEGV) closing a file whose close failed, as it would at
            # interpreter exit: leave without that cleanup (the partial file is removed)
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)
        return 1
    print(f"mtt preprocess: stored {stored} songs in {args.out}; "
          f"{failures} failures listed in {args.failures}", file=sys.stderr)
    return 0


def check_options(args) -> None:
    if not args.audio_root.is_dir():
        raise UsageError(f"--audio-root {args.audio_root}: not a folder")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not args.min_seconds >= 0:
        raise UsageError("--min-seconds must be a number >= 0")


# ---------------------------------------------------------------------------------------- input

def select_tracks(tracks_tsv: Path, shard_index: int = 0, num_shards: int = 1) -> pd.DataFrame:
    """Rows shard_index, shard_index + num_shards, ... of the TSV: columns track_id, path,
    duplicate (True for a track_id already seen earlier anywhere in the TSV)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard-index {shard_index} must be in [0, --num-shards "
                         f"{num_shards}) and --num-shards at least 1")
    try:
        table = read_tsv(tracks_tsv)
    except FileNotFoundError:
        raise UsageError(f"--tracks {tracks_tsv}: file not found") from None
    except TsvError as error:
        raise UsageError(f"--tracks {error}") from None
    except OSError as error:
        raise UsageError(f"--tracks {tracks_tsv}: not a readable TSV ({error})") from None
    missing = [column for column in ("track_id", "path") if column not in table.columns]
    if missing:
        raise UsageError(f"--tracks {tracks_tsv}: missing column(s) {', '.join(missing)} "
                         f"(found: {', '.join(map(str, table.columns))})")
    table = table[["track_id", "path"]].assign(
        duplicate=table["track_id"].duplicated(keep="first"))
    return table.iloc[shard_index::num_shards].reset_index(drop=True)


def is_up_to_date(out: Path, failures: Path, fingerprint: str) -> bool:
    """Both outputs exist and the shard was built from this input (an unreadable or foreign
    file is rebuilt)."""
    return out.is_file() and failures.is_file() and stored_fingerprint(out) == fingerprint


# ------------------------------------------------------------------------------------- workers

@dataclass
class TrackResult:
    mel: np.ndarray | None  # (frames, 128) float16, or None when the track failed
    num_samples: int
    reason: str | None
    in_slot: int = 0  # frames of the mel left in the task's shared-memory slot (mel is None)


_logmel: LogMel | None = None
_slots: "MelSlots | None" = None  # this worker's view of its parent's MelSlots


class MelSlots:
    """Shared memory through which forked workers hand their mels to the parent.

    A 30 s song's mel (330 KB of float16) through the pool's result pipe costs its worker
    ~0.65 ms, waiting for the parent to drain the pipe 64 KB at a time: a fifth of the log-mel's
    own time. Here the worker copies it into a slot (pages mapped in both processes, touched
    once) and sends only its frame count. Task i writes slot i mod `count`; the parent copies a
    mel out before submitting the task that reuses its slot. A mel over `SLOT_BYTES` (a song
    over 12.7 minutes) goes through the pipe. Untouched pages cost no memory.
    """

    SLOT_BYTES = 1 << 23  # 32,768 frames

    def __init__(self, count: int):
        self.count = count
        try:  # anonymous and MAP_SHARED: the forked workers see it
            self.memory = mmap.mmap(-1, count * self.SLOT_BYTES)
        except OSError:  # e.g. strict overcommit refusing the reservation: every mel by pipe
            self.memory = None

    def _view(self, slot: int, frames: int) -> np.ndarray:
        return np.ndarray((frames, N_MELS), np.float16, buffer=self.memory,
                          offset=slot * self.SLOT_BYTES)

    def put(self, slot: int, result: TrackResult) -> TrackResult:
        """In a worker: move the result's mel into `slot` when it fits."""
        if self.memory is not None and result.mel is not None \
                and result.mel.nbytes <= self.SLOT_BYTES:
            self._view(slot, len(result.mel))[...] = result.mel
            result.in_slot, result.mel = len(result.mel), None
        return result

    def take(self, slot: int, result: TrackResult) -> TrackResult:
        """In the parent: a copy of the mel the worker left in `slot`."""
        if result.in_slot:
            result.mel, result.in_slot = self._view(slot, result.in_slot).copy(), 0
        return result

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this worker when the process that forked it dies (kill -9 or SIGTERM of
    `mtt preprocess`), so no worker outlives it holding memory and the partial shard."""
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(parent: int | None = None, slots: MelSlots | None = None) -> None:
    global _logmel, _slots
    if parent is not None:
        _die_with_parent(parent)
    torch.set_num_threads(1)  # one process per core; intra-op threads would oversubscribe
    _logmel = LogMel()
    _slots = slots


def process_track(task: tuple[str, float]) -> TrackResult:
    """Decode one file and compute its log-mel; every problem becomes a failure reason."""
    global _logmel
    path, min_seconds = task
    if _logmel is None:
        _logmel = LogMel()
    try:
        waveform = load_audio(path)
        seconds = len(waveform) / SAMPLE_RATE
        if seconds < min_seconds:
            return TrackResult(None, len(waveform),
                               f"too short: {seconds:.3f} s < --min-seconds {min_seconds:g}")
        mel = _logmel(torch.from_numpy(waveform))  # (128, frames) float32 dB
        mel = mel.T.to(torch.float16).contiguous().numpy()
        if mel.shape != (num_frames(len(waveform)), N_MELS):
            raise RuntimeError(f"front end gave {mel.shape[0]} frames, "
                               f"expected {num_frames(len(waveform))}")
        return TrackResult(mel, len(waveform), None)
    except AudioError as error:
        return TrackResult(None, 0, error.reason)
    except Exception as error:  # e.g. out of memory on a huge file: one file never stops a run
        return TrackResult(None, 0, f"unexpected error: {type(error).__name__}: {error}")


def _process_track_into(task: tuple[str, float], slot: int) -> TrackResult:
    """`process_track` in a pool worker, its mel handed over in shared memory slot `slot`."""
    return _slots.put(slot, process_track(task))


def _results(tasks: list, workers: int):
    """`process_track` of every task, in task order, computed by `workers` processes.

    At most a few tasks per worker are in flight, so memory stays flat whatever the list
    length. A worker that dies (a decoder crash on a malicious file) breaks the pool: the tasks
    then in flight are rerun one by one in fresh processes, so the file that kills its process
    becomes a failure and the run goes on.
    """
    in_flight: deque = deque()  # (task index, future), oldest first
    following = 0
    slots = MelSlots(4 * workers)  # as many as tasks in flight
    pool = _new_pool(workers, slots)
    try:
        while in_flight or following < len(tasks):
            while following < len(tasks) and len(in_flight) < slots.count:
                in_flight.append((following, pool.submit(
                    _process_track_into, tasks[following], following % slots.count)))
                following += 1
            index, future = in_flight.popleft()
            try:
                result = slots.take(index % slots.count, future.result())
            except BrokenProcessPool:
                pool.shutdown(cancel_futures=True)
                for index in [index, *(i for i, _ in in_flight)]:
                    yield _process_alone(tasks[index])
                in_flight.clear()
                pool = _new_pool(workers, slots)
            else:
                yield result
    finally:
        pool.shutdown(cancel_futures=True)
        slots.close()


def _new_pool(workers: int, slots: MelSlots | None = None) -> ProcessPoolExecutor:
    # fork: workers start in milliseconds and inherit the imported modules (and the slots'
    # shared memory: initargs reach a forked worker without pickling)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_init_worker, initargs=(os.getpid(), slots))


def _process_alone(task) -> TrackResult:
    with _new_pool(1) as pool:
        try:
            return pool.submit(process_track, task).result()
        except BrokenProcessPool:
            return TrackResult(None, 0, "the decoding process crashed on this file")


# -------------------------------------------------------------------------------------- output

def build_shard(tracks: pd.DataFrame, audio_root: Path, out: Path, failures_tsv: Path, *,
                workers: int = 1, min_seconds: float = 1.0, fingerprint: str = "",
                progress_bar: bool = True) -> tuple[int, int]:
    """Write the shard and the failures TSV; returns (songs stored, failures)."""
    failures: list[tuple[int, str, str, str]] = []  # (row, track_id, path, reason)
    to_decode: list[int] = []
    for row, (track_id, path, duplicate) in enumerate(tracks.itertuples(index=False)):
        if not track_id or not path:
            failures.append((row, track_id, path, "empty track_id or path"))
        elif duplicate:
            failures.append((row, track_id, path, "duplicate track_id (kept its first row)"))
        else:
            to_decode.append(row)
    tasks = [(str(audio_root / tracks.at[row, "path"]), min_seconds) for row in to_decode]
    workers = max(1, min(workers, len(tasks)))
    with atomic_path(out) as partial:
        writer = ShardWriter(partial, shard_attributes(min_seconds, fingerprint))
        try:
            # in a log file (not a terminal) a progress line every minute is enough
            progress = tqdm(_results(tasks, workers), total=len(tasks), unit="song",
                            desc=out.name, file=sys.stderr,
                            mininterval=1.0 if sys.stderr.isatty() else 60.0,
                            disable=not progress_bar)
            for result, row in zip(progress, to_decode):
                track_id, path = tracks.at[row, "track_id"], tracks.at[row, "path"]
                if result.reason is None:
                    writer.add(track_id, result.mel, result.num_samples)
                else:
                    failures.append((row, track_id, path, result.reason))
            writer.close()
        except BaseException as error:
            close_failed = writer._closing
            writer.abort()
            if close_failed and isinstance(error, OSError):
                error.hdf5_close_failed = True  # its handle must not be closed again at exit
            raise
        write_failures(failures_tsv, sorted(failures))
    return len(writer.track_ids), len(failures)
