"""The proximal (personalization) regularizer: (lambda / 2) * ||theta - theta_received||^2."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def proximal_term(parameters: Mapping[str, Tensor], received: Mapping[str, Tensor], weight: float) -> Tensor:
    """``(weight / 2) * sum_k ||parameters[k] - received[k]||^2`` over the received keys.

    PF-MSMTrec's personalization regularizer (the objective of
    docs/specs/pf-msmtrec.md, as Ditto's and FedProx's proximal term); its
    gradient with respect to ``parameters[k]`` is ``weight * (parameters[k] - received[k])``. ``received`` is
    constant (what the client downloaded this round).
    """
    if weight == 0.0 or not received:
        return torch.zeros(())
    total = sum(((parameters[k] - r).pow(2).sum() for k, r in received.items()), torch.zeros(()))
    return 0.5 * weight * total
