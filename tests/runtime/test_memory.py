import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_fed.errors import ConfigurationError
from lightning_fed.memory import (
    CACHE_VARIABLES,
    ONEDNN_CACHE_CAPACITY,
    TCMALLOC,
    _malloc_trim,
    allocator,
    preload_allocator,
    release_free_memory,
    resident_memory_gb,
)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

PROBE = (
    "import os, lightning_fed; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'], os.environ['LRU_CACHE_CAPACITY'])"
)


@pytest.mark.parametrize(
    ("given", "expected"), [(None, f"{ONEDNN_CACHE_CAPACITY} {ONEDNN_CACHE_CAPACITY}"), ("512", "512 512")]
)
def test_importing_lightning_fed_bounds_onednn_caches_unless_the_user_did(given, expected):
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    if given is not None:
        env.update(dict.fromkeys(CACHE_VARIABLES, given))
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == expected


def test_resident_memory_is_read_from_the_process():
    assert 0.01 < resident_memory_gb() < 100


@pytest.mark.skipif(_malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_freed_heap_memory_goes_back_to_the_system():
    # 64 KiB blocks stay below glibc's mmap threshold, so they come from the heap; freeing every other one leaves
    # 1600 holes that glibc keeps (only a free top of the heap is returned by free itself)
    blocks = [bytearray(64 * 1024) for _ in range(3200)]
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    del blocks[::2]
    held = resident_memory_gb()
    assert release_free_memory()
    returned = held - resident_memory_gb()
    assert 0.8 * 1600 * 64 * 1024 / 1e9 < returned < 0.2  # each hole's whole pages: 15 of its 16


TCMALLOC_INSTALLED = ctypes.util.find_library("tcmalloc_minimal") is not None
needs_tcmalloc = pytest.mark.skipif(
    not TCMALLOC_INSTALLED, reason=f"{TCMALLOC} is not installed (Debian/Ubuntu: apt install libtcmalloc-minimal4)"
)

# 400 blocks of 1 MiB (tcmalloc serves blocks above 256 KiB from its page heap), every page touched; every other
# block freed. With TCMALLOC_RELEASE_RATE=0 tcmalloc keeps all 200 freed MiB until it is asked for them.
HOLES_UNDER_TCMALLOC = """
from lightning_fed.memory import allocator, release_free_memory, resident_memory_gb
blocks = [bytearray(1 << 20) for _ in range(400)]
for block in blocks:
    block[::4096] = b"x" * len(block[::4096])
del blocks[::2]
held = resident_memory_gb()
asked = release_free_memory()
print(allocator(), asked, held - resident_memory_gb())
"""


@needs_tcmalloc
def test_freed_memory_goes_back_to_the_system_under_tcmalloc():
    env = {**os.environ, "LD_PRELOAD": TCMALLOC, "TCMALLOC_RELEASE_RATE": "0"}
    run = subprocess.run([sys.executable, "-c", HOLES_UNDER_TCMALLOC], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    name, asked, returned = run.stdout.split()
    assert (name, asked) == ("tcmalloc", "True")
    assert 0.95 * 200 * 2**20 / 1e9 < float(returned) < 0.3  # the 200 freed MiB, give or take a few pages


def test_this_process_runs_on_the_c_librarys_malloc():
    assert allocator() == ("glibc" if _malloc_trim() is not None else "other")


@needs_tcmalloc
def test_preload_allocator_restarts_the_command_on_tcmalloc():
    script = "print('started'); from lightning_fed.memory import allocator, preload_allocator\n"
    script += "preload_allocator('tcmalloc'); print(allocator())"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["started", "started", "tcmalloc"]  # the same command twice, the second on tcmalloc


def test_preload_allocator_names_the_package_when_tcmalloc_is_missing(monkeypatch):
    find_library = ctypes.util.find_library  # only tcmalloc is missing (the C library is found, as before)
    monkeypatch.setattr(
        ctypes.util, "find_library", lambda name: None if name == "tcmalloc_minimal" else find_library(name)
    )
    with pytest.raises(ConfigurationError, match=r"libtcmalloc_minimal\.so\.4 is not installed .*libtcmalloc-minimal4"):
        preload_allocator("tcmalloc")
    preload_allocator("default")  # nothing to restart
    assert allocator() == "glibc"  # the C library's malloc is still found


@needs_tcmalloc
def test_benchmark_reports_its_allocator_error_in_one_line():
    # LD_PRELOAD already names tcmalloc, yet the process (whose LD_PRELOAD is read only at its start) is not on it
    env = {**os.environ, "LD_PRELOAD": ""}
    script = (
        "import os, sys; os.environ['LD_PRELOAD'] = 'libtcmalloc_minimal.so.4'; "
        f"sys.argv = ['train_step.py', '--allocator', 'tcmalloc']; sys.path.insert(0, {str(BENCHMARKS)!r}); "
        "import train_step; train_step.main()"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "error: --allocator tcmalloc: LD_PRELOAD names libtcmalloc_minimal.so.4, but this process does not use it"
    ]
