"""A scenario's machine builds only its own datamodule, from its own files (the real AliExpress sample)."""

import shutil

import pytest
import torch
from conftest import ROOT

from lightning_fed.datamodules import AliExpress, Tenrec
from lightning_fed.errors import MissingDataError

FIXTURE = ROOT / "tests" / "fixtures" / "aliexpress"


def test_an_aliexpress_country_needs_only_its_own_files(tmp_path):
    shutil.copytree(FIXTURE / "AliExpress_A", tmp_path / "AliExpress_A")
    alone = AliExpress(scenarios=["A", "B"], root=str(tmp_path), val_fraction=0.3).client_datamodule("A")
    whole = AliExpress(scenarios=["A", "B"], root=str(FIXTURE), val_fraction=0.3).client_datamodules()["A"]
    for module in (alone, whole):
        module.setup("fit")
    assert alone.vocab_sizes == whole.vocab_sizes
    for a, b in zip(next(iter(alone.val_dataloader())), next(iter(whole.val_dataloader()))):
        assert torch.equal(a, b)
    with pytest.raises(MissingDataError) as missing:
        AliExpress(scenarios=["A", "B"], root=str(tmp_path)).client_datamodule("B")
    assert "AliExpress_B/train.csv" in str(missing.value) and "AliExpress_A" not in str(missing.value)
    with pytest.raises(MissingDataError):
        AliExpress(scenarios=["A", "B"], root=str(tmp_path)).prepare_data()  # the whole dataset needs every file


def test_a_tenrec_scenario_checks_only_its_own_file(tmp_path):
    with pytest.raises(MissingDataError) as missing:
        Tenrec(scenarios=["QK-video", "QK-article"], root=str(tmp_path)).prepare_client_data("QK-article")
    assert "QK-article.csv" in str(missing.value) and "QK-video" not in str(missing.value)
