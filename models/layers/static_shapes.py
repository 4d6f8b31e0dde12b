"""Matmul row counts rounded up to a few fixed sizes.

On CPU, PyTorch runs bf16 matmuls through oneDNN, which builds and JIT-compiles a kernel for every new matmul shape.
When a dimension follows the data (the positions with a target in a batch, the rows of a loss chunk), nearly every
training step meets new shapes and pays for compiling them: about a tenth of an FMoE-CDSR step on this CPU. Padding
such a dimension to a multiple of :data:`ROW_MULTIPLE` leaves a handful of shapes, compiled once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

#: Row counts are rounded up to a multiple of this.
ROW_MULTIPLE = 64


def padded_rows(n: int, cap: int | None = None) -> int:
    """``n`` rounded up to a multiple of :data:`ROW_MULTIPLE` (at most ``cap``)."""
    padded = -(-n // ROW_MULTIPLE) * ROW_MULTIPLE
    return padded if cap is None else min(padded, cap)


def on_padded_rows(function: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``function(x)`` for a row-wise ``function`` of (..., f) inputs, run on zero rows padded to a fixed count.

    The leading dimensions are flattened into rows, padded with zero rows up to :func:`padded_rows`, and the
    padding's outputs are dropped: for a function that treats rows independently (linear layers, LayerNorm,
    activations, dropout) the result and its gradients are those of ``function(x)``. Dropout draws masks for the
    padding rows too, so the random stream differs from an unpadded call.
    """
    rows = x.reshape(-1, x.size(-1))
    n = rows.size(0)
    out = function(F.pad(rows, (0, 0, 0, padded_rows(n) - n)))
    return out[:n].reshape(*x.shape[:-1], out.size(-1))
