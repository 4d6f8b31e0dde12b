"""A client's machine builds only its own datamodule, from its own domain's files (real FKCB files)."""

import tarfile

import pytest
import torch

from lightning_fed.datamodules import FKCB, CrossDomainScenario
from lightning_fed.datamodules.sequential.sequence_source import embedded_archive
from lightning_fed.errors import ConfigurationError, MissingDataError


@pytest.fixture
def food_only(tmp_path):
    """A data root that holds FKCB's Food files and nothing else (as on Food's own machine)."""
    with tarfile.open(embedded_archive("fkcb"), "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("Food/")]
        tar.extractall(tmp_path, members=members, filter="data")
    return tmp_path


def test_a_client_needs_only_its_own_domain(food_only):
    scenario = CrossDomainScenario(["Food", "Kitchen"], root=str(food_only), max_sequences=50, num_negatives=9)
    food = scenario.client_datamodule("Food")
    food.setup()
    shipped = FKCB(domains=["Food"], max_sequences=50, num_negatives=9).client_datamodules()["Food"]
    shipped.setup()
    assert food.num_items == shipped.num_items and food.scenario_domains == ["Food", "Kitchen"]
    assert all(
        torch.equal(a, b) for a, b in zip(next(iter(food.val_dataloader())), next(iter(shipped.val_dataloader())))
    )
    with pytest.raises(MissingDataError) as missing:
        scenario.client_datamodule("Kitchen")
    assert "Kitchen/num_items.txt" in str(missing.value) and "Food/" not in str(missing.value)
    with pytest.raises(MissingDataError):
        scenario.prepare_data()  # the whole scenario still needs every domain
    with pytest.raises(ConfigurationError, match="'Books' is not one of"):
        scenario.client_datamodule("Books")


def test_reference_candidate_draws_need_every_domain(food_only):
    scenario = CrossDomainScenario(["Food", "Kitchen"], root=str(food_only), candidate_draws="reference")
    with pytest.raises(MissingDataError, match="Kitchen"):
        scenario.client_datamodule("Food")
