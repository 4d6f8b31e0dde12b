"""benchmarks/msmt_comparison.py: a pooled and a federated row on one tiny synthetic configuration."""

import json
import subprocess
import sys

from conftest import ROOT

SCRIPT = str(ROOT / "benchmarks" / "msmt_comparison.py")


def test_rows_repeat_each_runs_mean_test_auc_per_task(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"config: [{ROOT / 'configs' / 'msmt_synthetic.yaml'}]\n"
        "data:\n  init_args:\n    rows: [600, 400]\n"
        "model:\n  init_args:\n    expert_dims: [8]\n    tower_dims: [4]\n"
        "federation:\n  rounds: 2\n"
    )
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--config", str(config), "--out", str(out), "--only", "centralized_mmoe,local_mmoe"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((out / "comparison.json").read_text())
    assert [row["method"] for row in rows] == ["Centralized MMoE", "Local-only MMoE"]
    for row, variant in zip(rows, ("centralized_mmoe", "local_mmoe")):
        avg = json.loads((out / variant / "results.json").read_text())["test"]["Avg"]
        # the per-task means only: a pooled run's per-scenario AUC_<task>@<scenario> are not tasks
        assert set(row) == {"method", "task1", "task2", "best_round", "seconds"}
        assert (row["task1"], row["task2"]) == (avg["AUC_task1"], avg["AUC_task2"])
        assert f"| {row['method']} | {row['task1']:.4f} | {row['task2']:.4f} | {row['best_round']} |" in proc.stdout


def test_an_unknown_variant_is_a_one_line_error():
    proc = subprocess.run([sys.executable, SCRIPT, "--only", "nope"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--only: unknown variant(s) ['nope']" in proc.stderr
