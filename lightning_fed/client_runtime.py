"""One client's side of a federation, the same code whether the server is in this process or across a network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lightning import LightningDataModule, LightningModule
from lightning.pytorch.loggers import Logger

from lightning_fed.callbacks.federated_round import FederatedRound
from lightning_fed.memory import release_free_memory
from lightning_fed.trainer_factory import TrainerFactory, quiet_lightning

Stage = Literal["validate", "test"]


@dataclass
class ClientRuntime:
    """A client: its own LightningModule, DataModule, synchronization callback and Trainers.

    Every round's local training and every evaluation run in a new Trainer from ``trainers``; the
    :class:`~lightning_fed.callbacks.FederatedRound` callback ``sync`` downloads from and uploads to whatever server
    it was given (the in-process :class:`~lightning_fed.server.Server`, or a proxy to a remote one).

    Attributes:
        name: the client's name (a domain or a scenario).
        module: the client's built model.
        datamodule: the client's data, set up for ``fit``.
        sync: the round callback; it also keeps the optimizer state from one round to the next.
        trainers: builds the client's Trainers.
        seed_for: seeds the random generators from the run's seed and a tuple of names, e.g.
            ``("fit", client, round)``; the same call in every process gives the same draws.
        release_memory: return the heap memory each Trainer freed to the system when it finishes
            (:func:`~lightning_fed.memory.release_free_memory`).
    """

    name: str
    module: LightningModule
    datamodule: LightningDataModule
    sync: FederatedRound
    trainers: TrainerFactory
    seed_for: Callable[..., None]
    release_memory: bool = False

    def train(self, round_idx: int, epochs: int, logger: Logger | bool = False) -> tuple[int, dict[str, float]]:
        """Run one round's local training (download, ``epochs`` epochs, upload) with ``logger`` (False: none).

        Returns:
            The optimizer steps taken, and the Trainer's last logged training metrics (e.g. ``train/loss``).
        """
        trainer = self.trainers.fit_trainer(self.name, self.sync, epochs, logger)
        self.seed_for("fit", self.name, round_idx)
        with quiet_lightning():
            trainer.fit(self.module, datamodule=self.datamodule)
        logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/") and v.numel() == 1}
        steps = trainer.global_step
        del trainer
        if self.release_memory:
            release_free_memory()
        return steps, logged

    def evaluate(self, stage: Stage) -> dict[str, float]:
        """Validate or test with the server's current download; the metrics without their ``val/`` or ``test/``."""
        trainer = self.trainers.eval_trainer(self.name, self.sync)
        self.seed_for(stage, self.name)
        with quiet_lightning():
            run = trainer.validate if stage == "validate" else trainer.test
            (metrics,) = run(self.module, datamodule=self.datamodule, verbose=False)
        del trainer, run
        if self.release_memory:
            release_free_memory()
        prefix = "val/" if stage == "validate" else "test/"
        return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if k.startswith(prefix)}

    def state_dict(self) -> dict[str, Any]:
        """Everything the client keeps between rounds: the module's weights and the round callback's state."""
        return {"module": self.module.state_dict(), "sync": self.sync.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a RuntimeError from torch when the weights do not fit the module)."""
        self.module.load_state_dict(state["module"])
        self.sync.load_state_dict(state["sync"])
