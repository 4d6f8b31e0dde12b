"""Sequence augmentations of the contrastive baselines: crop, mask, reorder (docs/specs/baselines.md).

CL4SRec (Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022) as used by FedDCSR's
baselines, on the n real items of a left-padded input sequence:

- crop keeps floor(0.6 n) consecutive items from a uniformly random start;
- mask sets floor(0.3 n) random positions to the padding id (there is no [mask] token);
- reorder shuffles a random window of floor(0.6 n) consecutive items.

Views are left-padded again. Every function works on a whole batch at once and draws from ``generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

ViewDraw = Callable[..., Tensor]  # (inputs (B, T)[, generator]) -> views (B, V, T)

Augmentation = Literal["crop", "mask", "reorder"]
AUGMENTATIONS: tuple[Augmentation, ...] = ("crop", "mask", "reorder")


def _lengths(inputs: Tensor, pad_id: int) -> Tensor:
    return (inputs != pad_id).sum(1)


def _uniform_start(span: Tensor, generator: torch.Generator | None) -> Tensor:
    """A uniform integer in [0, span] per row."""
    draws = torch.rand(span.shape, generator=generator, device=span.device)
    return torch.minimum((draws * (span + 1)).floor().long(), span)


def crop(inputs: Tensor, pad_id: int, ratio: float = 0.6, generator: torch.Generator | None = None) -> Tensor:
    """Keep floor(ratio * n) consecutive real items of each row from a uniform start, left-padded again."""
    t = inputs.size(1)
    n = _lengths(inputs, pad_id)
    keep = (ratio * n).floor().long()
    start = _uniform_start(n - keep, generator)  # offset of the kept window among the real items
    # output position p holds the (keep - (t - p))-th kept item, i.e. real item start + keep - (t - p)
    positions = torch.arange(t, device=inputs.device)
    source = (t - n + start + keep)[:, None] - (t - positions)[None, :]
    valid = positions[None, :] >= (t - keep)[:, None]
    out = inputs.gather(1, source.clamp(0, t - 1))
    return out.masked_fill(~valid, pad_id)


def mask(inputs: Tensor, pad_id: int, ratio: float = 0.3, generator: torch.Generator | None = None) -> Tensor:
    """Set floor(ratio * n) uniformly chosen real positions of each row to the padding id."""
    real = inputs != pad_id
    count = (ratio * real.sum(1)).floor().long()
    keys = torch.rand(inputs.shape, generator=generator, device=inputs.device).masked_fill(~real, 2.0)
    rank = keys.argsort(1).argsort(1)  # the real positions take ranks 0..n-1 in random order
    return inputs.masked_fill(rank < count[:, None], pad_id)


def reorder(inputs: Tensor, pad_id: int, ratio: float = 0.6, generator: torch.Generator | None = None) -> Tensor:
    """Shuffle a uniformly placed window of floor(ratio * n) consecutive real items of each row."""
    t = inputs.size(1)
    n = _lengths(inputs, pad_id)
    width = (ratio * n).floor().long()
    begin = (t - n + _uniform_start(n - width, generator))[:, None]  # the window's first column
    positions = torch.arange(t, device=inputs.device, dtype=torch.float)[None, :].expand(len(inputs), t)
    inside = (positions >= begin) & (positions < begin + width[:, None])
    # outside the window a position keeps its own (integer) key; inside, keys are uniform in [begin, begin +
    # width), so sorting the keys permutes the window's items among themselves and leaves the rest in place
    noise = begin + torch.rand(inputs.shape, generator=generator, device=inputs.device) * width[:, None]
    keys = torch.where(inside, noise, positions)
    return inputs.gather(1, keys.argsort(1))


def augment(inputs: Tensor, pad_id: int, operators: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Apply one operator per row: ``operators`` (B,) indexes :data:`AUGMENTATIONS` (0 crop, 1 mask, 2 reorder)."""
    views = torch.stack(
        [crop(inputs, pad_id, generator=generator), mask(inputs, pad_id, generator=generator),
         reorder(inputs, pad_id, generator=generator)]
    )  # fmt: skip
    return views.gather(0, operators.view(1, -1, 1).expand(1, *inputs.shape)).squeeze(0)


def two_distinct_operators(batch_size: int, device: torch.device, generator: torch.Generator | None = None):
    """Per row, two different operators drawn without replacement (CL4SRec's pair of views)."""
    keys = torch.rand(batch_size, len(AUGMENTATIONS), generator=generator, device=device)
    order = keys.argsort(1)
    return order[:, 0], order[:, 1]


def unique_rows(rows: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows and the index of each one's first occurrence."""
    unique, inverse = rows.unique(dim=0, return_inverse=True)
    first = torch.full((len(unique),), len(rows), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(rows)), reduce="amin"
    )
    return unique, first


class FixedViews:
    """Views of every training sequence drawn once, then looked up by the sequence (``aug_refresh: once``).

    FedDCSR's code draws its augmented views at preprocessing, once per sequence, and reuses them every epoch
    (docs/specs/baselines.md, "Augmentations"); the models' default redraws them at every step.

    Args:
        inputs: (M, T) the client's training inputs (duplicates allowed: equal rows share their views).
        draw: ``draw(inputs, generator) -> (M, V, T)`` the model's views of a batch.
        generator: the RNG of the one draw.
    """

    def __init__(self, inputs: Tensor, draw: ViewDraw, generator: torch.Generator | None = None) -> None:
        unique, _ = unique_rows(inputs)
        self.views = draw(unique, generator)
        self.index = {row.numpy().tobytes(): i for i, row in enumerate(unique)}

    def __call__(self, inputs: Tensor) -> Tensor:
        """The views (B, V, T) of a batch's rows."""
        try:
            rows = [self.index[row.numpy().tobytes()] for row in inputs.cpu()]
        except KeyError:
            raise ValueError("aug_refresh=once: a training batch holds a sequence that was not drawn a view") from None
        return self.views[rows].to(inputs.device)


def training_inputs(datamodule: Any) -> Tensor:
    """Every training input row (M, T) of a client's datamodule, in its loader's order."""
    return torch.cat([batch[0] for batch in datamodule.train_dataloader()])


class AugmentedViews:
    """A model's views of a batch per ``aug_refresh``: drawn at every step, or once per training sequence.

    Args:
        draw: ``draw(inputs, generator) -> (B, V, T)`` the model's views of a batch.
        refresh: ``"step"``: ``draw`` at every call; ``"once"``: one draw for the client's training sequences
            at build (:class:`FixedViews`), looked up at every call.
        datamodule: the client's datamodule (read only for ``"once"``).
    """

    def __init__(self, draw: ViewDraw, refresh: Literal["step", "once"], datamodule: Any) -> None:
        self.draw = draw
        self.fixed = FixedViews(training_inputs(datamodule), draw) if refresh == "once" else None

    def __call__(self, inputs: Tensor) -> Tensor:
        """The views (B, V, T) of a batch's rows."""
        return self.draw(inputs) if self.fixed is None else self.fixed(inputs)
