"""Conflict-averse aggregation of client updates: CAGrad (Liu et al., NeurIPS 2021) over clients, as in FedHCA2."""

from __future__ import annotations

import torch
from torch import Tensor


def conflict_averse_direction(updates: Tensor, c: float, steps: int = 200) -> Tensor:
    """The aggregated update ``d = g0 + (c * ||g0|| / ||g_w||) * g_w`` of K client updates (rows of ``updates``).

    ``g0`` is the mean update; ``g_w = sum_i w_i g_i`` with w on the simplex minimizing CAGrad's dual objective
    ``F(w) = g_w . g0 + c * ||g0|| * ||g_w||`` (NeurIPS'21, Eq. 4-5). ``d`` maximizes the worst client's
    improvement ``min_i g_i . d`` within the ball ``||d - g0|| <= c ||g0||``. ``c = 0`` is plain averaging.

    Args:
        updates: (K, D) float tensor, one flattened update per client.
        c: the radius factor in [0, 1).
        steps: Adam steps on the softmax logits of w (K is small; the objective only needs the K x K Gram matrix).
    """
    if not 0.0 <= c < 1.0:
        raise ValueError(f"conflict coordination c must be in [0, 1), got {c}")
    g = updates.double()
    g0 = g.mean(0)
    if c == 0.0 or len(g) == 1:
        return g0.to(updates.dtype)
    gram = g @ g.T  # (K, K)
    g0_norm = g0.norm()
    if g0_norm == 0:
        return g0.to(updates.dtype)
    mean_gram = gram.mean(1)  # g_i . g0
    logits = torch.zeros(len(g), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        w = torch.softmax(logits, 0)
        objective = w @ mean_gram + c * g0_norm * torch.sqrt(w @ gram @ w + 1e-20)
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
    w = torch.softmax(logits.detach(), 0)
    g_w = w @ g
    g_w_norm = g_w.norm()
    if g_w_norm == 0:
        return g0.to(updates.dtype)
    return (g0 + (c * g0_norm / g_w_norm) * g_w).to(updates.dtype)
