"""The zoo's models (installed as ``lightning_fed.models``), by family: ``sequential`` and ``multitask``.

Every public class is re-exported here, so a config names it ``lightning_fed.models.<Class>``.
"""

from lightning_fed.models.base import FederatedTask
from lightning_fed.models.multitask import PLE, MMoE, MultiTaskRecommendationTask, PFMSMTrec, SharedBottom
from lightning_fed.models.sequential import (
    FedCL4SRec,
    FedContrastVAE,
    FedDCSR,
    FedDuoRec,
    FedSASRec,
    FedVSAN,
    FMoECDSR,
    FMoECDSRNet,
    SequentialRecommendationTask,
)

__all__ = [
    "FMoECDSR",
    "FMoECDSRNet",
    "FedCL4SRec",
    "FedContrastVAE",
    "FedDCSR",
    "FedDuoRec",
    "FedSASRec",
    "FedVSAN",
    "FederatedTask",
    "MMoE",
    "MultiTaskRecommendationTask",
    "PFMSMTrec",
    "PLE",
    "SequentialRecommendationTask",
    "SharedBottom",
]
