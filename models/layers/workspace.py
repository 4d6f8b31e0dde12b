"""Reusable scratch buffers for the chunked head loss and the evaluation scores."""

from __future__ import annotations

import torch
from torch import Tensor


class _Workspace:
    """Reusable chunk buffers: fresh multi-MB buffers on every call cost a page fault per page on first touch."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}

    def get(self, name: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        key = (name, dtype, device)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < rows * cols:
            with torch.inference_mode(False):  # a normal tensor: usable both in and out of inference mode
                buffer = self.buffers[key] = torch.empty(rows * cols, dtype=dtype, device=device)
        return buffer[: rows * cols].view(rows, cols)

    def clear(self) -> None:
        """Release the buffers."""
        self.buffers.clear()

    def release(self, name: str) -> None:
        """Release the buffers called ``name`` (every dtype and device)."""
        for key in [key for key in self.buffers if key[0] == name]:
            del self.buffers[key]


#: Shared by all calls of this process (training is sequential); ``WORKSPACE.clear()`` frees it.
WORKSPACE = _Workspace()
