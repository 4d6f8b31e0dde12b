"""Shared-Bottom multi-task model (Caruana, "Multitask Learning", Machine Learning 1997)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_fed.models.multitask.feature_embedding import FeatureEmbedding
from lightning_fed.models.multitask.mlp import MLP
from lightning_fed.models.multitask.share_groups import declare_groups
from lightning_fed.models.multitask.task import MultiTaskRecommendationTask


class SharedBottomNet(nn.Module):
    """``p_t = sigmoid(Tower_t(Bottom(x)))``: one bottom MLP shared by all tasks, one tower per task."""

    def __init__(
        self,
        vocab_sizes: list[int],
        num_numerical: int,
        num_tasks: int,
        embedding_dim: int = 16,
        bottom_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        bottom_dims = bottom_dims or [256, 128]
        tower_dims = tower_dims or [64]
        self.embedding = FeatureEmbedding(vocab_sizes, num_numerical, embedding_dim)
        self.bottom = MLP(self.embedding.output_dim, bottom_dims, dropout)
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(bottom_dims[-1], tower_dims, dropout), nn.Linear(tower_dims[-1], 1))
            for _ in range(num_tasks)
        )

    def forward(self, categorical: Tensor, numerical: Tensor) -> Tensor:
        """Logits (B, T)."""
        shared = self.bottom(self.embedding(categorical, numerical))
        return torch.stack([tower(shared).squeeze(-1) for tower in self.towers], dim=1)

    def share_groups(self, fedbn: bool) -> dict[str, str]:
        """The bottom is an ``expert`` group, towers ``tower<t>`` (see :mod:`.share_groups`)."""

        def group_of(path: str, module: nn.Module) -> str | None:
            head = path.split(".")[0]
            if head == "bottom":
                return "expert"
            if head == "towers":
                return f"tower{path.split('.')[1]}"
            return None

        return declare_groups(self, fedbn, group_of)


class SharedBottom(MultiTaskRecommendationTask):
    """Shared-Bottom (Caruana, 1997): one bottom MLP, one tower per task.

    Args:
        bottom_dims: hidden widths of the bottom.
        tower_dims: hidden widths of each tower.
        dropout: dropout.
        **kwargs: see :class:`MultiTaskRecommendationTask` (embedding_dim, lr, weight_decay, fedbn,
            proximal_weight).
    """

    def __init__(
        self,
        bottom_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        self.net = SharedBottomNet(*self.input_sizes(datamodule), hp.bottom_dims, hp.tower_dims, hp.dropout)
