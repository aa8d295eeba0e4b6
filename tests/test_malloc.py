"""mtt.malloc: freed large blocks stay in the process for reuse instead of going back to the
system (to be page-faulted in again by the next training step)."""
import subprocess
import sys

import pytest

SCRIPT = """
import os, sys
import numpy as np
from mtt.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = resident_mb()
block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, above glibc's largest mmap threshold
del block
print(resident_mb() - before)
"""


def resident_after_free_mb(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True,
                          text=True)
    return float(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_large_block_is_kept_for_reuse():
    assert resident_after_free_mb("default") < 16  # glibc's default unmaps it
    assert resident_after_free_mb("keep") > 60
