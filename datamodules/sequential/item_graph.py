"""The item-transition graph of a domain (FMoE-CDSR paper, Eq. 1), built with torch-geometric."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch_geometric.utils import coalesce, scatter, to_torch_coo_tensor


def item_transition_graph(sequences: Sequence[Sequence[int]], num_items: int) -> torch.Tensor:
    """Row-normalized item-transition matrix A_hat = D^-1 A of the training sequences.

    ``A[u, v]`` counts how often item v directly follows item u. Rows without an out-edge (and the padding row
    ``num_items``) stay zero. The result is a coalesced sparse COO tensor of size (N+1, N+1), so that
    ``torch.sparse.mm(A_hat, E)`` computes ``out[u] = sum_v A_hat[u, v] E[v]`` in one sparse matmul.

    Args:
        sequences: the domain's training item sequences.
        num_items: N, the number of items (N is the padding id).
    """
    size = num_items + 1
    src = [u for seq in sequences for u in seq[:-1]]
    dst = [v for seq in sequences for v in seq[1:]]
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    counts = torch.ones(edge_index.size(1), dtype=torch.float32)
    edge_index, counts = coalesce(edge_index, counts, num_nodes=size, reduce="sum")
    out_degree = scatter(counts, edge_index[0], dim=0, dim_size=size, reduce="sum")
    weights = counts / out_degree[edge_index[0]]
    with warnings.catch_warnings():  # torch's note that sparse invariant checks are off by default
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        return to_torch_coo_tensor(edge_index, weights, size=(size, size)).coalesce()
