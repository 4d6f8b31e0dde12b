"""LightningDataModules of the zoo (installed as ``lightning_fed.datamodules``)."""

from lightning_fed.datamodules.scenario import FKCB, MBG, SGH, CrossDomainScenario
from lightning_fed.datamodules.sequence_datamodule import IGNORE_TARGET, SequenceDataModule

__all__ = ["FKCB", "MBG", "SGH", "CrossDomainScenario", "IGNORE_TARGET", "SequenceDataModule"]
