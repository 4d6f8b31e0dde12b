import os
import subprocess
import sys

import pytest

from lightning_fed.memory import CACHE_VARIABLES, ONEDNN_CACHE_CAPACITY, resident_memory_gb

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
