"""benchmarks/head_loss.py: it runs the loss as the models call it, and refuses a chunk of no rows."""

import json
import subprocess
import sys

from conftest import ROOT

SCRIPT = str(ROOT / "benchmarks" / "head_loss.py")
TINY = ["--rows", "70", "--items", "300", "--hidden-dim", "16", "--experts", "2", "--repeats", "1"]


def test_it_prints_every_figure_for_chunks_that_split_the_rows():
    proc = subprocess.run(
        [sys.executable, SCRIPT, *TINY, "--chunk-size", "24", "--fusion-chunk-size", "40"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {
        "expert_loss_ms", "expert_products_ms", "expert_products_gflops", "expert_loss_keeping_logits_ms",
        "gate_only_fusion_ms", "fusion_from_kept_logits_ms",
    }  # fmt: skip
    assert result["expert_products_gflops"] > 0  # the timed calls ran (tiny ones may round to 0.0 ms)


def test_a_chunk_of_no_rows_is_a_one_line_error():
    proc = subprocess.run([sys.executable, SCRIPT, *TINY, "--chunk-size", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --chunk-size must be an integer of at least 1, got 0"]
