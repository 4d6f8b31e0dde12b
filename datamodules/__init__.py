"""The zoo's data (installed as ``lightning_fed.datamodules``), by family: ``sequential`` and ``multitask``.

Every public class is re-exported here, so a config names it ``lightning_fed.datamodules.<Class>``. The offline
scenario builder is ``python -m lightning_fed.datamodules.builder``.
"""

from lightning_fed.datamodules.base import ClientDataModule, ScenarioDataModule
from lightning_fed.datamodules.multitask import (
    POOLED_CLIENT,
    AliExpress,
    MultiScenarioMultiTask,
    MultiTaskDataModule,
    SyntheticMSMT,
    Tenrec,
)
from lightning_fed.datamodules.sequential import (
    FKCB,
    IGNORE_TARGET,
    MBG,
    SGH,
    CrossDomainScenario,
    SequenceDataModule,
    SGH5Core,
)

__all__ = [
    "FKCB",
    "IGNORE_TARGET",
    "MBG",
    "POOLED_CLIENT",
    "SGH",
    "AliExpress",
    "ClientDataModule",
    "CrossDomainScenario",
    "MultiScenarioMultiTask",
    "MultiTaskDataModule",
    "SGH5Core",
    "ScenarioDataModule",
    "SequenceDataModule",
    "SyntheticMSMT",
    "Tenrec",
]
