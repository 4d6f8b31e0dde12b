"""benchmarks/paper_table.py: the table writer on fixed inputs, the reference diff, the runner on a real slice."""

import csv
import json
import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import paper_table  # noqa: E402

CLIENTS = ["Food", "Beauty"]


def fake_run(output, method, seed, mrr):
    """A results.json whose test MRR is ``mrr[client]`` and HR@10 / NDCG@10 are 2x / 1.5x of it (fractions)."""
    test = {c: {"MRR": v, "HR@10": 2 * v, "NDCG@10": 1.5 * v} for c, v in mrr.items()}
    test["Avg"] = {m: sum(test[c][m] for c in mrr) / len(mrr) for m in ("MRR", "HR@10", "NDCG@10")}
    run_dir = output / paper_table.slug(method) / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"clients": CLIENTS, "test": test}))


@pytest.fixture
def two_methods(tmp_path):
    fake_run(tmp_path, "FedSASRec", 42, {"Food": 0.10, "Beauty": 0.20})
    fake_run(tmp_path, "FedSASRec", 43, {"Food": 0.14, "Beauty": 0.20})
    fake_run(tmp_path, "FMoE-CDSR", 42, {"Food": 0.30, "Beauty": 0.10})
    fake_run(tmp_path, "FMoE-CDSR", 43, {"Food": 0.30, "Beauty": 0.10})
    return tmp_path


def test_layout_means_and_standard_deviations(two_methods, capsys):
    summaries = paper_table.write_tables(two_methods, ["main"], [42, 43], png=False)
    out = capsys.readouterr().out
    sasrec = summaries["main"]["FedSASRec"]
    assert sasrec["Food MRR"] == pytest.approx((12.0, 2.8284271247))  # mean of 10, 14; sample std sqrt(8)
    assert sasrec["Beauty HR@10"] == pytest.approx((40.0, 0.0))
    assert sasrec["Avg MRR"] == pytest.approx((16.0, 1.4142135624))  # (0.10+0.20)/2, (0.14+0.20)/2
    header = (
        "| Method | Seeds | Food MRR | Food HR@10 | Food NDCG@10 | Beauty MRR | Beauty HR@10 | Beauty NDCG@10 | Avg MRR"
    )
    assert header in out
    assert "| FedSASRec | 2 | 12.00 ± 2.83 | 24.00 ± 5.66 | 18.00 ± 4.24 | **20.00 ± 0.00** |" in out
    assert "| FMoE-CDSR | 2 | **30.00 ± 0.00** |" in out
    assert "Ordering by Avg MRR: FMoE-CDSR > FedSASRec" in out  # 20.0 > 16.0
    assert "not finished: FedVSAN, FedContrastVAE, FedCL4SRec, FedDuoRec, FedDCSR" in out
    rows = list(csv.reader((two_methods / "main.csv").open()))
    assert rows[0][:6] == ["Method", "Seeds", "Food MRR", "Food MRR std", "Food HR@10", "Food HR@10 std"]
    assert rows[1][:4] == ["FedSASRec", "2", "12.0000", "2.8284"]


def test_one_seed_has_no_deviation_and_a_png_is_drawn(two_methods, capsys):
    paper_table.write_tables(two_methods, ["main", "ablation"], [42])
    out = capsys.readouterr().out
    assert "| FedSASRec | 1 | 10.00 | 20.00 | 15.00 |" in out
    assert (two_methods / "main.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (two_methods / "ablation.png").is_file()  # FMoE-CDSR is in both tables
    assert "not finished: Local Expert, w/o Gate Router, w/o Freeze" in out


def test_reference_is_printed_beside_ours_with_the_difference(two_methods, tmp_path, capsys):
    reference = tmp_path / "published.csv"
    reference.write_text("Method,Food MRR,Food MRR std,Avg MRR\nFMoE-CDSR,31.5,0.2,\nOther,1,,2\n")
    table = paper_table.read_reference(reference)
    assert table == {"FMoE-CDSR": {"Food MRR": 31.5}, "Other": {"Food MRR": 1.0, "Avg MRR": 2.0}}
    paper_table.write_tables(two_methods, ["main"], [42, 43], reference=table, png=False)
    out = capsys.readouterr().out
    assert "| FMoE-CDSR | 30.00 / 31.50 (-1.50) | - |" in out
    rows = list(csv.reader((two_methods / "main_vs_reference.csv").open()))
    assert [r[0] for r in rows] == ["Method", "FMoE-CDSR"]
    reference.write_text("Method,Food MRR\nFMoE-CDSR,thirty\n")
    with pytest.raises(ValueError, match=r"published.csv: line 2: column 'Food MRR': 'thirty' is not a number"):
        paper_table.read_reference(reference)


def test_user_errors_exit_2_with_one_line(tmp_path):
    for args, message in (
        (["--tables", "table9"], "error: --tables: unknown ['table9']"),
        (["--scenario", "nowhere"], "error: configs/data/nowhere.yaml does not exist"),
        (["--methods", "FedX"], "error: --methods: unknown ['FedX']"),
    ):
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "paper_table.py"), *args, "--output", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 2
        assert done.stderr.strip().startswith(message) and len(done.stderr.strip().splitlines()) == 1


def test_runner_runs_a_method_on_a_real_slice_then_skips_it(tmp_path, capsys):
    slice_args = [
        "--",
        "--data.init_args.domains=[Food, Beauty]",
        "--data.init_args.max_sequences=200",
        "--data.init_args.batch_size=64",
        "--federation.rounds=1",
        "--model.init_args.hidden_dim=16",
    ]
    argv = ["--tables", "main", "--methods", "FedSASRec", "--output", str(tmp_path), "--no-png"]
    assert paper_table.main(argv + slice_args) == 0  # the other six methods were not asked for
    out = capsys.readouterr().out
    assert "[1/1] FedSASRec, seed 42: done in" in out
    results = json.loads((tmp_path / "fedsasrec" / "seed42" / "results.json").read_text())
    mrr = 100 * results["test"]["Avg"]["MRR"]
    assert f"| FedSASRec | 1 | {100 * results['test']['Food']['MRR']:.2f} |" in out
    assert "Ordering by Avg MRR: FedSASRec" in out and mrr > 0
    assert paper_table.main(argv + slice_args) == 0
    assert "[1/1] FedSASRec, seed 42: results exist, skipped" in capsys.readouterr().out
