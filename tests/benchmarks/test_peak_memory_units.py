"""The benchmarks' peak memory: the kernel's peak resident set of the process, in GB (10^9 bytes).

Each benchmark runs as the only child of a small wrapper process, which reads its child's peak from the kernel
(``getrusage(RUSAGE_CHILDREN)``, in KiB on Linux) once the child has exited: the figure the benchmark printed
must be that one, converted to 10^9 bytes (until stop 36, ``train_step.py`` printed GiB).
"""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-3000:],
                  "child_peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _run_alone(command: list[str]) -> tuple[dict, int]:
    """The benchmark's final JSON line and its peak resident memory in KiB, read by its parent."""
    wrapper = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, timeout=900)
    assert wrapper.returncode == 0, wrapper.stderr[-3000:]
    run = json.loads(wrapper.stdout)
    assert run["returncode"] == 0, run["stderr"]
    return json.loads(run["stdout"].strip().splitlines()[-1]), run["child_peak_kib"]


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux (bytes on macOS)")
@pytest.mark.parametrize(
    "arguments",
    [
        ["train_step.py", "--hidden-dim", "16", "--steps", "1", "--batch-size", "64"],
        [
            "round_time.py",
            "--config",
            str(ROOT / "configs" / "fkcb_cpu.yaml"),
            "--",
            "--model.init_args.hidden_dim=16",
            "--data.init_args.max_sequences=100",
            "--federation.local_epochs=1",
        ],
    ],
    ids=["train_step", "round_time"],
)
def test_peak_rss_is_the_kernels_peak_in_gigabytes(arguments):
    script, *options = arguments
    result, peak_kib = _run_alone([sys.executable, str(ROOT / "benchmarks" / script), *options])
    whole_run = "run_peak_rss_gb" if script == "round_time.py" else "peak_rss_gb"
    assert result[whole_run] == round(peak_kib * 1024 / 1e9, 3)
    # round_time's own peak_rss_gb is read when the round's last validation ends, before the final test
    assert result["peak_rss_gb"] <= result[whole_run]
