"""infra.memory: freed large blocks are reused instead of being mapped afresh (fewer page faults per step)."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from infra.memory import reuse_freed_memory

TOUCH_64_MIB_FIVE_TIMES = """
import resource, sys
import numpy as np
if sys.argv[1] == "reuse":
    from infra.memory import reuse_freed_memory
    assert reuse_freed_memory()
np.ones(8 << 20)  # the first mapping is paid either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(8 << 20)  # 64 MiB, written then freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is a glibc setting")


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", TOUCH_64_MIB_FIVE_TIMES, mode], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


@glibc_only
def test_freed_blocks_are_reused_without_page_faults() -> None:
    fresh, reused = page_faults("default"), page_faults("reuse")
    huge_pages_per_block = (64 << 20) // (2 << 20)  # transparent huge pages: the fewest faults a fresh block costs
    assert fresh >= 5 * huge_pages_per_block * 0.9  # each 64 MiB block mapped anew (4 KiB or 2 MiB pages)
    assert reused < huge_pages_per_block  # not even one block's worth: the pages stay mapped


@glibc_only
def test_applies_once_per_process() -> None:
    assert reuse_freed_memory() and reuse_freed_memory()
