"""FMoE-CDSR and baseline models (installed as ``lightning_fed.models``)."""

from lightning_fed.models.fedsasrec import FedSASRec
from lightning_fed.models.fmoe_cdsr import FMoECDSR, FMoECDSRNet
from lightning_fed.models.multitask_models import PLE, MMoE, PFMSMTrec, SharedBottom
from lightning_fed.models.multitask_task import MultiTaskRecommendationTask
from lightning_fed.models.sequential_task import SequentialRecommendationTask

__all__ = [
    "FMoECDSR",
    "FMoECDSRNet",
    "FedSASRec",
    "MMoE",
    "MultiTaskRecommendationTask",
    "PFMSMTrec",
    "PLE",
    "SequentialRecommendationTask",
    "SharedBottom",
]
