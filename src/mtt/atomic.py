"""Atomic output: write under a temporary name unique to this writer, rename when complete.

Two processes writing the same output each write their own temporary file (or folder), so the
published one is always one writer's complete output, never a mix or a half-written file.
"""
import contextlib
import ctypes
import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`, unique to this call; on success it is renamed to
    `path`. An interrupted or failed write leaves `path` as it was (a killed writer may leave a
    `.{name}.*.partial` file, which no reader opens)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; published files follow the umask
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


@contextlib.contextmanager
def atomic_dir(path, keep_foreign: bool = True):
    """Yield a temporary folder next to `path`; on success it replaces `path` as one unit.

    A reader sees the old folder or the new one, never a mix: a kill before the swap leaves the
    old folder untouched. With `keep_foreign`, entries of the old folder the writer did not
    write (e.g. a user's notes) are moved into the new one before the swap."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if path.is_dir() and keep_foreign:
            written = {p.name for p in tmp.iterdir()}
            for entry in path.iterdir():
                if entry.name not in written:
                    os.replace(entry, tmp / entry.name)
        if path.is_dir() and _exchange(tmp, path):
            pass  # tmp now holds the old folder, removed below
        elif path.is_dir():  # no atomic exchange: a kill between the renames leaves no folder
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
