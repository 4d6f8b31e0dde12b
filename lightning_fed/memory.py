"""Resident memory of this process, and the bound on oneDNN's caches that keeps it flat across rounds.

Under bf16 autocast on a CPU every matmul runs through oneDNN, which caches one primitive per distinct input
shape (oneDNN's primitive cache and ideep's LRU cache, 1024 entries each by default). The encoders pack the
non-padding tokens of a batch, so nearly every training batch brings a new shape, and both caches keep growing
for many rounds: resident memory crept up round after round (a Local Expert federation at d = 256 on FKCB went
from 7.26 GB to 8.05 GB between rounds 5 and 9) while no Python object or tensor was leaked. Bounding both
caches to :data:`ONEDNN_CACHE_CAPACITY` entries keeps it flat, with the same results and no measurable cost
(``benchmarks/round_memory.py`` prints both).
"""

from __future__ import annotations

import os
import resource
import sys
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
