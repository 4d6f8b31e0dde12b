"""Resident memory of this process, and the bound on oneDNN's caches that keeps it flat across rounds.

Under bf16 autocast on a CPU every matmul runs through oneDNN, which caches one primitive per distinct input
shape (oneDNN's primitive cache and ideep's LRU cache, 1024 entries each by default). The encoders pack the
non-padding tokens of a batch, so nearly every training batch brings a new shape, and both caches keep growing
for many rounds: resident memory crept up round after round (a Local Expert federation at d = 256 on FKCB went
from 7.26 GB to 8.05 GB between rounds 5 and 9) while no Python object or tensor was leaked. Bounding both
caches to :data:`ONEDNN_CACHE_CAPACITY` entries keeps it flat, with the same results (``benchmarks/round_memory.py``
prints both). The bound must hold a training step's working set, or the least recently used primitive is always the
next one needed: an FMoE-CDSR Food step at d = 256 runs 70-80 distinct primitives, six of them new shapes each step,
and with 64 entries oneDNN compiled 18 primitives per step instead of 6 (``ONEDNN_VERBOSE``, stop 31).

:func:`release_free_memory` returns the heap memory a client's Trainer freed to the system when the Trainer
finishes (``federation.release_memory``), under glibc's malloc or under gperftools' tcmalloc.

tcmalloc is an opt-in allocator for the whole process (``LD_PRELOAD=libtcmalloc_minimal.so.4 python main.py ...``;
Debian/Ubuntu package ``libtcmalloc-minimal4``). On this project's CPU it made a Food training step faster and its
peak resident memory smaller than glibc's malloc does (README, "Speed and memory"). :func:`allocator` tells which
malloc a process runs on; :func:`preload_allocator` restarts a command on tcmalloc (the benchmarks' ``--allocator``).
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
from typing import Literal

from lightning_fed.errors import ConfigurationError

#: gperftools' tcmalloc as the dynamic loader finds it (Debian/Ubuntu: ``apt install libtcmalloc-minimal4``).
TCMALLOC = "libtcmalloc_minimal.so.4"

#: Entries kept by each of oneDNN's two primitive caches (0 would crash ideep; it needs at least 1): above a
#: training step's working set of primitives. Each entry holds memory (a Food step's peak: 1.83-1.90 GiB with 64,
#: 1.91-1.95 GiB with 128, 1.97-2.05 GiB with 256, stop 31).
ONEDNN_CACHE_CAPACITY = 128
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


@functools.cache  # fixed when the process starts (a malloc loaded later does not replace it)
def allocator() -> Literal["tcmalloc", "jemalloc", "glibc", "other"]:
    """The malloc this process runs on: a preloaded tcmalloc or jemalloc, else the C library's (glibc or other)."""
    process = ctypes.CDLL(None)  # the global symbols: a preloaded allocator's come first
    if hasattr(process, "MallocExtension_ReleaseFreeMemory"):
        return "tcmalloc"
    if hasattr(process, "mallctl"):
        return "jemalloc"
    return "glibc" if _malloc_trim() is not None else "other"


def preload_allocator(name: Literal["default", "tcmalloc"]) -> None:
    """Restart this Python command on ``name`` unless it already runs on it (``"default"``: nothing to do).

    A malloc replaces the C library's only when it is loaded before the program starts, so this sets
    ``LD_PRELOAD`` and executes the same command line again; the process keeps its id, its arguments and the
    rest of its environment.

    Raises:
        ConfigurationError: the allocator is unknown, or its library is not installed.
    """
    if name == "default" or allocator() == name:
        return
    if name != "tcmalloc":
        raise ConfigurationError(f"allocator {name!r}: choose default or tcmalloc")
    if ctypes.util.find_library("tcmalloc_minimal") is None:
        raise ConfigurationError(
            f"allocator tcmalloc: {TCMALLOC} is not installed (Debian/Ubuntu: apt install libtcmalloc-minimal4)"
        )
    preloaded = os.environ.get("LD_PRELOAD", "")
    if TCMALLOC in preloaded.split(":"):  # asked for and still not in use: a restart would loop
        raise ConfigurationError(f"allocator tcmalloc: LD_PRELOAD names {TCMALLOC}, but this process does not use it")
    env = {**os.environ, "LD_PRELOAD": ":".join(filter(None, [TCMALLOC, preloaded]))}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def release_free_memory() -> bool:
    """Hand the heap memory that nothing holds any more back to the system.

    glibc keeps freed memory below its mmap threshold (up to 32 MB a block) for reuse, so a client's Trainer
    leaves its step's freed buffers resident after it finishes, and with several clients in one process those
    add up round after round: this calls ``malloc_trim(0)``. Under tcmalloc it calls
    ``MallocExtension_ReleaseFreeMemory()``, which returns every free page of tcmalloc's page heap. Returning
    memory costs some 20 ms and a page fault per 4 KiB page the next client touches again.

    Returns:
        Whether memory was asked back: ``malloc_trim``'s answer (whether any was returned) under glibc, True under
        tcmalloc (whose call answers nothing), False under any other allocator.
    """
    gc.collect()
    if allocator() == "tcmalloc":
        ctypes.CDLL(None).MallocExtension_ReleaseFreeMemory()
        return True
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
