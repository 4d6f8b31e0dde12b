"""An expert at one client: local isolation parameters around a (local or downloaded) sequence encoder.

FMoE-CDSR paper Sec. 3.2-3.4 (Eqs. 2, 5, 6). The isolation parameters read the client's items and write the
client's scores; only the encoder in between may come from another domain.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_fed.models.layers.fast_dropout import Dropout
from lightning_fed.models.layers.item_head import ItemHead
from lightning_fed.models.layers.precision import full_precision
from lightning_fed.models.layers.workspace import WORKSPACE
from lightning_fed.models.sequential.item_graph_embedding import graph_item_input_rows, graph_item_representations
from lightning_fed.models.sequential.sequence_encoder import SequenceEncoder


class Expert(nn.Module):
    """Item embedding E (N+1, d), positions P (T, d), input LayerNorm, encoder, head W: d -> N+1.

    Args:
        num_items: N (the padding id is N).
        encoder: the sequence encoder (trained here, or downloaded and frozen).
        max_seq_len: T.
        dropout: input dropout.
        gnn_layers: L of the item-graph propagation (0 disables the graph, as in SASRec).
        embedding_init: ``"scaled"`` draws item embeddings from N(0, 1/d) (the method as written);
            ``"standard_normal"`` from N(0, 1), nn.Embedding's default (the reference code, point 2). Position
            embeddings are N(0, 1) either way; the padding row is zero.
        graph_form: ``"mean"``: G is the mean of the layer outputs (Eq. 1); ``"dropout_bias"``: the reference
            code's G = (E + A_hat drop(E) + b) / 2 (point 5), with the input dropout rate and a trainable bias b.
        input_norm_eps: eps of the input LayerNorm (FedDCSR's baselines use 1e-12).
        with_head: build the head W (False when a model scores with a head of its own, as FedDCSR's branches).
    """

    def __init__(
        self, num_items: int, encoder: SequenceEncoder, hidden_dim: int, max_seq_len: int, dropout: float,
        gnn_layers: int, embedding_init: Literal["scaled", "standard_normal"] = "scaled",
        graph_form: Literal["mean", "dropout_bias"] = "mean", input_norm_eps: float = 1e-5, with_head: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.pad_id = num_items
        self.hidden_dim = hidden_dim
        self.gnn_layers = gnn_layers
        self.item_embedding = nn.Embedding(num_items + 1, hidden_dim, padding_idx=num_items)
        self.position_embedding = nn.Embedding(max_seq_len, hidden_dim)
        self.input_norm = nn.LayerNorm(hidden_dim, eps=input_norm_eps)
        self.input_dropout = Dropout(dropout)
        self.encoder = encoder
        self.head = ItemHead(hidden_dim, num_items + 1) if with_head else None
        reference_graph = graph_form == "dropout_bias" and gnn_layers > 0
        self.graph_dropout = Dropout(dropout) if reference_graph else None
        self.graph_bias = nn.Parameter(torch.zeros(hidden_dim)) if reference_graph else None
        self._cached_items: tuple[tuple, Tensor] | None = None
        std = 1.0 if embedding_init == "standard_normal" else hidden_dim**-0.5
        nn.init.normal_(self.item_embedding.weight, std=std)
        with torch.no_grad():
            self.item_embedding.weight[num_items].zero_()

    def isolation_parameters(self) -> list[nn.Parameter]:
        """The parameters that never leave the client (paper Eq. 6): everything but the encoder."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder_ids]

    def item_representations(self, graph: Tensor | None) -> Tensor:
        """G + E for every item, (N+1, d).

        Outside training (eval mode, no gradient) the table is computed once and reused by every evaluation
        batch until a parameter it reads changes in place (an optimizer step, ``load_state_dict``) or
        :meth:`release_cached_items` is called.
        """
        if self.training or torch.is_grad_enabled():
            self._cached_items = None
            return self._compute_item_representations(graph)
        sources = [p for p in (self.item_embedding.weight, self.graph_bias) if p is not None]
        key = (id(graph), *((p.data_ptr(), p._version) for p in sources))
        if self._cached_items is None or self._cached_items[0] != key:
            self._cached_items = (key, self._compute_item_representations(graph))
        return self._cached_items[1]

    def release_cached_items(self) -> None:
        """Drop the evaluation cache of :meth:`item_representations` (its memory)."""
        self._cached_items = None

    def _compute_item_representations(self, graph: Tensor | None) -> Tensor:
        return graph_item_representations(
            self.item_embedding.weight, graph, self.gnn_layers, self.graph_dropout, self.graph_bias
        )

    def item_inputs(self, ids: Tensor, graph: Tensor | None) -> Tensor:
        """Rows ``ids`` of G + E, (len(ids), d): the items' representations the encoder reads (Eq. 1).

        In training only the rows a batch reads are computed, where the form allows it
        (:func:`~lightning_fed.models.sequential.item_graph_embedding.graph_item_input_rows`); outside training
        they are read from the cached table of :meth:`item_representations`.
        """
        if self.training or torch.is_grad_enabled():
            self._cached_items = None
            return graph_item_input_rows(
                self.item_embedding.weight, graph, ids, self.gnn_layers, self.graph_dropout, self.graph_bias
            )
        # index_select: its backward (index_add) is several times faster on CPU than that of items[ids]
        return self.item_representations(graph).index_select(0, ids)

    def embed(self, inputs: Tensor, graph: Tensor | None) -> tuple[Tensor, Tensor]:
        """The encoder's input at the non-padding positions, packed (N, d), and the non-padding mask (B, T).

        Paper Eq. 2: the items' representations times sqrt(d) plus positions, LayerNorm and dropout, computed at
        the non-padding positions only (the encoder reads nothing else), in the row-major order of the mask's True
        positions: the packed input :class:`SequenceEncoder` takes.
        """
        valid = inputs != self.pad_id
        t = inputs.size(1)
        tokens = valid.reshape(-1).nonzero().squeeze(1)
        items = self.item_inputs(inputs.reshape(-1).index_select(0, tokens), graph)
        positions = self.position_embedding.weight[-t:].index_select(0, tokens % t)
        x = items * math.sqrt(self.hidden_dim) + positions
        return self.input_dropout(self.input_norm(x)), valid

    def forward(
        self,
        inputs: Tensor,
        graph: Tensor | None,
        last_only: bool = False,
        full_rows: int | None = None,
        kl: bool = True,
    ) -> Tensor:
        """Encode left-padded sequences.

        Args:
            inputs: (B, T) item ids.
            graph: the domain's sparse A_hat (or None without GNN).
            last_only: only the last position's output (what scoring reads), computed for that position only.
            full_rows: every position for the first ``full_rows`` sequences, the last one only for the others
                (contrastive views); see :meth:`SequenceEncoder.forward`.
            kl: False skips the encoder's logvar stack (see :meth:`SequenceEncoder.forward`).

        Returns:
            (B, T, d) z_t (zero at padding); (B, d) z_T with ``last_only``.
        """
        return self.encoder(*self.embed(inputs, graph), last_only=last_only, full_rows=full_rows, kl=kl)

    def candidate_scores(self, z_last: Tensor, candidates: Tensor | None) -> Tensor:
        """Scores of the candidate items (B, C) from last-position outputs (B, d) by this expert's head."""
        return head_candidate_scores(self.head, self.pad_id, z_last, candidates)


def head_candidate_scores(head: ItemHead, num_items: int, z_last: Tensor, candidates: Tensor | None) -> Tensor:
    """Scores (B, C) of candidate items (B, C) from last-position outputs (B, d); (B, N) for all items if None.

    The head's row N (padding) is never a candidate. Always fp32, outside autocast
    (:func:`~lightning_fed.models.layers.precision.full_precision`).
    """
    weight, bias = head.weight.float(), head.bias.float()
    with full_precision(z_last.device):
        if candidates is None:
            return torch.addmm(bias[:num_items], z_last.float(), weight[:num_items].t())
        # Scoring all items and gathering is cheaper than gathering (B, C, d) candidate weights; the (B, N)
        # products go to a reused buffer (a fresh one costs a page fault per page) and only the candidates get
        # their bias.
        rows = WORKSPACE.get("scores", z_last.size(0), num_items, torch.float32, z_last.device)
        products = torch.mm(z_last.float(), weight[:num_items].t(), out=rows)
        return products.gather(1, candidates) + bias[candidates]
