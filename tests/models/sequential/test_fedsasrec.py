"""FedSASRec reads the server's average by its origin name."""

import pytest
import torch

from lightning_fed.datamodules import FKCB
from lightning_fed.models import FedSASRec
from lightning_fed.protocols import client_datamodules_of
from lightning_fed.strategies.base import GLOBAL


def test_fedsasrec_loads_the_global_average_and_refuses_other_origins():
    datamodule = client_datamodules_of(FKCB(domains=["Beauty"], max_sequences=16, num_negatives=9))["Beauty"]
    model = FedSASRec(hidden_dim=8, num_heads=2)
    model.build(datamodule)
    assert model.ignore_target == datamodule.ignore_target and model.pad_id == datamodule.num_items
    average = {k: torch.full_like(v, 0.5) for k, v in model.shared_state().items()}
    with pytest.raises(ValueError, match="one averaged encoder"):
        model.load_shared_state({"Food": average})
    model.load_shared_state({})  # local training: nothing changes
    model.load_shared_state({GLOBAL: average})
    assert all(torch.equal(v, average[k]) for k, v in model.shared_state().items())
