"""The gate router of FMoE-CDSR (paper Eqs. 7-8)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from lightning_fed.models.layers.fast_dropout import Dropout
from lightning_fed.models.layers.static_shapes import on_padded_rows


class GateRouter(nn.Module):
    """Softmax MLP d*K -> 4d -> 2d -> K over the stop-gradient concatenation of the experts' outputs.

    Args:
        hidden_dim: d.
        num_experts: K.
        dropout: dropout between layers.
        pooling: ``"sample"`` routes each sample on its own inputs (the paper); ``"batch"`` averages the gate
            input over the batch and every position (padding included) and routes that one row, as the reference
            code does: one gate vector per batch, one dropout mask in training (a sample's weights then depend on
            its batch).
    """

    def __init__(
        self,
        hidden_dim: int,
        num_experts: int,
        dropout: float,
        pooling: Literal["sample", "batch"] = "sample",
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim * num_experts, 4 * hidden_dim),
            nn.GELU(),
            nn.LayerNorm(4 * hidden_dim),
            Dropout(dropout),
            nn.Linear(4 * hidden_dim, 2 * hidden_dim),
            nn.GELU(),
            nn.LayerNorm(2 * hidden_dim),
            Dropout(dropout),
            nn.Linear(2 * hidden_dim, num_experts),
        )

    def forward(self, expert_outputs: list[Tensor]) -> Tensor:
        """Gate weights g (..., K) that sum to 1, from K tensors (B, ..., d); no gradient reaches the experts."""
        x = torch.cat([z.detach() for z in expert_outputs], dim=-1)  # sg(.) of Eq. 7
        if self.pooling == "batch":
            pooled = x.reshape(-1, x.size(-1)).mean(0, keepdim=True)
            weights = torch.softmax(self.mlp(pooled).float(), dim=-1)
            return weights.expand(*x.shape[:-1], weights.size(-1))
        return torch.softmax(on_padded_rows(self.mlp, x).float(), dim=-1)
