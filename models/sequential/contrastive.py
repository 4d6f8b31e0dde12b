"""Augmentation contrast of FMoE-CDSR (paper Eq. 3): NT-Xent between a sequence and its shuffled view."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def nt_xent(u: Tensor, v: Tensor, temperature: float = 1.0) -> Tensor:
    """InfoNCE over a batch of positive pairs (u_i, v_i), both directions, cosine similarity.

    Each of the 2B vectors has its partner as the positive and the other 2B - 2 vectors as negatives:
    ``loss = mean_i -log( exp(s(a_i, p_i)/tau) / sum_{k != i} exp(s(a_i, a_k)/tau) )`` over a = [u; v].

    Args:
        u: (B, d) representations of the original sequences.
        v: (B, d) representations of the augmented views.
        temperature: tau.
    """
    batch = u.size(0)
    z = F.normalize(torch.cat([u, v], 0).float(), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(u.device)
    return F.cross_entropy(sim, partner)


def shuffle_items(inputs: Tensor, pad_id: int, generator: torch.Generator | None = None) -> Tensor:
    """Randomly permute the non-padding items of each left-padded sequence (the paper's shuffle function).

    Args:
        inputs: (B, T) item ids, left-padded with ``pad_id``.
        pad_id: the padding id.
        generator: optional RNG.
    """
    keys = torch.rand(inputs.shape, generator=generator, device=inputs.device)
    keys = keys.masked_fill(inputs == pad_id, -1.0)  # padding sorts first and stays on the left
    order = keys.argsort(dim=1)
    return inputs.gather(1, order)
