"""Inverted dropout with a cheaper random mask on CPU.

On CPU, ``torch.nn.Dropout`` draws its mask with ``bernoulli_``, which took about 25 ms per (512, 16, 256)
tensor here, the largest single cost of an FMoE-CDSR step after the softmax matmuls. This module draws 16
random bits per element from ``random_`` over the full int64 range instead (about 3 ms), and applies the mask in
the input's dtype. The drop probability is quantized to multiples of 1/65536 (0.3 becomes 19661/65536 =
0.300003). On other devices it calls ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Dropout(nn.Module):
    """Drop each element with probability ``p`` during training and scale the rest by 1 / (1 - p)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * 65536) - 32768  # keep where a uniform int16 >= threshold

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        # The full int64 range: a plain random_() leaves the sign bit at 0, which would bias one lane of four.
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        bits = words.view(torch.int16)[:n].view(x.shape)
        scale = 1.0 / (1.0 - (self.threshold + 32768) / 65536)
        # The mask in x's dtype (multiplying by a bool tensor is a slow mixed-dtype path on CPU, forward and
        # backward). fp32/fp64 compute at their own precision, so the scale folds into the mask exactly; a
        # reduced-precision x is multiplied by {0, 1}, then by the scale in fp32 arithmetic, as x * mask * scale.
        mask = torch.ge(bits, self.threshold, out=torch.empty(x.shape, dtype=x.dtype))
        if x.dtype in (torch.float32, torch.float64):
            return x * mask.mul_(scale)
        return torch.mul(x, mask).mul_(scale)

    def extra_repr(self) -> str:  # noqa: D102
        return f"p={self.p}"
