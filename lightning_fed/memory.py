"""Resident memory of this process, and the bound on oneDNN's caches that keeps it flat across rounds.

Under bf16 autocast on a CPU every matmul runs through oneDNN, which caches one primitive per distinct input
shape (oneDNN's primitive cache and ideep's LRU cache, 1024 entries each by default). The encoders pack the
non-padding tokens of a batch, so nearly every training batch brings a new shape, and both caches keep growing
for many rounds: resident memory crept up round after round (a Local Expert federation at d = 256 on FKCB went
from 7.26 GB to 8.05 GB between rounds 5 and 9) while no Python object or tensor was leaked. Bounding both
caches to :data:`ONEDNN_CACHE_CAPACITY` entries keeps it flat, with the same results and no measurable cost
(``benchmarks/round_memory.py`` prints both).

:func:`release_free_memory` returns the heap memory a client's Trainer freed to the system when the Trainer
finishes (``federation.release_memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path

#: Entries kept by each of oneDNN's two primitive caches (0 would crash ideep; it needs at least 1).
ONEDNN_CACHE_CAPACITY = 64
CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def bound_onednn_caches(capacity: int = ONEDNN_CACHE_CAPACITY) -> None:
    """Set both cache capacities unless the user has; they take effect if no oneDNN primitive ran yet."""
    for name in CACHE_VARIABLES:
        os.environ.setdefault(name, str(capacity))


def resident_memory_gb() -> float:
    """The process's current resident set size in GB (its peak where /proc is not available)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    return peak_memory_gb()


def peak_memory_gb() -> float:
    """The process's peak resident set size in GB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` (glibc), or None under another one (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Hand the heap memory that nothing holds any more back to the system (glibc's ``malloc_trim(0)``).

    glibc keeps freed memory below its mmap threshold (up to 32 MB a block) for reuse, so a client's Trainer
    leaves its step's freed buffers resident after it finishes, and with several clients in one process those
    add up round after round. Returning them costs some 20 ms and a page fault per 4 KiB page the next client
    touches again.

    Returns:
        Whether any memory was returned (False also when the C library has no ``malloc_trim``).
    """
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
