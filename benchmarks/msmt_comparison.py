"""Run PF-MSMTrec, its baselines and its ablations on one data set and seed; print the mean test AUC per task.

    python benchmarks/msmt_comparison.py                                   # configs/msmt_synthetic.yaml
    python benchmarks/msmt_comparison.py --config configs/aliexpress.yaml  # the real data, when you have it
    python benchmarks/msmt_comparison.py --only centralized_mmoe,pf_msmtrec # some of the rows

Each run is ``python main.py fit --config <config> --config configs/variants/msmt/<variant>.yaml`` in its own
run directory (``runs/msmt_comparison/<variant>``); the table is printed at the end and written as JSON. A
variant whose run directory already holds a ``results.json`` is not run again (an interrupted comparison
resumes); ``--rerun`` trains every variant afresh.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_fed.cli import main  # noqa: E402

RUNS = [
    ("Centralized Shared-Bottom", "centralized_shared_bottom"),
    ("Centralized MMoE", "centralized_mmoe"),
    ("Centralized PLE", "centralized_ple"),
    ("Local-only MMoE", "local_mmoe"),
    ("FedAvg-MMoE", "fedavg_mmoe"),
    ("FedProx-MMoE", "fedprox_mmoe"),
    ("FedBN-MMoE", "fedbn_mmoe"),
    ("PF-MSMTrec", None),
    ("  w/o parameter template", "no_template"),
    ("  w/o FedBN", "no_fedbn"),
    ("  w/o conflict coordination", "no_conflict"),
    ("  w/o personalized experts", "no_personalized_experts"),
    ("  w/o personalized towers", "no_personalized_towers"),
    ("  w/o regularizer", "no_regularizer"),
]


def run(config: str, variant: str | None, out: Path, rerun: bool) -> dict:
    """Fit one variant (unless its results exist and ``rerun`` is off) and return its results."""
    run_dir = out / (variant or "pf_msmtrec")
    if (run_dir / "results.json").is_file() and not rerun:
        print(f"{run_dir}: results exist, not run again (--rerun to train afresh)", flush=True)
        return json.loads((run_dir / "results.json").read_text())
    args = ["fit", f"--config={config}"]
    if variant is not None:
        args.append(f"--config={ROOT / 'configs' / 'variants' / 'msmt' / f'{variant}.yaml'}")
    args.append(f"--trainer.default_root_dir={run_dir}")
    if rerun:
        args.append("--federation.overwrite=true")
    main(args)
    return json.loads((run_dir / "results.json").read_text())


def main_cli() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "msmt_synthetic.yaml"))
    parser.add_argument("--out", default="runs/msmt_comparison")
    parser.add_argument("--rerun", action="store_true", help="train every variant again, replacing its run")
    parser.add_argument("--only", help="comma-separated variants (names in configs/variants/msmt/, or pf_msmtrec)")
    args = parser.parse_args()
    runs = RUNS
    if args.only:
        wanted = args.only.split(",")
        known = {variant or "pf_msmtrec" for _, variant in RUNS}
        unknown = sorted(set(wanted) - known)
        if unknown:
            print(f"error: --only: unknown variant(s) {unknown}; known: {sorted(known)}", file=sys.stderr)
            sys.exit(2)
        runs = [(label, variant) for label, variant in RUNS if (variant or "pf_msmtrec") in wanted]
    out = Path(args.out)
    rows = []
    for label, variant in runs:
        started = time.time()
        results = run(args.config, variant, out, args.rerun)
        avg = results["test"]["Avg"]
        # the mean over scenarios per task (a pooled client also reports each scenario's, as AUC_<task>@<scenario>)
        tasks = sorted(k.removeprefix("AUC_") for k in avg if k.startswith("AUC_") and "@" not in k)
        rows.append({"method": label, **{t: avg[f"AUC_{t}"] for t in tasks}, "best_round": results["best_round"],
                     "seconds": round(time.time() - started, 1)})  # fmt: skip
    tasks = [k for k in rows[0] if k not in ("method", "best_round", "seconds")]
    print("\nMean test AUC over scenarios (same data and seed)\n")
    print("| method | " + " | ".join(f"AUC {t}" for t in tasks) + " | best round | wall (s) |")
    print("|---|" + "---|" * (len(tasks) + 2))
    for row in rows:
        cells = " | ".join(f"{row[t]:.4f}" for t in tasks)
        print(f"| {row['method']} | {cells} | {row['best_round']} | {row['seconds']} |")
    (out / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main_cli()
