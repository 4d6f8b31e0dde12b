"""Sequential cross-domain data: the Amazon scenarios in the FedDCSR text format, one domain per client."""

from lightning_fed.datamodules.sequential.amazon import FKCB, MBG, SGH, CrossDomainScenario, SGH5Core
from lightning_fed.datamodules.sequential.sequence_datamodule import IGNORE_TARGET, SequenceDataModule

__all__ = ["FKCB", "IGNORE_TARGET", "MBG", "SGH", "CrossDomainScenario", "SGH5Core", "SequenceDataModule"]
