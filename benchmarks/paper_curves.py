"""Validation curves and test tables of federated runs, from their run directories (not a test: it prints figures).

For each run directory (``--trainer.default_root_dir`` of ``python main.py fit``), reads every round's validation
from its CSV log (``csv/version_*/metrics.csv``; a resumed run's later versions continue it) and, once the run has
finished, the best round's test from ``results.json``. Prints markdown tables in %: validation Avg MRR per round
(one column per run), validation MRR per round and domain for each run, and each finished run's test table at its
best round. With ``--png`` it draws validation Avg MRR per round, one line per run.

    python benchmarks/paper_curves.py "FMoE-CDSR=runs/fmoe" "Local Expert=runs/local" --png curves.png \
        --clients Food,Kitchen,Clothing,Beauty
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


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals ('-' when missing)."""
    return "-" if value is None else f"{100 * value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR (or RUN_DIR: the directory's name is the label)")
    parser.add_argument("--png", type=Path, help="write the validation curves here")
    parser.add_argument(
        "--clients", help="column order of the clients, comma-separated (default: results.json's, else the log's)"
    )
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.runs:
        label, _, path = spec.rpartition("=")
        run_dir = Path(path)
        if not run_dir.is_dir():
            print(f"error: {run_dir}: no such run directory", file=sys.stderr)
            return 2
        runs[label or run_dir.name] = run_dir
    curves = {label: validation_by_round(run_dir) for label, run_dir in runs.items()}

    last = max((max(c) for c in curves.values() if c), default=0)
    print("Validation Avg MRR (%) per round\n")
    rows = [[str(r), *(percent(curves[label].get(r, {}).get("Avg")) for label in runs)] for r in range(1, last + 1)]
    print(markdown(["Round", *runs], rows) + "\n")
    for label, curve in curves.items():
        logged = [c for c in next(iter(curve.values()), {}) if c != "Avg"]
        results_path = runs[label] / "results.json"
        if args.clients:
            clients = args.clients.split(",")
        elif results_path.is_file():
            clients = json.loads(results_path.read_text())["clients"]
        else:
            clients = logged
        print(f"{label}: validation MRR (%) per round and domain\n")
        rows = [[str(r), *(percent(curve[r].get(c)) for c in clients), percent(curve[r].get("Avg"))] for r in curve]
        print(markdown(["Round", *clients, "Avg"], rows) + "\n")
    for label, run_dir in runs.items():
        results_path = run_dir / "results.json"
        if not results_path.is_file():
            print(f"{label}: not finished ({len(curves[label])} round(s) so far), no test yet\n")
            continue
        results = json.loads(results_path.read_text())
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
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, curve in curves.items():
            ax.plot(list(curve), [100 * curve[r]["Avg"] for r in curve], marker="o", label=label)
        ax.set_xlabel("round")
        ax.set_ylabel("validation Avg MRR (%)")
        ax.set_title("FKCB, paper protocol, 2-core CPU")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"figure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
