"""The multi-task family's task: CTR-style prediction of T binary targets; BCE per task, AUC and logloss per task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC

from lightning_fed.models.base import FederatedTask
from lightning_fed.models.layers.precision import full_precision
from lightning_fed.models.multitask.proximal import proximal_term
from lightning_fed.strategies.base import GLOBAL, PERSONAL


class MultiTaskRecommendationTask(FederatedTask):
    """Predicts T binary targets per row; a client holds one scenario of a multi-scenario multi-task dataset.

    Subclasses implement :meth:`configure_models` (build ``self.net`` from the client's datamodule: vocab sizes,
    numerical width, task names); the net
    declares what it shares with ``share_groups(fedbn)``. Loss: the sum over tasks of the binary cross-entropy,
    plus the proximal term ``(proximal_weight / 2) * ||theta - theta_received||^2`` over what the client last
    received (FedProx's term, and PF-MSMTrec's personalization regularizer).

    Logged: ``val/AUC_<task>`` (torchmetrics ``BinaryAUROC``), ``val/logloss_<task>``, and their means over tasks
    ``val/AUC`` and ``val/logloss`` (same for ``test/``).

    A pooled client (a centralized dataset: the datamodule's ``scenario_names``, the scenario index in the last
    categorical field) is scored per scenario, as a federation of those scenarios is: ``AUC_<task>@<scenario>``
    and ``logloss_<task>@<scenario>`` are each scenario's rows alone, and ``AUC_<task>`` / ``logloss_<task>`` are
    their means over the scenarios (a federation's ``Avg``), not the AUC of the pooled rows.

    Args:
        embedding_dim: width of each feature embedding (16 in the spec, docs/specs/pf-msmtrec.md).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        fedbn: keep BatchNorm local (FedBN, Li et al., ICLR 2021): its weights and statistics are never uploaded.
        proximal_weight: lambda (or FedProx's mu); 0 switches the term off.
    """

    monitor = "AUC"
    monitor_mode = "max"
    reconfigurable_arguments: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        embedding_dim: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fedbn: bool = False,
        proximal_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.lr = lr
        self.weight_decay = weight_decay
        self.fedbn = fedbn
        self.proximal_weight = proximal_weight
        self.net: nn.Module | None = None
        self.task_names: list[str] = []
        self.scenario_names: list[str] | None = None
        self.received: dict[str, Tensor] = {}

    # Template hooks -----------------------------------------------------------------------------------------
    def input_sizes(self, datamodule: Any) -> tuple[list[int], int, int, int]:
        """What every net's constructor starts with: vocab sizes, numerical width, number of tasks, embedding width."""
        return list(datamodule.vocab_sizes), datamodule.num_numerical, len(datamodule.task_names), self.embedding_dim

    def _scored_groups(self) -> list[str]:
        """Suffixes of the accumulated metrics: ``""`` for a one-scenario client, ``"@<scenario>"`` when pooled."""
        return [""] if self.scenario_names is None else [f"@{name}" for name in self.scenario_names]

    def configure_metrics(self) -> None:
        """AUC and logloss per task (per task and scenario for a pooled client), for validation and test."""
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {f"AUC_{t}{g}": BinaryAUROC() for t in self.task_names for g in self._scored_groups()}
                    | {f"logloss_{t}{g}": MeanMetric() for t in self.task_names for g in self._scored_groups()}
                )
                for stage in ("val", "test")
            }
        )

    @property
    def validation_metrics(self) -> tuple[str, ...]:
        """The names this model logs under ``val/`` (what a federation may monitor); known once built."""
        per_task = [f"{m}_{t}" for t in self.task_names for m in ("AUC", "logloss")]
        per_scenario = [] if self.scenario_names is None else list(self.metrics["val"])
        return ("AUC", "logloss", *per_task, *per_scenario)

    def metric_is_fraction(self, name: str) -> bool:
        """AUCs are fractions; loglosses are not."""
        return not name.startswith("logloss")

    # Federation declarations --------------------------------------------------------------------------------
    @property
    def receives(self) -> frozenset[str]:
        """An aggregate (FedAvg, FedProx), an aggregate plus a personalized mix (PF-MSMTrec), or nothing."""
        return frozenset({"average", "personalized", "nothing"})

    def shared_state(self) -> dict[str, Tensor]:
        """Copies of the tensors the net declares as shared, keyed ``"<group>/<name>"``; nothing else leaves."""
        state = self.net.state_dict()
        return {
            f"{group}/{key}": state[key].detach().cpu().clone()
            for key, group in self.net.share_groups(self.fedbn).items()
        }

    def load_shared_state(self, payload: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Load ``GLOBAL``, then ``PERSONAL`` over it, and remember the result for the proximal term."""
        unknown_origins = sorted(set(payload) - {GLOBAL, PERSONAL})
        if unknown_origins:
            raise ValueError(
                f"{type(self).__name__} receives an aggregate ({GLOBAL!r}) and a personalized mix ({PERSONAL!r}), "
                f"not {unknown_origins}"
            )
        merged: dict[str, Tensor] = {}
        for origin in (GLOBAL, PERSONAL):
            for key, value in payload.get(origin, {}).items():
                merged[key.split("/", 1)[1]] = value
        if not merged:
            return
        own = self.net.state_dict()
        unknown = sorted(set(merged) - set(own))
        if unknown:
            raise ValueError(f"{type(self).__name__}: the server sent tensors this model does not have: {unknown[:3]}")
        self.net.load_state_dict(merged, strict=False)  # copies in place: the optimizer keeps its parameters
        params = dict(self.net.named_parameters())
        self.received = {
            k: v.detach().to(params[k].device, params[k].dtype).clone() for k, v in merged.items() if k in params
        }

    # Lightning ----------------------------------------------------------------------------------------------
    def build(self, datamodule: Any) -> None:
        """Keep the client's task names, then build the net and metrics (once)."""
        if not self._built:
            self.task_names = list(datamodule.task_names)
            names = getattr(datamodule, "scenario_names", None)
            self.scenario_names = None if names is None else list(names)
        super().build(datamodule)

    def configure_optimizers(self) -> torch.optim.Optimizer:  # noqa: D102
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def forward(self, categorical: Tensor, numerical: Tensor) -> Tensor:
        """Logits (B, T)."""
        return self.net(categorical, numerical)

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:  # noqa: D102
        categorical, numerical, labels = batch
        logits = self(categorical, numerical)
        task_losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(0)
        loss = task_losses.sum()
        self.log("train/loss", loss, batch_size=len(labels))
        if self.proximal_weight > 0 and self.received:
            proximal = proximal_term(dict(self.net.named_parameters()), self.received, self.proximal_weight)
            self.log("train/proximal", proximal, batch_size=len(labels))
            loss = loss + proximal
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor, Tensor], stage: str) -> None:
        categorical, numerical, labels = batch
        with full_precision(categorical.device):  # fp32 whatever the training precision: no ties made by rounding
            logits = self(categorical, numerical).float()
        losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        metrics = self.metrics[stage]
        if self.scenario_names is None:
            groups = [("", slice(None))]
        else:  # a pooled client: each scenario's rows on their own
            scenario = categorical[:, -1]
            groups = [(f"@{self.scenario_names[s]}", scenario == s) for s in scenario.unique().tolist()]
        for suffix, rows in groups:
            for t, task in enumerate(self.task_names):
                metrics[f"AUC_{task}{suffix}"].update(torch.sigmoid(logits[rows, t]), labels[rows, t].long())
                metrics[f"logloss_{task}{suffix}"].update(losses[rows, t])

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:  # noqa: D102
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:  # noqa: D102
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        accumulated = {name: metric.compute().float() for name, metric in self.metrics[stage].items()}
        for metric in self.metrics[stage].values():
            metric.reset()
        groups = self._scored_groups()
        # per task (for a pooled client: the mean over the scenarios, a federation's Avg), then over the tasks
        values = {
            f"{m}_{t}": torch.stack([accumulated[f"{m}_{t}{g}"] for g in groups]).mean()
            for m in ("AUC", "logloss")
            for t in self.task_names
        }
        values["AUC"] = torch.stack([values[f"AUC_{t}"] for t in self.task_names]).mean()
        values["logloss"] = torch.stack([values[f"logloss_{t}"] for t in self.task_names]).mean()
        if self.scenario_names is not None:
            values |= accumulated
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()})

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self._log_epoch("test")
