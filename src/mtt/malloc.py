"""glibc malloc settings for processes that allocate and free large tensors over and over.

PyTorch's CPU tensors come from plain malloc. glibc serves blocks above its mmap threshold (at
most 32 MiB) with a fresh mmap() and unmaps them when freed, so every large activation of every
training step is page-faulted in again on first touch: ~400,000 minor faults per paper-size
teacher step at batch 2, a third of its CPU time (bench/model_step.py). With mmap off and
trimming off, freed blocks stay in the heap and the next step reuses them; the price is that
the process keeps its peak heap size until it exits, which a training or inference process
reaches again every step anyway.
"""
import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of returning it to the system; True if applied
    (Linux with glibc; elsewhere nothing changes). Forked workers inherit the setting."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM))
