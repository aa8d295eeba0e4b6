"""Checks the commands share, made before any work (issue 33): argument types for numbers and
output paths, and the refusal of non-finite predictions naming the file at fault; and, for an
output that fails only at the end, `keep_output`, which keeps what was computed.

The argument types raise `argparse.ArgumentTypeError`, so argparse prints one line
(`mtt CMD: error: argument --out: ...`) and exits 2 before the command starts.
"""
import argparse
import os
import tempfile
from pathlib import Path

import numpy as np


def _number(kind, text, low, low_inclusive):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    if value < low or (value == low and not low_inclusive):
        raise argparse.ArgumentTypeError(f"{text} must be {'at least' if low_inclusive else 'above'} {low:g}")
    return value


def positive_int(text) -> int:
    return _number(int, text, 1, True)


def nonnegative_int(text) -> int:
    return _number(int, text, 0, True)


def positive_float(text) -> float:
    return _number(float, text, 0.0, False)


def nonnegative_float(text) -> float:
    return _number(float, text, 0.0, True)


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def output_file(text) -> Path:
    """A file to write: not a folder; its folder exists or can be made (the nearest existing
    folder on its path is writable: the commands make the folders they write into)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a folder, not a file to write")
    _check_can_make(path, path.parent if str(path.parent) else Path("."))
    return path


def output_folder(text) -> Path:
    """A folder to write into (made with its parents if missing): not an existing file, and
    the nearest existing folder on its path writable."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: exists and is not a folder")
    _check_can_make(path, path)
    return path


def _check_can_make(path: Path, folder: Path) -> None:
    """`folder` (where `path` goes) exists or can be made: the nearest existing folder on its
    path is a writable folder."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: {existing} is not writable")


def input_file(text) -> Path:
    """A file to read: exists and is a regular file (a folder or a missing path is refused)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a folder, not a file")
    return path


def refuse_non_finite(probs, track_ids, store, checkpoint, what="predictions") -> None:
    """ValueError naming the file at fault when some songs' `probs` are NaN or infinite: the mel
    shard holding a song whose log-mel is not finite, else the checkpoint (its outputs)."""
    bad_rows = np.flatnonzero(~np.isfinite(np.asarray(probs, dtype=np.float32)).all(axis=1))
    if not len(bad_rows):
        return
    for row in bad_rows:
        track_id = track_ids[row]
        if not np.isfinite(store.read_song(track_id)).all():
            shard = store.paths[store._shard[store._lookup(track_id)]]
            raise ValueError(f"{shard}: the log-mel of track {track_id!r} holds NaN or infinite "
                             f"values ({len(bad_rows)} songs with non-finite {what}); "
                             "nothing written")
    raise ValueError(f"{checkpoint}: the model's outputs are not finite for {len(bad_rows)} "
                     f"songs (e.g. {track_ids[bad_rows[0]]!r}); nothing written")


def keep_output(write, path, command: str, folder: bool = False):
    """`write(path)`; None when that worked. When it fails at the end of a run (the folder went
    away, the disk is full), what was computed is written to a new file (or folder) in the
    temporary folder instead: (that path, why `path` failed). OSError when neither worked."""
    try:
        write(path)
        return None
    except OSError as err:
        reason = err.strerror or str(err)
    stem = Path(path).stem or "output"
    if folder:
        fallback = Path(tempfile.mkdtemp(prefix=f"mtt-{command}-{stem}-"))
    else:
        fd, name = tempfile.mkstemp(prefix=f"mtt-{command}-{stem}-", suffix=Path(path).suffix)
        os.close(fd)
        fallback = Path(name)
    try:
        write(fallback)
    except OSError as err:
        raise OSError(f"cannot write {path}: {reason}; nor {fallback}: "
                      f"{err.strerror or err}") from None
    return fallback, reason
