"""The experiment a Flower run executes: the same LightningCLI configuration on the server and on every client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightning import LightningModule

from lightning_fed.federation import Federation

#: Keys of a parsed ``fit`` configuration that describe the command, not the experiment.
COMMAND_KEYS = ("config", "ckpt_path", "print_config")


@dataclass
class Experiment:
    """The objects a configuration describes: the federation, the template model and the scenario (unprepared)."""

    federation: Federation
    model: LightningModule
    scenario: Any

    @property
    def client_names(self) -> list[str]:
        """The scenario's clients, in its order (no data is read)."""
        return list(self.scenario.client_names)


def write_experiment(run_config: dict[str, Any], path: Path) -> Path:
    """Write the resolved configuration of a ``fit`` command (``Federation.run_config``) as the experiment YAML."""
    config = {k: v for k, v in run_config.items() if k not in COMMAND_KEYS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def load_experiment(path: Path, overrides: Sequence[str] = ()) -> Experiment:
    """Instantiate the experiment in ``path`` through the project's CLI parser (the same validation and messages).

    Args:
        path: the experiment YAML (:func:`write_experiment`).
        overrides: command-line style overrides, e.g. a client machine's ``--data.init_args.root=/srv/fkcb``.
    """
    from lightning_fed.cli import FederatedCLI

    cli = FederatedCLI(args=["--config", str(path), *overrides], run=False)
    return Experiment(cli.trainer, cli.model, cli.datamodule)
