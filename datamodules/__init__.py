"""LightningDataModules of the zoo (installed as ``lightning_fed.datamodules``)."""

from lightning_fed.datamodules.aliexpress import AliExpress
from lightning_fed.datamodules.multi_scenario import MultiScenarioMultiTask
from lightning_fed.datamodules.multitask_datamodule import MultiTaskDataModule
from lightning_fed.datamodules.scenario import FKCB, MBG, SGH, CrossDomainScenario, SGH5Core
from lightning_fed.datamodules.sequence_datamodule import IGNORE_TARGET, SequenceDataModule
from lightning_fed.datamodules.synthetic_msmt import SyntheticMSMT
from lightning_fed.datamodules.tenrec import Tenrec

__all__ = [
    "AliExpress",
    "MultiScenarioMultiTask",
    "MultiTaskDataModule",
    "SyntheticMSMT",
    "Tenrec",
    "FKCB",
    "MBG",
    "SGH",
    "SGH5Core",
    "CrossDomainScenario",
    "IGNORE_TARGET",
    "SequenceDataModule",
]
