"""Feature embeddings of a multi-task CTR model: one table per categorical field and a numerical projection."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FeatureEmbedding(nn.Module):
    """``x = [E_1[c_1], ..., E_F[c_F], W z]``: one ``dim``-wide table per field, and ``W z`` for numerical ``z``.

    As in MMoE/PLE on AliExpress (MTReclib): categorical ids are embedded, numerical features are projected
    linearly to one more ``dim``-wide slot. Output width: ``(F + [P > 0]) * dim``.
    """

    def __init__(self, vocab_sizes: list[int], num_numerical: int, dim: int = 16) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(size, dim) for size in vocab_sizes)
        self.numerical = nn.Linear(num_numerical, dim) if num_numerical > 0 else None
        self.output_dim = (len(vocab_sizes) + (num_numerical > 0)) * dim

    def forward(self, categorical: Tensor, numerical: Tensor) -> Tensor:  # noqa: D102
        parts = [table(categorical[:, f]) for f, table in enumerate(self.tables)]
        if self.numerical is not None:
            parts.append(self.numerical(numerical))
        return torch.cat(parts, dim=1)
