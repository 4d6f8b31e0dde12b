"""Multi-scenario multi-task data: AliExpress, Tenrec and a synthetic dataset, one scenario per client."""

from lightning_fed.datamodules.multitask.aliexpress import AliExpress
from lightning_fed.datamodules.multitask.multi_scenario import POOLED_CLIENT, MultiScenarioMultiTask
from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskDataModule
from lightning_fed.datamodules.multitask.synthetic import SyntheticMSMT
from lightning_fed.datamodules.multitask.tenrec import Tenrec

__all__ = ["POOLED_CLIENT", "AliExpress", "MultiScenarioMultiTask", "MultiTaskDataModule", "SyntheticMSMT", "Tenrec"]
