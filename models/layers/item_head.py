"""The prediction head of a sequential recommender, stored transposed for the full-softmax loss's products."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class ItemHead(nn.Module):
    """Scores of every class (the domain's items and the padding id): ``y = x W^T + b``, d -> C.

    What ``nn.Linear(d, C)`` computes, with the same initialisation (the same random draws, in the same order),
    but W is stored transposed, as the parameter ``weight_t`` (d, C). :attr:`weight` is its (C, d) view, so code
    written for ``nn.Linear`` (``head.weight``, ``head.bias``) reads and writes it unchanged.

    Why: the full-softmax loss (:func:`~lightning_fed.models.layers.mixture_cross_entropy.mixture_cross_entropy`)
    multiplies by a bf16 copy of W each step. On CPU, oneDNN's bf16 products ``h W^T`` run faster with W^T laid out
    (d, C) row by row than on the transposed view of a (C, d) W, and making that copy from a (d, C) parameter is a
    plain cast, where a (C, d) one needs a transposition; the weight gradient comes out (d, C) as well. The
    parameter itself is contiguous: fused Adam's CPU kernel walks a parameter and its gradient in memory order,
    and ran about three times slower on parameters with transposed strides.

    A state dict saved with an ``nn.Linear`` head (``weight``, (C, d)) loads into it, and
    :func:`adopt_linear_head_optimizer_states` does the same for an optimizer's saved state.

    Args:
        in_features: d.
        num_classes: C.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight_t = nn.Parameter(torch.empty(in_features, num_classes))
        self.bias = nn.Parameter(torch.empty(num_classes))
        self.reset_parameters()

    @property
    def weight(self) -> Tensor:
        """W, (C, d): the transposed view of :attr:`weight_t` (writes go through)."""
        return self.weight_t.t()

    @property
    def in_features(self) -> int:  # noqa: D102
        return self.weight_t.size(0)

    @property
    def num_classes(self) -> int:  # noqa: D102
        return self.weight_t.size(1)

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation: W and b uniform in +-1/sqrt(d), W drawn row by row as a (C, d) tensor."""
        weight = torch.empty(self.num_classes, self.in_features, device=self.weight_t.device)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        bound = 1 / math.sqrt(self.in_features)
        with torch.no_grad():
            self.weight_t.copy_(weight.t())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """Scores (..., C) of inputs (..., d)."""
        return nn.functional.linear(x, self.weight, self.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001, D102
        if prefix + "weight" in state_dict and prefix + "weight_t" not in state_dict:  # saved from an nn.Linear head
            state_dict[prefix + "weight_t"] = state_dict.pop(prefix + "weight").t()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:  # noqa: D102
        return f"in_features={self.in_features}, num_classes={self.num_classes}"


def adopt_linear_head_optimizer_states(optimizer: torch.optim.Optimizer, heads: Iterable[ItemHead]) -> None:
    """Transpose the per-parameter optimizer states saved for ``nn.Linear`` heads to the ``ItemHead`` layout.

    For ``optimizer.register_load_state_dict_post_hook``: a checkpoint written before the heads were ``ItemHead``
    holds each head's moments as (C, d) tensors. Loaded as they are, an elementwise optimizer (fused Adam walks a
    parameter and its states in memory order) would apply item i's moments to other weights, with no error. Any
    state of a head's ``weight_t`` shaped (C, d) is replaced by its (d, C) transpose; states of the new layout are
    left as they are.
    """
    for head in heads:
        parameter = head.weight_t
        state = optimizer.state.get(parameter)
        if not state:
            continue
        linear_shape = (parameter.size(1), parameter.size(0))
        for key, value in state.items():
            if isinstance(value, Tensor) and value.shape == linear_shape and value.shape != parameter.shape:
                state[key] = value.t().contiguous()
