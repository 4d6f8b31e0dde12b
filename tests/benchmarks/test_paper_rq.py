"""benchmarks/paper_rq2.py and paper_rq4.py: RQ2's two phases and RQ4's restricted fusions on real FKCB slices."""

import json
import shutil
import sys

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import paper_rq2  # noqa: E402
import paper_rq4  # noqa: E402

SLICE = [
    "--",
    "--data.init_args.domains=[Food, Beauty]",
    "--data.init_args.max_sequences=200",
    "--data.init_args.batch_size=64",
    "--data.init_args.num_negatives=99",
    "--federation.rounds=2",
    "--model.init_args.hidden_dim=16",
    "--model.init_args.num_heads=2",
]


def test_rq2_trains_e_epochs_before_the_single_sync_then_rounds_of_local_epochs(tmp_path, capsys):
    argv = ["--epochs", "1,2", "--output", str(tmp_path), "--no-png", *SLICE]
    assert paper_rq2.main(argv) == 0
    out = capsys.readouterr().out
    steps = {}
    for e in (1, 2):
        state = torch.load(tmp_path / f"epochs{e}" / "federation" / "last.pt", map_location="cpu", weights_only=False)
        assert state["round"] == 2 and state["strategy"] == "ExpertExchange"
        steps[e] = state["step"]
        results = json.loads((tmp_path / f"epochs{e}" / "results.json").read_text())
        assert f"| E = {e} | 1 | {100 * results['test']['Food']['MRR']:.2f}" in out.replace("**", "")
    # 200 sequences in batches of 64: 4 steps per client per epoch; one more epoch at each of the 2 clients
    assert steps[2] - steps[1] == 2 * 4
    assert steps[1] == 2 * 4 * (1 + 1)  # E = 1 in round 1, then local_epochs = 1 (the CPU budget) in round 2
    rows = (tmp_path / "rq2.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["Method", "E = 1", "E = 2"]


def test_rq4_report_by_hand(tmp_path, capsys):
    def result(food, beauty):
        return {"test": {"Food": {"MRR": food}, "Beauty": {"MRR": beauty}, "Avg": {"MRR": (food + beauty) / 2}}}

    found = {
        "all": result(0.20, 0.10),
        "without Food": result(0.15, 0.11),
        "without Beauty": result(0.18, 0.05),
        "only Food": result(0.18, 0.05),
        "only Beauty": result(0.15, 0.11),
    }
    change = paper_rq4.write_report(tmp_path, found, png=True)
    assert change["Food"]["without Food"] == pytest.approx(-25.0)  # 100 (15 - 20) / 20
    assert change["Beauty"]["without Beauty"] == pytest.approx(-50.0)
    assert change["Beauty"]["without Food"] == pytest.approx(10.0)
    out = capsys.readouterr().out
    assert "| Food | -25.00 | -10.00 | -10.00 | -25.00 |" in out
    assert (tmp_path / "rq4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rq4_on_a_trained_federation(saved_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(saved_run, run)
    assert paper_rq4.main([str(run), "--no-png"]) == 0
    out = capsys.readouterr().out
    saved = {p.stem: json.loads(p.read_text())["test"] for p in (run / "rq4").glob("*.json")}
    assert sorted(saved) == ["all", "only_beauty", "only_food", "without_beauty", "without_food"]
    fit = json.loads((run / "results.json").read_text())["test"]
    for domain in ("Food", "Beauty"):
        assert saved["all"][domain]["MRR"] == pytest.approx(fit[domain]["MRR"])  # the best checkpoint again
    # with two domains, removing one expert leaves the other alone: the same fusion, the same ranks
    assert saved["without_food"] == saved["only_beauty"] and saved["without_beauty"] == saved["only_food"]
    assert "Change in MRR (%) relative to all experts" in out
    assert paper_rq4.main([str(run), "--no-png"]) == 0  # everything saved: nothing is evaluated again
    assert "[1/5]" not in capsys.readouterr().out
