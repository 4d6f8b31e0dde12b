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
    best = results["best_round"]
    summary = (
        f"| Tiny | {results['rounds_run']} | {best} | {100 * by_round[best]['Avg']:.2f} | "
        + " | ".join(f"{100 * results['test']['Avg'][metric]:.2f}" for metric in ("MRR", "HR@10", "NDCG@10"))
        + " |"
    )
    assert summary in out.split("Validation Avg MRR (%) per round")[0]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_missing_run_directory_is_a_one_line_error(tmp_path, capsys):
    assert _script().main([f"X={tmp_path / 'nothing'}"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_a_saved_record_reads_back_as_the_run(saved_run, tmp_path, capsys):
    curves = _script()
    assert curves.main([f"Tiny run={saved_run}"]) == 0
    from_directory = capsys.readouterr().out
    assert curves.main([f"Tiny run={saved_run}", "--save", str(tmp_path / "records")]) == 0
    capsys.readouterr()
    record = tmp_path / "records" / "tiny_run.json"
    assert json.loads(record.read_text())["sources"] == [str(saved_run)]
    assert curves.main([f"Tiny run={record}"]) == 0
    assert capsys.readouterr().out == from_directory


def test_a_later_source_replaces_an_earlier_ones_rounds(saved_run, tmp_path, capsys):
    curves = _script()
    by_round = curves.validation_by_round(saved_run)
    first, last = min(by_round), max(by_round)
    older = curves.record("Run", {first: {"Avg": 0.5}, last + 1: {"Avg": 0.25}}, None, ["an older machine"])
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert curves.main([f"Run={tmp_path / 'older.json'}", f"Run={saved_run}", "--save", str(tmp_path)]) == 0
    merged = json.loads((tmp_path / "run.json").read_text())
    assert merged["validation"][str(first)]["Avg"] == by_round[first]["Avg"]  # the run directory's, not 0.5
    assert merged["validation"][str(last + 1)] == {"Avg": 0.25}  # a round only the older source has
    assert merged["results"]["best_round"] == json.loads((saved_run / "results.json").read_text())["best_round"]
    assert f"| {last + 1} | 25.00 |" in capsys.readouterr().out


def test_merged_rounds_print_in_round_order(tmp_path, capsys):
    curves = _script()
    later = curves.record("Run", {3: {"Food": 0.3, "Avg": 0.3}}, None, ["a session that kept round 3"])
    earlier = curves.record("Run", {1: {"Food": 0.1, "Avg": 0.1}, 2: {"Food": 0.2, "Avg": 0.2}}, None, ["a rerun"])
    (tmp_path / "a.json").write_text(json.dumps(later))
    (tmp_path / "b.json").write_text(json.dumps(earlier))
    assert curves.main([f"Run={tmp_path / 'a.json'}", f"Run={tmp_path / 'b.json'}"]) == 0
    per_domain = capsys.readouterr().out.split("Run: validation MRR (%) per round and domain\n\n")[1]
    rows = per_domain.split("\n\n")[0].splitlines()[2:]
    assert rows == ["| 1 | 10.00 | 10.00 |", "| 2 | 20.00 | 20.00 |", "| 3 | 30.00 | 30.00 |"]


def test_a_malformed_record_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"label": "x"}')
    assert _script().main([f"X={tmp_path / 'bad.json'}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "bad.json: not a run record" in err


def test_an_unfinished_runs_summary_is_its_best_round_so_far_without_a_test(tmp_path, capsys):
    curves = _script()
    # rounds 2 and 4 tie at the best Avg: the earlier one is the best round (early stopping counts from it)
    partial = {1: {"Avg": 0.1}, 2: {"Avg": 0.3}, 3: {"Avg": 0.2}, 4: {"Avg": 0.3}}
    (tmp_path / "partial.json").write_text(json.dumps(curves.record("Partial", partial, None, ["a run still going"])))
    assert curves.main([f"Partial={tmp_path / 'partial.json'}"]) == 0
    assert "| Partial | 4 | 2 (so far) | 30.00 | - | - | - |" in capsys.readouterr().out


def test_the_title_option_titles_the_figure(saved_run, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    titles = []
    save = Figure.savefig

    def savefig(figure, *args, **kwargs):  # the title the figure carries when it is written
        titles.append(figure.axes[0].get_title())
        return save(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    curves = _script()
    assert curves.main([f"Tiny={saved_run}", "--png", str(tmp_path / "a.png"), "--title", "Stop 31's runs"]) == 0
    assert curves.main([f"Tiny={saved_run}", "--png", str(tmp_path / "b.png")]) == 0
    assert titles == ["Stop 31's runs", "Validation Avg MRR per round"]
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "b.png").read_bytes()
