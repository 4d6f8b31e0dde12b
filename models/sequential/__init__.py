"""Sequential cross-domain recommendation: FMoE-CDSR and its baselines, one file per model."""

from lightning_fed.models.sequential.fedcl4srec import FedCL4SRec
from lightning_fed.models.sequential.fedcontrastvae import FedContrastVAE
from lightning_fed.models.sequential.feddcsr import FedDCSR
from lightning_fed.models.sequential.fedduorec import FedDuoRec
from lightning_fed.models.sequential.fedsasrec import FedSASRec
from lightning_fed.models.sequential.fedvsan import FedVSAN
from lightning_fed.models.sequential.fmoe_cdsr import FMoECDSR, FMoECDSRNet
from lightning_fed.models.sequential.task import SequentialRecommendationTask

__all__ = [
    "FMoECDSR",
    "FMoECDSRNet",
    "FedCL4SRec",
    "FedContrastVAE",
    "FedDCSR",
    "FedDuoRec",
    "FedSASRec",
    "FedVSAN",
    "SequentialRecommendationTask",
]
