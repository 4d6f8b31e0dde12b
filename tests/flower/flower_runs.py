"""Helpers of the Flower tests: one experiment run in process, on a loopback grid, or on real Flower processes."""

import json
from pathlib import Path

from flwr.app import Context, RecordDict

from lightning_fed.cli import FederatedCLI, main
from lightning_fed.datamodules.sequential.sequence_source import ArchiveSource, embedded_archive
from lightning_fed.flower.client_app import forget_runtimes, make_client_app
from lightning_fed.flower.experiment import write_experiment
from lightning_fed.flower.loopback import LoopbackGrid
from lightning_fed.flower.server_app import make_server_app


def experiment(args: list[str], run_dir: Path) -> Path:
    """The experiment YAML of ``fit`` with ``args`` and run directory ``run_dir``."""
    cli = FederatedCLI(args=[*args, f"--trainer.default_root_dir={run_dir}"], run=False)
    return write_experiment(cli.trainer.run_config, run_dir / "experiment.yaml")


def run_in_process(args: list[str], run_dir: Path) -> dict:
    main(["fit", *args, f"--trainer.default_root_dir={run_dir}"])
    return json.loads((run_dir / "results.json").read_text())


def run_on_loopback(
    args: list[str], run_dir: Path, node_configs: list[dict], fresh_process: bool = True, grid=None, run_config=None
):
    """Run the real ServerApp and ClientApps over a LoopbackGrid; the results and the grid (its messages)."""
    forget_runtimes()
    path = experiment(args, run_dir)
    grid = grid or LoopbackGrid
    grid = grid(make_client_app(path), node_configs, fresh_process=fresh_process)
    make_server_app(path)(grid, Context(1, 0, {}, RecordDict(), run_config or {}))
    return json.loads((run_dir / "results.json").read_text()), grid


def metrics_of(results: dict) -> tuple:
    """Every validation round's and the test's metrics (what must be equal across runtimes)."""
    rounds = [{k: v for k, v in h.items() if k != "resident_memory_gb"} for h in results["validation"]]
    return rounds, results["test"], results["best_round"], results["rounds_run"]


def broken_beauty(root: Path, domains: tuple[str, ...] = ("Beauty",)) -> Path:
    """A data root holding FKCB's ``domains`` whose Beauty train file has a malformed line 3; returns that file."""
    source = ArchiveSource(embedded_archive("fkcb"))
    for domain in domains:
        (root / domain).mkdir(parents=True)
        for name in ("num_items.txt", "train_data.txt", "valid_data.txt", "test_data.txt"):
            (root / domain / name).write_text(source.read_text(f"{domain}/{name}"))
    path = root / "Beauty" / "train_data.txt"
    lines = path.read_text().splitlines()
    lines[2] = "not a sequence"
    path.write_text("\n".join(lines) + "\n")
    return path
