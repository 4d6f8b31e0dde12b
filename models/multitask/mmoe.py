"""MMoE (Ma et al., KDD 2018).

"Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_fed.models.multitask.feature_embedding import FeatureEmbedding
from lightning_fed.models.multitask.mlp import MLP
from lightning_fed.models.multitask.share_groups import declare_groups
from lightning_fed.models.multitask.task import MultiTaskRecommendationTask
from lightning_fed.models.multitask.template_linear import TemplateLinear


class MMoENet(nn.Module):
    """``p_t = sigmoid(Tower_t(sum_m softmax(G_t x)_m * Expert_m(x)))`` over the feature embedding x (KDD'18, Eq. 5-6).

    Args:
        vocab_sizes: ids per categorical field.
        num_numerical: numerical features.
        num_tasks: T.
        embedding_dim: width of each field's embedding.
        num_experts: M.
        expert_dims: hidden widths of each expert MLP (BatchNorm after each layer).
        tower_dims: hidden widths of each tower MLP (then one logit).
        dropout: dropout in experts and towers.
        template: experts use PF-MSMTrec's parameter template (:class:`TemplateLinear`); expert m belongs to
            task ``m * T // M`` (experts split evenly between tasks, the spec's (docs/specs/pf-msmtrec.md) choice).
    """

    def __init__(
        self,
        vocab_sizes: list[int],
        num_numerical: int,
        num_tasks: int,
        embedding_dim: int = 16,
        num_experts: int = 8,
        expert_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        template: bool = False,
    ) -> None:
        super().__init__()
        expert_dims = expert_dims or [256, 128]
        tower_dims = tower_dims or [64]
        self.embedding = FeatureEmbedding(vocab_sizes, num_numerical, embedding_dim)
        width = self.embedding.output_dim
        self.experts = nn.ModuleList(MLP(width, expert_dims, dropout, template) for _ in range(num_experts))
        self.gates = nn.ModuleList(nn.Linear(width, num_experts) for _ in range(num_tasks))
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(expert_dims[-1], tower_dims, dropout), nn.Linear(tower_dims[-1], 1))
            for _ in range(num_tasks)
        )
        self.expert_task = [m * num_tasks // num_experts for m in range(num_experts)]

    def forward(self, categorical: Tensor, numerical: Tensor) -> Tensor:
        """Logits (B, T)."""
        x = self.embedding(categorical, numerical)
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, M, D)
        logits = []
        for gate, tower in zip(self.gates, self.towers):
            weights = torch.softmax(gate(x), dim=-1)  # (B, M)
            logits.append(tower(torch.einsum("bm,bmd->bd", weights, experts)).squeeze(-1))
        return torch.stack(logits, dim=1)

    def share_groups(self, fedbn: bool) -> dict[str, str]:
        """Shared ``state_dict`` keys and their groups (see :mod:`lightning_fed.models.multitask.share_groups`)."""

        def group_of(path: str, module: nn.Module) -> str | None:
            head, index = path.split(".")[:2]
            if head == "experts":
                return f"template:{self.expert_task[int(index)]}" if isinstance(module, TemplateLinear) else "expert"
            if head == "gates":
                return f"gate{index}"
            if head == "towers":
                return f"tower{index}"
            return None

        return declare_groups(self, fedbn, group_of)


class MMoE(MultiTaskRecommendationTask):
    """MMoE (Ma et al., KDD 2018) client.

    With FedAvg, FedProx, FedBN or LocalOnly, the MMoE baselines of docs/specs/pf-msmtrec.md.

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        self.net = MMoENet(
            *self.input_sizes(datamodule), hp.num_experts, hp.expert_dims, hp.tower_dims, hp.dropout, hp.template
        )
