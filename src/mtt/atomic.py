"""Atomic output: write under a temporary name unique to this writer, rename when complete.

Two processes writing the same output each write their own temporary file (or folder), so the
published one is always one writer's complete output, never a mix or a half-written file.
A temporary's name holds its writer's PID and host (`.{name}.{pid}@{host}.{random}.partial`):
the next writer of the same output removes those a killed writer left behind.
"""
import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of `path` whose writer, on this host, is no longer running.

    Only this host's: a writer on another node of a shared file system has a PID that means
    nothing here. Names without a PID (older mtt) are left alone."""
    own = re.compile(rf"\.{re.escape(path.name)}\.(\d+)@{_HOST}\.[a-z0-9_]+\.(partial|old)")
    for entry in path.parent.iterdir():
        match = own.fullmatch(entry.name)
        if match and not _alive(int(match[1])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


def _prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}@{_HOST}."


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`, unique to this call; on success it is renamed to
    `path`. An interrupted or failed write leaves `path` as it was (a killed writer leaves its
    temporary file, which no reader opens and the next writer of `path` removes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=_prefix(path), suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    # The name is this writer's (its PID is in it); the writer creates the file itself. A file
    # opened with truncation (h5py's "w", open's "w") is flushed to disk when it is closed on
    # ext4 (auto_da_alloc): 35 ms for a preprocessing shard. Created, it follows the umask.
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():  # a writer that wrote nothing publishes an empty file
            tmp.touch()
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
def _locked(folder: Path):
    """An exclusive flock on `folder`; without one where the file system refuses it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path, keep_foreign: bool = True):
    """Yield a temporary folder next to `path`; on success it replaces `path` as one unit.

    A reader sees the old folder or the new one, never a mix: a kill before the swap leaves the
    old folder untouched. With `keep_foreign`, entries of the old folder the writer did not
    write (e.g. a user's notes) are moved into the new one before the swap."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path), suffix=".partial"))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        # one publisher at a time: a writer that listed the old folder before another's swap
        # would otherwise discard the foreign entries the other had just moved
        with _locked(path.parent):
            if path.is_dir() and keep_foreign:
                written = {p.name for p in tmp.iterdir()}
                for entry in path.iterdir():
                    if entry.name not in written:
                        os.replace(entry, tmp / entry.name)
            if path.is_dir() and _exchange(tmp, path):
                pass  # tmp now holds the old folder, removed below
            elif path.is_dir():  # no atomic exchange: a kill between the renames leaves none
                old = Path(tempfile.mkdtemp(dir=path.parent, prefix=_prefix(path),
                                            suffix=".old"))
                os.replace(path, old / "x")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
