"""RQ2 of the FMoE-CDSR paper (Sec. 4.4, Table 5): how the quality of the other domains' checkpoints matters.

Two phases per E: each client trains its local expert alone for E epochs (round 1, no download yet); the experts
are synchronized once; then every client trains against those frozen checkpoints, rounds of the budget's
``local_epochs``, until early stopping, with no further synchronization
(``configs/variants/rq2_single_sync.yaml`` with ``federation.first_round_epochs = E``). Prints and writes Table 5's
layout: one row per E, per domain MRR / HR@10 / NDCG@10 and their Avg in % at the best round (``rq2.csv``, and
``rq2.png`` unless ``--no-png``). Finished runs are not run again; interrupted ones are resumed.

    python benchmarks/paper_rq2.py --scenario fkcb --budget cpu --epochs 3,5,14 --output runs/rq2_fkcb_cpu \
        -- --federation.rounds=20 --federation.patience=3      # extra arguments go to every run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import paper_table

LAYERS = ("model/fmoe_cdsr.yaml", "{data}", "{budget}", "variants/rq2_single_sync.yaml")


def rq2_runs(scenario: str, budget: str, epochs: list[int], seed: int, output: Path, extra: list[str]) -> list:
    """The (label, layers, run directory, seed, extra) of each E, in the order given."""
    layers = [layer.format(data=f"data/{scenario}.yaml", budget=f"budget/{budget}.yaml") for layer in LAYERS]
    return [
        (f"E = {e}", layers, output / f"epochs{e}", seed, [f"--federation.first_round_epochs={e}", *extra])
        for e in epochs
    ]


def write_table(output: Path, epochs: list[int], png: bool = True) -> dict:
    """Print and write Table 5's layout from the finished runs; returns ``{"E = e": cells}``."""
    results = {}
    for e in epochs:
        path = output / f"epochs{e}" / "results.json"
        if path.is_file():
            results[f"E = {e}"] = [json.loads(path.read_text())]
    if not results:
        print("RQ2: no finished run yet")
        return {}
    groups = paper_table.columns_of(results)
    keys = [f"{g} {m}" for g in groups for m in paper_table.METRICS]
    summary = {label: paper_table.summarize(runs, groups) for label, runs in results.items()}
    seeds = {label: len(runs) for label, runs in results.items()}
    print("Table 5 layout (RQ2): E epochs of local training before the one synchronization, test (%)\n")
    print(paper_table.table_markdown(summary, keys, seeds) + "\n")
    rounds = {label: runs[0].get("best_round") for label, runs in results.items()}
    print("best round of each: " + ", ".join(f"{label}: {r}" for label, r in rounds.items()) + "\n")
    paper_table.write_csv(output / "rq2.csv", summary, keys, seeds)
    if png:
        paper_table.plot(output / "rq2.png", summary, groups, "RQ2: epochs before the single synchronization")
    return summary


def main(argv: list[str] | None = None) -> int:
    argv, extra = paper_table.split_extra(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="fkcb", help="a data layer, configs/data/<scenario>.yaml (fkcb)")
    parser.add_argument("--budget", default="cpu", help="a budget layer, configs/budget/<budget>.yaml (cpu)")
    parser.add_argument("--epochs", default="3,5,14", help="the values of E, comma-separated (3,5,14)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, help="where the runs and the table go (runs/rq2_<scenario>_<budget>)")
    parser.add_argument("--no-run", action="store_true", help="only write the table from the runs already there")
    parser.add_argument("--no-png", action="store_true", help="no figure (matplotlib not needed)")
    args = parser.parse_args(argv)
    try:
        epochs = [int(e) for e in args.epochs.split(",")]
    except ValueError:
        return paper_table.fail(f"--epochs must be integers separated by commas, got {args.epochs!r}")
    if not epochs or min(epochs) < 1:
        return paper_table.fail(f"--epochs must be at least 1, got {args.epochs!r}")
    missing = paper_table.missing_layer(args.scenario, args.budget)
    if missing:
        return paper_table.fail(missing)
    output = args.output or paper_table.ROOT / "runs" / f"rq2_{args.scenario}_{args.budget}"
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not args.no_run:
        paper_table.run_fits(rq2_runs(args.scenario, args.budget, epochs, args.seed, output, extra))
        print(f"\nwall time {time.perf_counter() - start:.0f} s\n", flush=True)
    write_table(output, epochs, png=not args.no_png)
    missing = [e for e in epochs if not (output / f"epochs{e}" / "results.json").is_file()]
    return 1 if missing and not args.no_run else 0


if __name__ == "__main__":
    sys.exit(main())
