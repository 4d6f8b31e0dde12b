import os
import subprocess
import sys

import pytest

from lightning_fed.memory import (
    CACHE_VARIABLES,
    ONEDNN_CACHE_CAPACITY,
    _malloc_trim,
    release_free_memory,
    resident_memory_gb,
)

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
