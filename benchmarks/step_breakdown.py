"""Where one FMoE-CDSR training step goes (not a test: it prints figures).

One client of FKCB at the paper's configuration (d = 256, batch 256, all four experts, full softmax, bf16
autocast), stepped as ``train_step.py`` steps it: ``FMoECDSR.backward_step`` unchanged, then Adam. The phases are
timed from outside the model, by wrapping what the step calls, so the step that is timed is the real one:

- ``items_ms``: the rows of every expert's item input G + E (Eq. 1) that the batch reads, forward;
- ``expert_forward_ms``: the rest of the experts' forward: their input layers and encoders on the sequences and
  their contrastive views;
- ``expert_losses_ms``: the experts' next-item losses over all items, with their gradients (computed in the
  forward pass) and their kept logits;
- ``expert_backward_ms``: backpropagating each expert's loss (head gradients scaled, then through the encoder
  and G + E);
- ``gate_ms`` / ``fusion_loss_ms`` / ``fusion_backward_ms``: the gate on the detached outputs, L_fuse from the
  kept logits, and its backward (into the gate);
- ``optimizer_ms``: Adam's step;
- ``other_ms``: the rest of the step (the contrastive and KL terms, bookkeeping).

Prints one final JSON line with the medians of the timed steps, their ``step_s`` median and the process's
``allocator``.

    python benchmarks/step_breakdown.py                    # client Food
    python benchmarks/step_breakdown.py --client Kitchen   # Kitchen's head (32,919 items)
    python benchmarks/step_breakdown.py --expert-chunk-size 512 --chunk-size 512   # other loss chunks
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

import lightning_fed.models.sequential.fmoe_cdsr as fmoe_cdsr_module
from lightning_fed.datamodules import FKCB
from lightning_fed.memory import allocator
from lightning_fed.models import FMoECDSR

PHASES = (
    "items",
    "expert_forward",
    "expert_losses",
    "expert_backward",
    "gate",
    "fusion_loss",
    "fusion_backward",
    "optimizer",
)


class PhaseClock:
    """Seconds spent in each phase during the current step, exclusive of the timed phases called within it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per active call: seconds spent in timed calls made within it

    def timed(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, with the wall-clock time of every call (less its timed inner calls) added to ``phase``."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[phase] += elapsed - self._inner.pop()
                if self._inner:
                    self._inner[-1] += elapsed

        return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", default="Food", choices=["Food", "Kitchen", "Clothing", "Beauty"])
    parser.add_argument("--steps", type=int, default=7, help="timed steps (after 3 warm-up steps)")
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=None, help="loss_chunk_size (default: the model's)")
    parser.add_argument("--expert-chunk-size", type=int, default=None, help="expert_chunk_size (default: the model's)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*self.log.*")
    torch.manual_seed(0)

    datamodule = FKCB(batch_size=args.batch_size).client_datamodules()[args.client]
    datamodule.setup()
    chunks = {"loss_chunk_size": args.chunk_size, "expert_chunk_size": args.expert_chunk_size}
    model = FMoECDSR(hidden_dim=args.hidden_dim, **{k: v for k, v in chunks.items() if v is not None})
    model.build(datamodule)
    optimizer = model.configure_optimizers()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    experts = len(model.net.experts)

    clock = PhaseClock()
    for expert in model.net.experts:  # instance attributes shadow the methods: the model code is not touched
        expert.item_inputs = clock.timed("items", expert.item_inputs)
        expert.forward = clock.timed("expert_forward", expert.forward)
    model.net.gate_weights = clock.timed("gate", model.net.gate_weights)
    originals = {
        name: getattr(fmoe_cdsr_module, name) for name in ("mixture_cross_entropy", "mixture_loss_from_logits")
    }
    fmoe_cdsr_module.mixture_cross_entropy = clock.timed("expert_losses", originals["mixture_cross_entropy"])
    fmoe_cdsr_module.mixture_loss_from_logits = clock.timed("fusion_loss", originals["mixture_loss_from_logits"])
    expert_backward = clock.timed("expert_backward", torch.Tensor.backward)
    fusion_backward = clock.timed("fusion_backward", torch.Tensor.backward)
    step_optimizer = clock.timed("optimizer", optimizer.step)
    calls = []

    def backward(loss: torch.Tensor) -> None:
        # backward_step calls this once per expert, then once for L_fuse
        calls.append(None)
        (expert_backward if len(calls) <= experts else fusion_backward)(loss)

    batches = iter(datamodule.train_dataloader())
    steps: list[float] = []
    phases: dict[str, list[float]] = defaultdict(list)
    model.train()
    try:
        for step in range(3 + args.steps):
            batch = next(batches)
            clock.seconds.clear()
            calls.clear()
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                model.backward_step(batch, backward)
            step_optimizer()
            seconds = time.perf_counter() - start
            if step >= 3:
                steps.append(seconds)
                for phase in PHASES:
                    phases[phase].append(clock.seconds[phase])
                phases["other"].append(seconds - sum(clock.seconds.values()))
    finally:
        for name, function in originals.items():
            setattr(fmoe_cdsr_module, name, function)

    result: dict[str, Any] = {"client": args.client, "step_s": round(statistics.median(steps), 3)}
    result.update({f"{phase}_ms": round(1e3 * statistics.median(values), 1) for phase, values in phases.items()})
    result["allocator"] = allocator()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
