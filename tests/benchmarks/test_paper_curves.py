"""benchmarks/paper_curves.py on a real (tiny) run: its tables repeat the run's own results."""

import importlib.util
import json

from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("paper_curves", ROOT / "benchmarks" / "paper_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_curves_and_tables_repeat_the_runs_results(saved_run, tmp_path, capsys):
    results = json.loads((saved_run / "results.json").read_text())
    curves = _script()
    assert curves.main([f"Tiny={saved_run}", "--png", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    by_round = curves.validation_by_round(saved_run)
    assert sorted(by_round) == [row["round"] for row in results["validation"]]
    for row in results["validation"]:
        for client in results["clients"] + ["Avg"]:
            assert abs(by_round[row["round"]][client] - row[client]["MRR"]) < 1e-6
        assert f"| {row['round']} | {100 * row['Avg']['MRR']:.2f} |" in out
    test_mrr = " | ".join(f"{100 * results['test'][c]['MRR']:.2f}" for c in results["test"])
    assert f"| MRR | {test_mrr} |" in out
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_run_directory_is_a_one_line_error(tmp_path, capsys):
    assert _script().main([f"X={tmp_path / 'nothing'}"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
