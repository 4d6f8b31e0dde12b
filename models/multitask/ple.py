"""PLE (Tang et al., RecSys 2020).

"Progressive Layered Extraction (PLE): A Novel Multi-Task Learning Model for Personalized Recommendations".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_fed.models.multitask.feature_embedding import FeatureEmbedding
from lightning_fed.models.multitask.mlp import MLP
from lightning_fed.models.multitask.share_groups import declare_groups
from lightning_fed.models.multitask.task import MultiTaskRecommendationTask


class PLENet(nn.Module):
    """Customized Gate Control (CGC) levels with task-specific and shared experts (RecSys'20, Eq. 1-5).

    At each level, task t's gate mixes its own ``specific_experts`` and the ``shared_experts``; below the last
    level a shared gate mixes all experts for the next level's shared input. Towers sit on the last level.
    """

    def __init__(
        self,
        vocab_sizes: list[int],
        num_numerical: int,
        num_tasks: int,
        embedding_dim: int = 16,
        num_levels: int = 1,
        specific_experts: int = 2,
        shared_experts: int = 2,
        expert_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        expert_dims = expert_dims or [256, 128]
        tower_dims = tower_dims or [64]
        self.num_tasks, self.num_levels = num_tasks, num_levels
        self.embedding = FeatureEmbedding(vocab_sizes, num_numerical, embedding_dim)
        width = self.embedding.output_dim
        self.levels = nn.ModuleList()
        for level in range(num_levels):
            last = level == num_levels - 1
            n_task, n_shared = specific_experts, shared_experts
            self.levels.append(
                nn.ModuleDict(
                    {
                        "task_experts": nn.ModuleList(
                            nn.ModuleList(MLP(width, expert_dims, dropout) for _ in range(n_task))
                            for _ in range(num_tasks)
                        ),
                        "shared_experts": nn.ModuleList(MLP(width, expert_dims, dropout) for _ in range(n_shared)),
                        "task_gates": nn.ModuleList(nn.Linear(width, n_task + n_shared) for _ in range(num_tasks)),
                        "shared_gate": nn.Identity() if last else nn.Linear(width, num_tasks * n_task + n_shared),
                    }
                )
            )
            width = expert_dims[-1]
        self.towers = nn.ModuleList(
            nn.Sequential(MLP(width, tower_dims, dropout), nn.Linear(tower_dims[-1], 1)) for _ in range(num_tasks)
        )

    def forward(self, categorical: Tensor, numerical: Tensor) -> Tensor:
        """Logits (B, T)."""
        x = self.embedding(categorical, numerical)
        task_inputs, shared_input = [x] * self.num_tasks, x
        for level in self.levels:
            shared = [expert(shared_input) for expert in level["shared_experts"]]
            outputs, all_specific = [], []
            for t in range(self.num_tasks):
                specific = [expert(task_inputs[t]) for expert in level["task_experts"][t]]
                all_specific += specific
                experts = torch.stack(specific + shared, dim=1)
                weights = torch.softmax(level["task_gates"][t](task_inputs[t]), dim=-1)
                outputs.append(torch.einsum("bm,bmd->bd", weights, experts))
            if not isinstance(level["shared_gate"], nn.Identity):
                experts = torch.stack(all_specific + shared, dim=1)
                weights = torch.softmax(level["shared_gate"](shared_input), dim=-1)
                shared_input = torch.einsum("bm,bmd->bd", weights, experts)
            task_inputs = outputs
        return torch.stack([tower(h).squeeze(-1) for tower, h in zip(self.towers, task_inputs)], dim=1)

    def share_groups(self, fedbn: bool) -> dict[str, str]:
        """Experts ``expert``, task gates ``gate<t>``, shared gates ``gate``, towers ``tower<t>``."""

        def group_of(path: str, module: nn.Module) -> str | None:
            parts = path.split(".")
            if parts[0] == "towers":
                return f"tower{parts[1]}"
            if parts[0] == "levels":
                if parts[2] in ("task_experts", "shared_experts"):
                    return "expert"
                if parts[2] == "task_gates":
                    return f"gate{parts[3]}"
                return "gate"
            return None

        return declare_groups(self, fedbn, group_of)


class PLE(MultiTaskRecommendationTask):
    """PLE (Tang et al., RecSys 2020): CGC levels of task-specific and shared experts.

    Args:
        num_levels: CGC levels.
        specific_experts: experts of each task per level.
        shared_experts: shared experts per level.
        expert_dims: hidden widths of each expert.
        tower_dims: hidden widths of each tower.
        dropout: dropout.
        **kwargs: see :class:`MultiTaskRecommendationTask` (embedding_dim, lr, weight_decay, fedbn,
            proximal_weight).
    """

    def __init__(
        self,
        num_levels: int = 1,
        specific_experts: int = 2,
        shared_experts: int = 2,
        expert_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.save_hyperparameters()

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        self.net = PLENet(
            *self.input_sizes(datamodule), hp.num_levels, hp.specific_experts, hp.shared_experts, hp.expert_dims,
            hp.tower_dims, hp.dropout,
        )  # fmt: skip
