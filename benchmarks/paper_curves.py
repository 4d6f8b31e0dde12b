"""Validation curves and test tables of federated runs, from their run directories (not a test: it prints figures).

For each run directory (``--trainer.default_root_dir`` of ``python main.py fit``), reads every round's validation
from its CSV log (``csv/version_*/metrics.csv``; a resumed run's later versions continue it) and, once the run has
finished, the best round's test from ``results.json``. Prints markdown tables in %: a summary (one row per run: its
rounds, its best validation round and Avg MRR, and the Avg test metrics at that round), validation Avg MRR per round
(one column per run), validation MRR per round and domain for each run, and each finished run's test table at its
best round. With ``--png`` it draws validation Avg MRR per round, one line per run.

A run's figures outlive its directory as a record: ``--save DIR`` writes one JSON file per run (its rounds'
validation and, once finished, its results), and a record file is read wherever a run directory is. A label given
more than once merges its sources in order, a later source's rounds replacing an earlier one's.

    python benchmarks/paper_curves.py "FMoE-CDSR=runs/fmoe" "Local Expert=runs/local" --png curves.png \
        --clients Food,Kitchen,Clothing,Beauty
    python benchmarks/paper_curves.py "FMoE-CDSR=docs/paper_runs/fmoe_cdsr.json" "FMoE-CDSR=runs/fmoe" \
        --save docs/paper_runs                 # a record, continued by the run directory's newer rounds
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

TEST_COLUMNS = ("MRR", "HR@10", "NDCG@10")


def validation_by_round(run_dir: Path) -> dict[int, dict[str, float]]:
    """``{round: {client or "Avg": validation MRR}}`` from the run's CSV logs (later versions win)."""
    rounds: dict[int, dict[str, float]] = {}
    versions = sorted((run_dir / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    for path in versions:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if not row.get("round"):
                    continue
                values = {
                    key.split("/")[0]: float(value)
                    for key, value in row.items()
                    if key.endswith("/val/MRR") and value not in ("", None)
                }
                if values:
                    rounds[int(float(row["round"]))] = values
    return rounds


def read_source(path: Path) -> tuple[dict[int, dict[str, float]], dict | None]:
    """A run directory's or a record's ``(validation by round, results or None)``."""
    if path.is_dir():
        results_path = path / "results.json"
        results = json.loads(results_path.read_text()) if results_path.is_file() else None
        return validation_by_round(path), results
    record = json.loads(path.read_text())
    validation = {int(r): {k: float(v) for k, v in values.items()} for r, values in record["validation"].items()}
    return validation, record.get("results")


def record(label: str, curve: dict[int, dict[str, float]], results: dict | None, sources: list[str]) -> dict:
    """The JSON record of one run (what ``--save`` writes and :func:`read_source` reads back)."""
    return {
        "label": label,
        "sources": sources,
        "validation": {str(r): curve[r] for r in sorted(curve)},
        "results": results,
    }


def slug(label: str) -> str:
    """A file name for a label: lower case, runs of other characters as one underscore."""
    return "_".join("".join(c if c.isalnum() else " " for c in label.lower()).split())


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals ('-' when missing)."""
    return "-" if value is None else f"{100 * value:.2f}"


def summary_row(label: str, curve: dict[int, dict[str, float]], results: dict | None) -> list[str]:
    """One run's summary: rounds, best validation round and its Avg MRR, and the Avg test metrics at that round.

    A finished run's best round is its own (``results.json``: the round the federation tested); an unfinished run's
    is the round with the highest validation Avg MRR so far (the earliest of equals), marked "so far".
    """
    if not curve:
        return [label, "0", "-", "-", *("-" for _ in TEST_COLUMNS)]
    if results is not None:
        best, rounds = int(results["best_round"]), str(results["rounds_run"])
        test = results["test"].get("Avg", {})
        tested = [percent(test.get(metric)) for metric in TEST_COLUMNS]
        best_label = str(best)
    else:
        best = max(curve, key=lambda r: (curve[r].get("Avg", float("-inf")), -r))
        rounds, tested, best_label = str(len(curve)), ["-" for _ in TEST_COLUMNS], f"{best} (so far)"
    return [label, rounds, best_label, percent(curve.get(best, {}).get("Avg")), *tested]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="+", help="LABEL=RUN_DIR or LABEL=RECORD.json (without LABEL=, the directory's or file's name)"
    )
    parser.add_argument("--png", type=Path, help="write the validation curves here")
    parser.add_argument("--title", default="Validation Avg MRR per round", help="the figure's title (with --png)")
    parser.add_argument("--save", type=Path, help="write each run's record (JSON) into this directory")
    parser.add_argument(
        "--clients", help="column order of the clients, comma-separated (default: results.json's, else the log's)"
    )
    args = parser.parse_args(argv)
    curves: dict[str, dict[int, dict[str, float]]] = {}
    finished: dict[str, dict | None] = {}
    sources: dict[str, list[str]] = {}
    for spec in args.runs:
        label, _, path = spec.rpartition("=")
        source = Path(path)
        if not source.exists():
            print(f"error: {source}: no such run directory or record", file=sys.stderr)
            return 2
        label = label or (source.name if source.is_dir() else source.stem)
        try:
            curve, results = read_source(source)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            print(f"error: {source}: not a run record ({type(error).__name__}: {error})", file=sys.stderr)
            return 2
        curves.setdefault(label, {}).update(curve)
        if results is not None or label not in finished:
            finished[label] = results
        sources.setdefault(label, []).append(str(source))
    curves = {label: dict(sorted(curve.items())) for label, curve in curves.items()}  # merged rounds in order
    runs = list(curves)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        for label in runs:
            saved = record(label, curves[label], finished[label], sources[label])
            (args.save / f"{slug(label)}.json").write_text(json.dumps(saved, indent=1) + "\n")

    print("Summary (%): best validation round and the Avg test metrics there\n")
    header = ["Run", "Rounds", "Best round", "Validation Avg MRR", *(f"Test Avg {metric}" for metric in TEST_COLUMNS)]
    print(markdown(header, [summary_row(label, curves[label], finished[label]) for label in runs]) + "\n")
    last = max((max(c) for c in curves.values() if c), default=0)
    print("Validation Avg MRR (%) per round\n")
    rows = [[str(r), *(percent(curves[label].get(r, {}).get("Avg")) for label in runs)] for r in range(1, last + 1)]
    print(markdown(["Round", *runs], rows) + "\n")
    for label, curve in curves.items():
        logged = [c for c in next(iter(curve.values()), {}) if c != "Avg"]
        if args.clients:
            clients = args.clients.split(",")
        elif finished[label] is not None:
            clients = finished[label]["clients"]
        else:
            clients = logged
        print(f"{label}: validation MRR (%) per round and domain\n")
        rows = [[str(r), *(percent(curve[r].get(c)) for c in clients), percent(curve[r].get("Avg"))] for r in curve]
        print(markdown(["Round", *clients, "Avg"], rows) + "\n")
    for label in runs:
        results = finished[label]
        if results is None:
            print(f"{label}: not finished ({len(curves[label])} round(s) so far), no test yet\n")
            continue
        test = results["test"]
        print(f"{label}: test (%) at the best round {results['best_round']} of {results['rounds_run']}\n")
        header = ["Metric", *test]
        rows = [[metric, *(percent(test[c].get(metric)) for c in test)] for metric in TEST_COLUMNS]
        print(markdown(header, rows) + "\n")
    if args.png is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("error: --png needs matplotlib: pip install 'lightning-fed[plots]'", file=sys.stderr)
            return 2
        fig, ax = plt.subplots(figsize=(8.5, 4.2))
        for label, curve in curves.items():
            ax.plot(list(curve), [100 * curve[r]["Avg"] for r in curve], marker="o", markersize=4, label=label)
        ax.set_xlabel("round")
        ax.set_ylabel("validation Avg MRR (%)")
        ax.set_title(args.title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the axes: no curve hidden
        fig.savefig(args.png, dpi=120, bbox_inches="tight")
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
