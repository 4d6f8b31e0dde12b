"""What crosses the wire: payloads and uploads as Flower records, and a client's private state blob."""

import pytest
import torch
from flwr.app import RecordDict

from lightning_fed.flower.codec import decode_payload, dumps, encode_payload, from_array_record, loads, to_array_record


def test_a_payload_round_trips_exactly_with_its_origins_and_keys():
    torch.manual_seed(0)
    payload = {
        "Food": {
            "encoder.blocks.0.weight": torch.randn(4, 3),
            "encoder.steps": torch.tensor([7, -2], dtype=torch.int64),
        },
        "global": {"z_g": torch.randn(2, 5, 3)},
    }
    content = RecordDict()
    encode_payload(payload, content)
    assert sorted(content.array_records) == ["payload/Food", "payload/global"]
    decoded = decode_payload(content)
    assert list(decoded) == ["Food", "global"]
    for origin, state in payload.items():
        assert list(decoded[origin]) == list(state)
        for key, tensor in state.items():
            assert decoded[origin][key].dtype == tensor.dtype
            assert torch.equal(decoded[origin][key], tensor)


def test_a_bfloat16_shared_tensor_is_refused_by_name():
    with pytest.raises(ValueError, match=r"Food's upload: head.weight is bfloat16"):
        to_array_record({"head.weight": torch.ones(2, dtype=torch.bfloat16)}, "Food's upload")


def test_the_private_state_blob_keeps_every_dtype_and_structure():
    state = {"module": {"w": torch.ones(3, dtype=torch.bfloat16)}, "sync": {"optimizer_states": [{"step": 4.0}]}}
    back = loads(dumps(state))
    assert back["module"]["w"].dtype == torch.bfloat16 and torch.equal(back["module"]["w"], state["module"]["w"])
    assert back["sync"] == state["sync"]


def test_an_array_record_keeps_shape_and_values():
    tensor = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    back = from_array_record(to_array_record({"x": tensor}, "t"))["x"]
    assert back.shape == (2, 3, 4) and torch.equal(back, tensor)
