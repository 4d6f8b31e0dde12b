"""What crosses the wire, as Flower records: payloads, uploads, metrics, and a client's private state blob.

- A download (a :data:`~lightning_fed.protocols.Payload`) is one ``ArrayRecord`` per origin, under
  ``payload/<origin>`` (a client's name, ``global`` or ``personal``).
- An upload is the ``ArrayRecord`` ``upload`` (exactly the keys of the model's ``shared_state()``) and the
  ``MetricRecord`` ``metrics`` (``num-examples``, ``steps``, the last training losses).
- Instructions travel in the ``ConfigRecord`` ``config``.
- A client's private state (weights, optimizer moments, round) never leaves its machine: it is one ``torch.save``
  blob kept in the node's ``Context.state`` (a ``ConfigRecord`` holds bytes, so every dtype survives) or in a file.

Arrays go through NumPy in Flower, so a shared tensor must have a NumPy dtype (no bfloat16).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import torch
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from torch import Tensor

PAYLOAD_PREFIX = "payload/"
UPLOAD = "upload"
METRICS = "metrics"
CONFIG = "config"


def to_array_record(state: Mapping[str, Tensor], what: str) -> ArrayRecord:
    """``state`` as an ArrayRecord; a bfloat16 tensor (which NumPy cannot hold) is a ValueError naming it."""
    for key, tensor in state.items():
        if tensor.dtype == torch.bfloat16:
            raise ValueError(
                f"{what}: {key} is bfloat16, which Flower's arrays (NumPy) cannot carry; share it in float32"
            )
    return ArrayRecord({k: v.detach().cpu().contiguous() for k, v in state.items()})


def from_array_record(record: ArrayRecord) -> dict[str, Tensor]:
    """The tensors of ``record``, keyed as they were sent."""
    return dict(record.to_torch_state_dict())


def encode_payload(payload: Mapping[str, Mapping[str, Tensor]], content: RecordDict) -> None:
    """Add ``payload`` to ``content``: one ArrayRecord per origin."""
    for origin, state in payload.items():
        content[PAYLOAD_PREFIX + origin] = to_array_record(state, f"payload from {origin}")


def decode_payload(content: RecordDict) -> dict[str, dict[str, Tensor]]:
    """The payload in ``content``, keyed by origin."""
    return {
        key.removeprefix(PAYLOAD_PREFIX): from_array_record(record)
        for key, record in content.array_records.items()
        if key.startswith(PAYLOAD_PREFIX)
    }


def metric_record(values: Mapping[str, float | int]) -> MetricRecord:
    """A MetricRecord of scalars (Flower's metric keys may hold '/')."""
    return MetricRecord({k: (int(v) if isinstance(v, bool) else v) for k, v in values.items()})


def dumps(obj: Any) -> bytes:
    """``obj`` (tensors, dicts, lists, numbers) as bytes, by ``torch.save``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def loads(blob: bytes) -> Any:
    """The object :func:`dumps` wrote, read as data only (``weights_only=True``)."""
    return torch.load(io.BytesIO(blob), weights_only=True)
