"""Multi-task CTR models as LightningModules: MMoE, Shared-Bottom, PLE, and PF-MSMTrec's client."""

from __future__ import annotations

from typing import Any

from lightning_fed.models.mmoe_net import MMoENet
from lightning_fed.models.multitask_task import MultiTaskRecommendationTask
from lightning_fed.models.ple_net import PLENet
from lightning_fed.models.shared_bottom_net import SharedBottomNet


class MMoE(MultiTaskRecommendationTask):
    """MMoE (Ma et al., KDD 2018) client; with FedAvg/FedProx/FedBN/LocalOnly, the spec's MMoE baselines.

    Args:
        num_experts: M.
        expert_dims: hidden widths of each expert.
        tower_dims: hidden widths of each tower.
        dropout: dropout.
        template: PF-MSMTrec's parameter template in the experts (W = W_global + W_task + W_scenario).
        **kwargs: see :class:`MultiTaskRecommendationTask` (embedding_dim, lr, weight_decay, fedbn,
            proximal_weight).
    """

    def __init__(
        self,
        num_experts: int = 8,
        expert_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        template: bool = False,
        embedding_dim: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fedbn: bool = False,
        proximal_weight: float = 0.0,
    ) -> None:
        super().__init__(embedding_dim, lr, weight_decay, fedbn, proximal_weight)
        self.save_hyperparameters()

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        self.net = MMoENet(
            datamodule.vocab_sizes, datamodule.num_numerical, len(datamodule.task_names), hp.embedding_dim,
            hp.num_experts, hp.expert_dims, hp.tower_dims, hp.dropout, hp.template,
        )  # fmt: skip


class PFMSMTrec(MMoE):
    """PF-MSMTrec's client: MMoE with the parameter template, FedBN and the personalization regularizer.

    "Personalized Federated Learning for Multi-Scenario Multi-Task Recommendation" (see shared/specs/pf-msmtrec.md).
    Pair it with :class:`~lightning_fed.strategies.PersonalizedAggregation` (conflict coordination and the
    personalized aggregation of experts and towers). Each component is one switch: ``template``, ``fedbn``,
    ``proximal_weight`` (0 = off) here; ``conflict_c``, ``personalized_experts``, ``personalized_towers`` on
    the strategy.
    """

    def __init__(
        self,
        num_experts: int = 8,
        expert_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        template: bool = True,
        embedding_dim: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fedbn: bool = True,
        proximal_weight: float = 0.01,
    ) -> None:
        super().__init__(
            num_experts, expert_dims, tower_dims, dropout, template, embedding_dim, lr, weight_decay, fedbn,
            proximal_weight,
        )  # fmt: skip


class SharedBottom(MultiTaskRecommendationTask):
    """Shared-Bottom (Caruana, 1997): one bottom MLP, one tower per task."""

    def __init__(
        self,
        bottom_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        embedding_dim: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fedbn: bool = False,
        proximal_weight: float = 0.0,
    ) -> None:
        super().__init__(embedding_dim, lr, weight_decay, fedbn, proximal_weight)
        self.save_hyperparameters()

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        self.net = SharedBottomNet(
            datamodule.vocab_sizes, datamodule.num_numerical, len(datamodule.task_names), hp.embedding_dim,
            hp.bottom_dims, hp.tower_dims, hp.dropout,
        )  # fmt: skip


class PLE(MultiTaskRecommendationTask):
    """PLE (Tang et al., RecSys 2020): CGC levels of task-specific and shared experts."""

    def __init__(
        self,
        num_levels: int = 1,
        specific_experts: int = 2,
        shared_experts: int = 2,
        expert_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        embedding_dim: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fedbn: bool = False,
        proximal_weight: float = 0.0,
    ) -> None:
        super().__init__(embedding_dim, lr, weight_decay, fedbn, proximal_weight)
        self.save_hyperparameters()

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        self.net = PLENet(
            datamodule.vocab_sizes, datamodule.num_numerical, len(datamodule.task_names), hp.embedding_dim,
            hp.num_levels, hp.specific_experts, hp.shared_experts, hp.expert_dims, hp.tower_dims, hp.dropout,
        )  # fmt: skip
