"""LightningDataModules of the zoo (installed as ``lightning_fed.datamodules``)."""

from lightning_fed.datamodules.scenario import FKCB, MBG, SGH, CrossDomainScenario, SGH5Core
from lightning_fed.datamodules.sequence_datamodule import IGNORE_TARGET, SequenceDataModule

__all__ = ["FKCB", "MBG", "SGH", "SGH5Core", "CrossDomainScenario", "IGNORE_TARGET", "SequenceDataModule"]
