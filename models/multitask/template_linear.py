"""A linear layer whose weights follow PF-MSMTrec's parameter template: W = W_global + W_task + W_scenario."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TemplateLinear(nn.Module):
    """``y = x (W_global + W_task + W_scenario)^T + (b_global + b_task + b_scenario)``.

    The additive decomposition of the parameter template of
    docs/specs/pf-msmtrec.md (choice): ``*_global`` is shared by every client,
    ``*_task`` by the clients' copies of the same task family, ``*_scenario`` is this scenario's own part (shared
    only through personalized aggregation). ``*_global`` starts like ``nn.Linear``; the other parts start at zero,
    so a fresh layer computes exactly what an ``nn.Linear`` with the global weights computes.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight_global = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_task = nn.Parameter(torch.zeros(out_features, in_features))
        self.weight_scenario = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias_global = nn.Parameter(torch.empty(out_features))
        self.bias_task = nn.Parameter(torch.zeros(out_features))
        self.bias_scenario = nn.Parameter(torch.zeros(out_features))
        nn.init.kaiming_uniform_(self.weight_global, a=math.sqrt(5))  # nn.Linear's initialization
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.bias_global, -bound, bound)

    @property
    def weight(self) -> Tensor:
        """The composed weight W."""
        return self.weight_global + self.weight_task + self.weight_scenario

    @property
    def bias(self) -> Tensor:
        """The composed bias b."""
        return self.bias_global + self.bias_task + self.bias_scenario

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return F.linear(x, self.weight, self.bias)
