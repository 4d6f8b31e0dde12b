"""fp32 inside mixed-precision training: where evaluation must not round scores to bf16."""

from __future__ import annotations

import torch


def full_precision(device: torch.device | str) -> torch.autocast:
    """A context that turns autocast off on ``device``: the enclosed matmuls run in their inputs' dtype (fp32).

    Under ``precision: bf16-mixed`` a score computed inside autocast is rounded to 8 significant bits, so a
    negative within rounding of the target would tie with it (and ties count for the target).
    """
    device_type = device.type if isinstance(device, torch.device) else str(device)
    return torch.autocast(device_type, enabled=False)
