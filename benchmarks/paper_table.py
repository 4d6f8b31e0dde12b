"""The FMoE-CDSR paper's comparison on one protocol: runs the methods, then writes Table 2 and the ablation table.

Each method is ``python main.py fit`` with the layers ``configs/model/<method>.yaml``, ``configs/data/<scenario>.yaml``
and ``configs/budget/<budget>.yaml`` (then the method's variant, for the ablations), one run directory per method
and seed under ``--output``. A run whose ``results.json`` exists is not run again, and one that stopped half-way is
resumed (``--ckpt_path last``), so an interrupted table picks up where it stopped. Every method is ranked against
the same candidates (the data layer's fixed candidate seed) and runs its own defaults: nothing here tunes a
method.

Writes, for each table (``main``: the paper's Table 2; ``ablation``: its Tables 6-7), per domain MRR / HR@10 /
NDCG@10 and their Avg in %, one row per method (mean +- sample standard deviation over ``--seeds``), as markdown
(printed, best mean per column in bold), ``<table>.csv`` and ``<table>.png`` (grouped bars per domain with error
bars). ``--reference FILE`` holds any published table in the CSV layout written here; it is printed beside ours
with the differences (``<table>_vs_reference.csv``).

    python benchmarks/paper_table.py --scenario fkcb --budget cpu --output runs/table_fkcb_cpu
    python benchmarks/paper_table.py --scenario fkcb --budget paper --seeds 3 --output runs/table_fkcb \
        -- --federation.rounds=60 --federation.patience=10      # extra arguments go to every run
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("MRR", "HR@10", "NDCG@10")

#: Each method's layers after the model layer's: (model layer, variant layers added after data and budget).
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "FedSASRec": ("model/fedsasrec.yaml", ()),
    "FedVSAN": ("model/fedvsan.yaml", ()),
    "FedContrastVAE": ("model/fedcontrastvae.yaml", ()),
    "FedCL4SRec": ("model/fedcl4srec.yaml", ()),
    "FedDuoRec": ("model/fedduorec.yaml", ()),
    "FedDCSR": ("model/feddcsr.yaml", ()),
    "FMoE-CDSR": ("model/fmoe_cdsr.yaml", ()),
    "Local Expert": ("model/fmoe_cdsr.yaml", ("variants/local_expert.yaml",)),
    "w/o Gate Router": ("model/fmoe_cdsr.yaml", ("variants/no_gate.yaml",)),
    "w/o Freeze": ("model/fmoe_cdsr.yaml", ("variants/no_freeze.yaml",)),
}
TABLES: dict[str, tuple[str, ...]] = {
    "main": ("FedSASRec", "FedVSAN", "FedContrastVAE", "FedCL4SRec", "FedDuoRec", "FedDCSR", "FMoE-CDSR"),
    "ablation": ("Local Expert", "w/o Gate Router", "w/o Freeze", "FMoE-CDSR"),
}
TITLES = {"main": "Table 2 layout: the seven methods", "ablation": "Tables 6-7 layout: the ablations"}


def slug(method: str) -> str:
    """A directory name for a method ('w/o Gate Router' -> 'wo_gate_router')."""
    return "".join(c if c.isalnum() else "_" for c in method.lower().replace("w/o", "wo")).strip("_")


def main_command(
    subcommand: str, layers: Sequence[str], run_dir: Path, extra: Sequence[str], seed: int | None = None,
    resume: bool = False,
) -> list[str]:  # fmt: skip
    """A ``main.py`` command line: the config layers (paths under configs/), the run directory, then ``extra``."""
    return [
        sys.executable,
        str(ROOT / "main.py"),
        subcommand,
        *(f"--config={ROOT / 'configs' / layer}" for layer in layers),
        *([] if seed is None else [f"--seed_everything={seed}"]),
        f"--trainer.default_root_dir={run_dir}",
        "--trainer.enable_progress_bar=false",
        *(["--ckpt_path=last"] if resume else []),
        *extra,
    ]


def method_layers(method: str, scenario: str, budget: str) -> list[str]:
    """A method's layers: its model layer, the data and budget layers, then its variants."""
    model, variants = METHODS[method]
    return [model, f"data/{scenario}.yaml", f"budget/{budget}.yaml", *variants]


def run_logged(label: str, command: list[str], log: Path) -> tuple[int, float]:
    """Run a command with its output appended to ``log``; print how it ended; (exit status, wall seconds)."""
    start = time.perf_counter()
    with log.open("a") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    elapsed = time.perf_counter() - start
    status = "done" if code == 0 else f"FAILED with status {code}, see {log}"
    print(f"{label}: {status} in {elapsed:.0f} s", flush=True)
    return code, elapsed


def run_fits(
    runs: Sequence[tuple[str, list[str], Path, int, Sequence[str]]],
) -> dict[str, float]:
    """Fit every (label, layers, run directory, seed, extra arguments) that has no ``results.json`` yet.

    A run with a ``federation/last.pt`` but no results (interrupted) is resumed. Returns the wall seconds of the
    runs made, by label.
    """
    seconds: dict[str, float] = {}
    for index, (label, layers, run_dir, seed, extra) in enumerate(runs, 1):
        tag = f"[{index}/{len(runs)}] {label}"
        if (run_dir / "results.json").is_file():
            print(f"{tag}: results exist, skipped ({run_dir})", flush=True)
            continue
        resume = (run_dir / "federation" / "last.pt").is_file()
        run_dir.mkdir(parents=True, exist_ok=True)
        log = run_dir.with_suffix(".log")
        print(f"{tag}: {'resuming' if resume else 'running'} (log: {log})", flush=True)
        command = main_command("fit", layers, run_dir, extra, seed=seed, resume=resume)
        seconds[label] = run_logged(tag, command, log)[1]
    return seconds


def run_methods(
    methods: Iterable[str], seeds: Sequence[int], scenario: str, budget: str, output: Path, extra: Sequence[str]
) -> dict[str, float]:
    """Fit every (method, seed) that has no results yet; returns each run's wall seconds (skipped runs: none)."""
    runs = [
        (f"{m}, seed {s}", method_layers(m, scenario, budget), output / slug(m) / f"seed{s}", s, extra)
        for m in methods
        for s in seeds
    ]
    return run_fits(runs)


def collect(output: Path, methods: Iterable[str], seeds: Sequence[int]) -> dict[str, list[dict]]:
    """``{method: [results.json of each finished seed]}`` (methods without any finished seed are left out)."""
    found = {}
    for method in methods:
        runs = []
        for seed in seeds:
            path = output / slug(method) / f"seed{seed}" / "results.json"
            if path.is_file():
                runs.append(json.loads(path.read_text()))
        if runs:
            found[method] = runs
    return found


def columns_of(results: dict[str, list[dict]]) -> list[str]:
    """The column groups: the clients in the runs' order, then Avg."""
    for runs in results.values():
        return [*runs[0]["clients"], "Avg"]
    return []


def summarize(runs: list[dict], groups: list[str]) -> dict[str, tuple[float, float | None]]:
    """``{"<group> <metric>": (mean %, sample std % or None for one seed)}`` over the runs' test results."""
    cells = {}
    for group in groups:
        for metric in METRICS:
            values = [100.0 * run["test"][group][metric] for run in runs]
            std = statistics.stdev(values) if len(values) > 1 else None
            cells[f"{group} {metric}"] = (statistics.fmean(values), std)
    return cells


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def table_markdown(summary: dict[str, dict[str, tuple[float, float | None]]], keys: list[str], seeds: dict) -> str:
    """Methods as rows, ``<group> <metric>`` as columns, mean (+- std), best mean per column in bold."""
    best = {key: max(cells[key][0] for cells in summary.values()) for key in keys}
    rows = []
    for method, cells in summary.items():
        row = [method, str(seeds[method])]
        for key in keys:
            mean, std = cells[key]
            text = f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")
            row.append(f"**{text}**" if mean == best[key] and len(summary) > 1 else text)
        rows.append(row)
    return markdown(["Method", "Seeds", *keys], rows)


def write_csv(path: Path, summary: dict, keys: list[str], seeds: dict) -> None:
    """The table as CSV: Method, Seeds, then ``<group> <metric>`` (mean %) and ``<group> <metric> std``."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Method", "Seeds", *(c for key in keys for c in (key, f"{key} std"))])
        for method, cells in summary.items():
            values = []
            for key in keys:
                mean, std = cells[key]
                values += [f"{mean:.4f}", "" if std is None else f"{std:.4f}"]
            writer.writerow([method, seeds[method], *values])


def read_reference(path: Path) -> dict[str, dict[str, float]]:
    """``{method: {"<group> <metric>": value %}}`` from a CSV in the layout :func:`write_csv` writes.

    Only the ``Method`` column and the mean columns are read; a blank cell is a number the source does not give.
    """
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "Method" not in reader.fieldnames:
            raise ValueError(f"{path}: line 1: the header must start with 'Method' (the layout paper_table writes)")
        table = {}
        for line, row in enumerate(reader, start=2):
            cells = {}
            for key, value in row.items():
                if key in ("Method", "Seeds") or key.endswith(" std") or value in ("", None):
                    continue
                try:
                    cells[key] = float(value)
                except ValueError:
                    raise ValueError(f"{path}: line {line}: column {key!r}: {value!r} is not a number") from None
            table[row["Method"]] = cells
        return table


def reference_rows(summary: dict, reference: dict[str, dict[str, float]], keys: list[str]) -> list[list[str]]:
    """One row per method in both tables: ``ours / reference (ours - reference)`` per column."""
    rows = []
    for method, cells in summary.items():
        if method not in reference:
            continue
        row = [method]
        for key in keys:
            ref = reference[method].get(key)
            ours = cells[key][0]
            row.append("-" if ref is None else f"{ours:.2f} / {ref:.2f} ({ours - ref:+.2f})")
        rows.append(row)
    return rows


def plot(path: Path, summary: dict, groups: list[str], title: str) -> None:
    """Grouped bars per domain (and Avg), one bar per method, error bars = std over seeds; one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summary)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4), squeeze=False)
    width = 0.8 / max(1, len(methods))
    for ax, metric in zip(axes[0], METRICS):
        for i, method in enumerate(methods):
            cells = [summary[method][f"{g} {metric}"] for g in groups]
            x = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(groups))]
            errors = [0.0 if std is None else std for _, std in cells]
            ax.bar(x, [mean for mean, _ in cells], width, yerr=errors, capsize=2, label=method)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel(f"test {metric} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tables(
    output: Path,
    tables: Sequence[str],
    seeds: Sequence[int],
    reference: dict[str, dict[str, float]] | None = None,
    png: bool = True,
) -> dict[str, dict]:
    """Print and write every table from the finished runs under ``output``; returns the summaries by table."""
    summaries = {}
    for name in tables:
        results = collect(output, TABLES[name], seeds)
        if not results:
            print(f"{TITLES[name]}: no finished run yet\n")
            continue
        groups = columns_of(results)
        keys = [f"{g} {m}" for g in groups for m in METRICS]
        summary = {method: summarize(runs, groups) for method, runs in results.items()}
        counts = {method: len(runs) for method, runs in results.items()}
        missing = [m for m in TABLES[name] if m not in results]
        print(f"{TITLES[name]}, test (%) at each run's best validation round\n")
        print(table_markdown(summary, keys, counts) + "\n")
        if missing:
            print(f"not finished: {', '.join(missing)}\n")
        order = sorted(summary, key=lambda m: summary[m]["Avg MRR"][0], reverse=True)
        print("Ordering by Avg MRR: " + " > ".join(order) + "\n")
        write_csv(output / f"{name}.csv", summary, keys, counts)
        if reference:
            rows = reference_rows(summary, reference, keys)
            if rows:
                print("Ours / reference (ours - reference), %\n")
                print(markdown(["Method", *keys], rows) + "\n")
                with (output / f"{name}_vs_reference.csv").open("w", newline="") as handle:
                    csv.writer(handle).writerows([["Method", *keys], *rows])
        if png:
            plot(output / f"{name}.png", summary, groups, TITLES[name])
        summaries[name] = summary
    return summaries


def split_extra(argv: list[str] | None) -> tuple[list[str], list[str]]:
    """The command's own arguments, and those after ``--`` (given to every ``main.py`` run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1 :]


def missing_layer(scenario: str, budget: str) -> str | None:
    """The error for a ``--scenario`` or ``--budget`` that names no layer in configs/ (None: both exist)."""
    for layer in (f"data/{scenario}.yaml", f"budget/{budget}.yaml"):
        if not (ROOT / "configs" / layer).is_file():
            return f"configs/{layer} does not exist (--scenario / --budget name a layer in configs/)"
    return None


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv, extra = split_extra(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="fkcb", help="a data layer, configs/data/<scenario>.yaml (fkcb)")
    parser.add_argument("--budget", default="cpu", help="a budget layer, configs/budget/<budget>.yaml (cpu)")
    parser.add_argument("--tables", default="main,ablation", help="main, ablation or both (main,ablation)")
    parser.add_argument("--methods", help="run only these methods, comma-separated (default: the tables' methods)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per method: 42, 43, ... (1)")
    parser.add_argument("--reference", type=Path, help="a CSV of published numbers in the layout written here")
    parser.add_argument("--output", type=Path, help="where the runs and tables go (runs/table_<scenario>_<budget>)")
    parser.add_argument("--no-run", action="store_true", help="only write the tables from the runs already there")
    parser.add_argument("--no-png", action="store_true", help="no figures (matplotlib not needed)")
    return parser.parse_args(argv), extra


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(argv)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in tables if t not in TABLES]
    if unknown or not tables:
        return fail(f"--tables: unknown {unknown or tables}; choose from {sorted(TABLES)}")
    missing = missing_layer(args.scenario, args.budget)
    if missing:
        return fail(missing)
    if args.seeds < 1:
        return fail(f"--seeds must be at least 1, got {args.seeds}")
    methods = list(dict.fromkeys(m for t in tables for m in TABLES[t]))
    if args.methods:
        chosen = [m.strip() for m in args.methods.split(",")]
        wrong = [m for m in chosen if m not in METHODS]
        if wrong:
            return fail(f"--methods: unknown {wrong}; choose from {list(METHODS)}")
        methods = chosen
    reference = None
    if args.reference is not None:
        try:
            reference = read_reference(args.reference)
        except (OSError, ValueError) as err:
            return fail(str(err))
    if not args.no_png:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return fail("figures need matplotlib: pip install 'lightning-fed[plots]' (or pass --no-png)")
    output = args.output or ROOT / "runs" / f"table_{args.scenario}_{args.budget}"
    output.mkdir(parents=True, exist_ok=True)
    seeds = [42 + i for i in range(args.seeds)]
    start = time.perf_counter()
    seconds = {} if args.no_run else run_methods(methods, seeds, args.scenario, args.budget, output, extra)
    wall = time.perf_counter() - start
    if seconds:
        timing_path = output / "timings.json"
        previous = json.loads(timing_path.read_text()) if timing_path.is_file() else {}
        timing_path.write_text(json.dumps({**previous, **seconds}, indent=1))
        print(f"\nruns: {len(seconds)} in {wall:.0f} s ({wall / 60:.1f} min) wall\n", flush=True)
    write_tables(output, tables, seeds, reference, png=not args.no_png)
    failed = [m for m in methods for s in seeds if not (output / slug(m) / f"seed{s}" / "results.json").is_file()]
    if failed and not args.no_run:
        print(f"error: {len(failed)} run(s) did not finish: {', '.join(sorted(set(failed)))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
