"""Graph-aware item embeddings (FMoE-CDSR paper Eq. 1) and the encoder's item input G + E."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

#: Forms of A_hat built once per live graph tensor (by id and form): its coalesced transpose, which the one-layer
#: form's whole-table backward reads, and its CSR arrays, from which training reads the rows a batch needs.
_DERIVED: dict[tuple[int, str], Any] = {}


def _derived(graph: Tensor, form: str, build: Callable[[Tensor], Any]) -> Any:
    key = (id(graph), form)
    value = _DERIVED.get(key)
    if value is None:
        value = _DERIVED[key] = build(graph)
        weakref.finalize(graph, _DERIVED.pop, key, None)  # forgotten with its graph
    return value


def _transposed(graph: Tensor) -> Tensor:
    return _derived(graph, "transposed", lambda g: g.t().coalesce())


def _csr(graph: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A_hat's CSR arrays: row pointers, column indices and values."""

    def build(g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with warnings.catch_warnings():  # only the three arrays are used, not the beta CSR tensor type
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            csr = g.coalesce().to_sparse_csr()
        return csr.crow_indices(), csr.col_indices(), csr.values()

    return _derived(graph, "csr", build)


class _OneLayerGraphInput(torch.autograd.Function):
    """``beta E + alpha A_hat E`` with the gradient ``beta g + alpha A_hat^T g`` as one sparse ``addmm``.

    Autograd's own backward of ``sparse.addmm(E, A_hat, E)`` transposes A_hat on every call and sums two
    separately allocated (N+1, d) gradients; this computes the same gradient in one pass from a cached A_hat^T.
    """

    @staticmethod
    def forward(ctx, table: Tensor, graph: Tensor, beta: float, alpha: float) -> Tensor:  # noqa: D102
        ctx.graph, ctx.beta, ctx.alpha = graph, beta, alpha
        return torch.sparse.addmm(table, graph, table, beta=beta, alpha=alpha)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # noqa: D102
        transposed = _transposed(ctx.graph)
        return torch.sparse.addmm(grad, transposed, grad, beta=ctx.beta, alpha=ctx.alpha), None, None, None


class _OneLayerGraphInputRows(torch.autograd.Function):
    """Rows ``ids`` of ``beta E + alpha A_hat E``, computed from the rows of A_hat they need, with their gradient.

    A training batch reads a few thousand of the table's rows; this computes those rows alone (each from its own
    graph neighbours) instead of the whole (N+1, d) product, and its backward pass scatters the gradient back to
    the rows of E they read: ``beta g`` to each item and ``alpha A_hat[i, j] g_i`` to each neighbour j.
    """

    @staticmethod
    def forward(ctx, table: Tensor, graph: Tensor, ids: Tensor, beta: float, alpha: float) -> Tensor:  # noqa: D102
        pointers, columns, values = _csr(graph)
        unique, inverse = torch.unique(ids, return_inverse=True)
        first = pointers[unique]
        counts = pointers[unique + 1] - first
        owner = torch.repeat_interleave(torch.arange(len(unique), device=ids.device), counts)  # row of each entry
        offsets = torch.arange(len(owner), device=ids.device) - (counts.cumsum(0) - counts)[owner]
        entries = first[owner] + offsets
        neighbours, weights = columns[entries], values[entries] * alpha
        rows = table.index_select(0, unique).mul_(beta)
        rows.index_add_(0, owner, table.index_select(0, neighbours).mul_(weights[:, None]))
        ctx.save_for_backward(unique, inverse, owner, neighbours, weights)
        ctx.beta, ctx.shape = beta, table.shape
        return rows.index_select(0, inverse)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None]:  # noqa: D102
        unique, inverse, owner, neighbours, weights = ctx.saved_tensors
        per_item = grad.new_zeros(len(unique), grad.size(1)).index_add_(0, inverse, grad)
        table_grad = grad.new_zeros(ctx.shape)
        table_grad.index_add_(0, unique, per_item * ctx.beta)
        table_grad.index_add_(0, neighbours, per_item.index_select(0, owner).mul_(weights[:, None]))
        return table_grad, None, None, None, None


def graph_item_input_rows(
    embeddings: Tensor,
    graph: Tensor | None,
    ids: Tensor,
    num_layers: int,
    dropout: nn.Module | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """Rows ``ids`` of :func:`graph_item_representations` (the encoder's item inputs), (len(ids), d).

    The paper's one-layer form computes only the rows it needs (:class:`_OneLayerGraphInputRows`); the other forms
    (more layers, the reference code's dropout) take the rows of the whole table.
    """
    if num_layers == 1 and dropout is None and graph is not None:
        scale = 1.0 / (num_layers + 1)  # G + E = E + mean(E, A_hat E) (Eq. 1, L = 1)
        with torch.autocast(embeddings.device.type, enabled=False):
            rows = _OneLayerGraphInputRows.apply(embeddings.float(), graph, ids, 1.0 + scale, scale)
            return rows if bias is None else rows + bias.float() * scale
    return graph_item_representations(embeddings, graph, num_layers, dropout, bias).index_select(0, ids)


def graph_item_representations(
    embeddings: Tensor,
    graph: Tensor | None,
    num_layers: int,
    dropout: nn.Module | None = None,
    bias: Tensor | None = None,
) -> Tensor:
    """G + E for every item, (N+1, d), with G the graph-aware embeddings of paper Eq. 1.

    The paper's form (``dropout`` and ``bias`` None) is LightGCN's mean of the layer outputs,
    ``G = mean(E, A_hat E, ..., A_hat^L E)``. The reference code's form propagates a dropped-out copy of the
    table and adds a trainable bias: ``G = (E + A_hat drop(E) + ... + A_hat^L drop(E) + b) / (L + 1)``
    (L = 1: ``(E + A_hat drop(E) + b) / 2``).

    Both are computed as one fused sparse ``addmm`` per layer, ``E (1 + 1/(L+1)) + sum_l A_hat^l x / (L+1)``, in
    fp32 outside autocast (the sparse matmul's backward does not handle a bf16-cast operand).

    Args:
        embeddings: (N+1, d) item embedding table E.
        graph: (N+1, N+1) sparse row-normalized transition matrix A_hat (see
            :func:`lightning_fed.datamodules.sequential.item_graph.item_transition_graph`); None: no graph.
        num_layers: L; 0 (or no graph) gives E + E's identity, i.e. E alone (no graph, as in SASRec).
        dropout: applied to the propagated copy of E (the reference code's 0.3); None: none.
        bias: (d,) trainable bias added to the sum of the layers (the reference code); None: none.
    """
    if num_layers == 0 or graph is None:
        return embeddings
    scale = 1.0 / (num_layers + 1)
    with torch.autocast(embeddings.device.type, enabled=False):
        table = embeddings.float()
        if num_layers == 1 and dropout is None:
            total = _OneLayerGraphInput.apply(table, graph, 1.0 + scale, scale)
            return total if bias is None else total + bias.float() * scale
        x = table if dropout is None else dropout(table)
        total = torch.sparse.addmm(table, graph, x, beta=1.0 + scale, alpha=scale)
        for _ in range(num_layers - 1):
            x = torch.sparse.mm(graph, x)
            total = torch.sparse.addmm(total, graph, x, alpha=scale)
        return total if bias is None else total + bias.float() * scale
