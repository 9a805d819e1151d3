"""Process memory settings for CPU training.

A training step allocates and frees the same large activation tensors every iteration. glibc serves blocks
above its mmap threshold (at most 32 MiB by default) with fresh ``mmap`` pages and unmaps them when freed,
so each step pays a page fault for every 4 KiB page it touches again. Keeping freed blocks in the heap
makes the next step reuse pages already mapped: on a 2-core machine a MEVF-BAN fine-tuning step spends
about a fifth less CPU time, for a peak resident set about 10 % higher.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and are reused
TRIM_THRESHOLD = 1 << 31  # free heap memory is returned to the system only beyond 2 GiB


@functools.cache
def reuse_freed_memory() -> bool:
    """Make glibc keep freed large blocks for reuse (once per process); False where libc is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
