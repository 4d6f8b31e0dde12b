"""A progress bar that says which round, client and local epoch is running."""

from __future__ import annotations

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

from lightning_fed.callbacks.federated_round import FederatedRound


class FederatedProgressBar(TQDMProgressBar):
    """TQDM bar described as ``Round r/R · <client> · epoch e/E`` (from the client's :class:`FederatedRound`)."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:  # noqa: D102
        super().on_train_epoch_start(trainer, pl_module)
        sync = next((cb for cb in trainer.callbacks if isinstance(cb, FederatedRound)), None)
        if sync is not None and self.train_progress_bar is not None:
            self.train_progress_bar.set_description(
                f"Round {sync.rounds.round}/{sync.rounds.total_rounds} · {sync.client} · "
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            )
