"""Base LightningModule for (federated) sequential recommendation, with torchgeo-style template hooks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

import torch
from lightning import LightningModule
from torch import Tensor

from lightning_fed.client_loading import LoadableClient
from lightning_fed.errors import ConfigurationError, check_integer
from lightning_fed.models.ranking_metrics import METRIC_NAMES, RankingMetrics, target_ranks


class SequentialRecommendationTask(LoadableClient, LightningModule, ABC):
    """Next-item recommendation over one domain's items, evaluated by ranking (sampled or full).

    Subclasses implement the template hooks :meth:`configure_models` (build the networks once the domain's
    data is known), :meth:`training_step` and :meth:`score_candidates`, and declare what they share with a
    federation through :meth:`shared_state` and :meth:`load_shared_state`.

    Models are built lazily from the datamodule (number of items, item graph, domain names), so one config
    serves every client; :meth:`build` runs in :meth:`setup`, or explicitly before loading saved weights.
    """

    #: Arguments that may differ from the trained federation's when it is tested or validated again.
    reconfigurable_arguments: tuple[str, ...] = ("ranking",)

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ranking: Literal["sampled", "full"] = "sampled",
    ) -> None:
        """Create the task.

        Args:
            lr: Adam learning rate.
            weight_decay: Adam weight decay.
            ranking: ``"sampled"`` ranks the target among the datamodule's fixed candidates (the papers'
                protocol); ``"full"`` ranks it among all of the domain's items.
        """
        super().__init__()
        if not lr > 0:
            raise ConfigurationError(f"model.init_args.lr must be positive, got {lr}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.ranking = ranking
        self.domain: str | None = None
        self._built = False
        self.configure_losses()
        self.configure_metrics()

    @staticmethod
    def check_encoder_arguments(hidden_dim: int, num_blocks: int, num_heads: int, dropout: float) -> None:
        """Refuse encoder sizes that cannot work, naming the setting (before any network is built)."""
        for name, value in (("hidden_dim", hidden_dim), ("num_blocks", num_blocks), ("num_heads", num_heads)):
            check_integer(f"model.init_args.{name}", value)
        if hidden_dim % num_heads:
            raise ConfigurationError(
                f"model.init_args.num_heads ({num_heads}) must divide model.init_args.hidden_dim ({hidden_dim})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"model.init_args.dropout must be in [0, 1), got {dropout}")

    # Template hooks -----------------------------------------------------------------------------------------
    @abstractmethod
    def configure_models(self, datamodule: Any) -> None:
        """Build the networks for the domain served by ``datamodule``."""

    def configure_losses(self) -> None:
        """Set up loss modules (the losses here are functions; override to add modules)."""

    def configure_metrics(self) -> None:
        """Ranking metrics for validation and test."""
        self.val_metrics = RankingMetrics()
        self.test_metrics = RankingMetrics()

    @property
    def validation_metrics(self) -> tuple[str, ...]:
        """The names this model logs under ``val/`` (what a federation may monitor)."""
        return METRIC_NAMES

    @abstractmethod
    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:
        """Scores (B, C) of candidate items (B, C) after ``inputs`` (B, T); (B, N) for all items if None."""

    # Federation declarations --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def receives(self) -> frozenset[str]:
        """The payload kinds (:data:`lightning_fed.federated_module.PayloadKind`) :meth:`load_shared_state` takes."""

    @abstractmethod
    def shared_state(self) -> dict[str, Tensor]:
        """The tensors this client uploads (copies); nothing else ever leaves it."""

    @abstractmethod
    def load_shared_state(self, payload: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Load what the server sent, keyed by its origin (a client name or an aggregate's name)."""

    # Lightning ----------------------------------------------------------------------------------------------
    def build(self, datamodule: Any) -> None:
        """Build the networks from ``datamodule`` once (later calls do nothing)."""
        if self._built:
            return
        datamodule.setup("fit")
        self.domain = datamodule.domain
        self.configure_models(datamodule)
        self._built = True

    def setup(self, stage: str) -> None:  # noqa: D102
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if not self._built:
            if datamodule is None:
                raise ValueError(f"{type(self).__name__} builds itself from a datamodule: pass datamodule=...")
            self.build(datamodule)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the trainable parameters (frozen downloaded encoders are not in it)."""
        params = [p for p in self.parameters() if p.requires_grad]
        # fused: one kernel per parameter, no foreach temporaries the size of all parameters
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay, fused=True)

    def _eval_step(self, batch: tuple[Tensor, Tensor], metrics: RankingMetrics) -> None:
        inputs, candidates = batch
        if self.ranking == "full":
            ranks = target_ranks(self.score_candidates(inputs, None), candidates[:, 0])
        else:
            ranks = target_ranks(self.score_candidates(inputs, candidates), 0)
        metrics.update(ranks)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:  # noqa: D102
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:  # noqa: D102
        self._eval_step(batch, self.test_metrics)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self.log_dict({f"val/{k}": v.float() for k, v in self.val_metrics.compute().items()})
        self.val_metrics.reset()

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self.log_dict({f"test/{k}": v.float() for k, v in self.test_metrics.compute().items()})
        self.test_metrics.reset()
