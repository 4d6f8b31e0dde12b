"""RQ4 of the FMoE-CDSR paper (Sec. 4.6, Figures 4-5): each expert's contribution at every target domain.

Takes a trained FMoE-CDSR federation (a ``fit`` run directory) and tests its best checkpoint again, every client
at once, with the fusion restricted by ``model.init_args.eval_experts`` (the other experts' gate weights are
renormalized):

- all experts (the reference),
- each domain's expert removed (the target's own local expert included), and
- each domain's expert alone (transferred alone to every other target).

Prints the test MRR (%) per target domain for each, and the change relative to all experts,
``100 (MRR - MRR_all) / MRR_all``; writes ``rq4.csv`` and the heatmaps ``rq4.png`` (target domain x removed /
kept domain, change in MRR %). Each evaluation's results are kept under ``<run>/rq4/``, so a rerun only evaluates
what is missing.

    python benchmarks/paper_rq4.py runs/table_fkcb_cpu/fmoe_cdsr/seed42 --scenario fkcb --budget cpu
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import paper_table


def evaluations(domains: list[str]) -> dict[str, list[str] | None]:
    """``{label: eval_experts}``: all, each removed, each alone."""
    runs: dict[str, list[str] | None] = {"all": None}
    runs.update({f"without {d}": [o for o in domains if o != d] for d in domains})
    runs.update({f"only {d}": [d] for d in domains})
    return runs


def evaluate(run_dir: Path, scenario: str, budget: str, extra: list[str]) -> dict[str, dict]:
    """Test the run once per evaluation that has no saved result yet; ``{label: results_test.json}``."""
    domains = json.loads((run_dir / "results.json").read_text())["clients"]
    store = run_dir / "rq4"
    store.mkdir(exist_ok=True)
    layers = ["model/fmoe_cdsr.yaml", f"data/{scenario}.yaml", f"budget/{budget}.yaml"]
    found = {}
    plan = evaluations(domains)
    for index, (label, experts) in enumerate(plan.items(), 1):
        path = store / f"{paper_table.slug(label)}.json"
        if not path.is_file():
            chosen = [] if experts is None else [f"--model.init_args.eval_experts=[{', '.join(experts)}]"]
            command = paper_table.main_command("test", layers, run_dir, [*chosen, *extra])
            code, _ = paper_table.run_logged(f"[{index}/{len(plan)}] {label}", command, store / "rq4.log")
            if code != 0:
                raise RuntimeError(f"testing {label} failed: see {store / 'rq4.log'}")
            shutil.copyfile(run_dir / "results_test.json", path)
        found[label] = json.loads(path.read_text())
    return found


def relative_change(value: float, reference: float) -> float:
    """``100 (value - reference) / reference``."""
    return 100.0 * (value - reference) / reference


def write_report(run_dir: Path, found: dict[str, dict], png: bool = True) -> dict[str, dict[str, float]]:
    """Print the MRR and change tables, write ``rq4.csv`` and the heatmaps; returns ``{target: {label: change}}``."""
    domains = [d for d in found["all"]["test"] if d != "Avg"]
    mrr = {label: {d: 100.0 * r["test"][d]["MRR"] for d in domains} for label, r in found.items()}
    change = {t: {label: relative_change(mrr[label][t], mrr["all"][t]) for label in mrr} for t in domains}
    labels = [label for label in found if label != "all"]
    print("RQ4: test MRR (%) per target domain (rows) with the fusion restricted (columns)\n")
    rows = [[t, f"{mrr['all'][t]:.2f}", *(f"{mrr[label][t]:.2f}" for label in labels)] for t in domains]
    print(paper_table.markdown(["Target", "all", *labels], rows) + "\n")
    print("Change in MRR (%) relative to all experts\n")
    rows = [[t, *(f"{change[t][label]:+.2f}" for label in labels)] for t in domains]
    print(paper_table.markdown(["Target", *labels], rows) + "\n")
    with (run_dir / "rq4.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Target", "Evaluation", "MRR %", "Change %"])
        for t in domains:
            for label in ["all", *labels]:
                writer.writerow([t, label, f"{mrr[label][t]:.4f}", f"{change[t][label]:.4f}"])
    if png:
        heatmaps(run_dir / "rq4.png", domains, change)
    return change


def heatmaps(path: Path, domains: list[str], change: dict[str, dict[str, float]]) -> None:
    """Two heatmaps, target x removed domain and target x the domain kept alone: change in MRR (%)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, prefix, title, what in (
        (axes[0], "without", "expert removed", "removed"),
        (axes[1], "only", "expert alone", "kept alone"),
    ):
        grid = [[change[t][f"{prefix} {d}"] for d in domains] for t in domains]
        bound = max(1e-9, max(abs(v) for row in grid for v in row))
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(domains)), domains)
        ax.set_yticks(range(len(domains)), domains)
        ax.set_xlabel(f"the domain whose expert is {what}")
        ax.set_ylabel("target domain")
        ax.set_title(f"change in test MRR (%), {title}")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv, extra = paper_table.split_extra(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run directory of a finished FMoE-CDSR fit")
    parser.add_argument("--scenario", default="fkcb", help="the data layer it was trained with (fkcb)")
    parser.add_argument("--budget", default="cpu", help="the budget layer it was trained with (cpu)")
    parser.add_argument("--no-png", action="store_true", help="no heatmaps (matplotlib not needed)")
    args = parser.parse_args(argv)
    if not (args.run / "results.json").is_file() or not (args.run / "federation" / "best.pt").is_file():
        return paper_table.fail(f"{args.run}: not a finished fit run (needs results.json and federation/best.pt)")
    try:
        found = evaluate(args.run, args.scenario, args.budget, extra)
    except RuntimeError as err:
        return paper_table.fail(str(err))
    write_report(args.run, found, png=not args.no_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
