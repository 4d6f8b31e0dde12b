"""Graph-aware item embeddings (FMoE-CDSR paper Eq. 1): G = mean(E, A_hat E, ..., A_hat^L E)."""

from __future__ import annotations

import torch
from torch import Tensor


def propagate_item_embeddings(embeddings: Tensor, graph: Tensor | None, num_layers: int) -> Tensor:
    """Mean of the layer outputs of L rounds of ``A_hat @ E`` (LightGCN-style).

    Args:
        embeddings: (N+1, d) item embedding table E.
        graph: (N+1, N+1) sparse row-normalized transition matrix A_hat (see
            :func:`lightning_fed.datamodules.sequential.item_graph.item_transition_graph`).
        num_layers: L; 0 returns E unchanged.
    """
    if num_layers == 0 or graph is None:
        return embeddings
    total = embeddings
    x = embeddings
    for _ in range(num_layers):
        # Propagate in fp32 outside autocast: its sparse.mm backward does not handle a bf16-cast operand.
        with torch.autocast(embeddings.device.type, enabled=False):
            x = torch.sparse.mm(graph, x.float())
        total = total + x
    return total / (num_layers + 1)
