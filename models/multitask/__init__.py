"""Multi-scenario multi-task recommendation: PF-MSMTrec and its baselines, one file per model (net and task)."""

from lightning_fed.models.multitask.mmoe import MMoE, MMoENet
from lightning_fed.models.multitask.pf_msmtrec import PFMSMTrec
from lightning_fed.models.multitask.ple import PLE, PLENet
from lightning_fed.models.multitask.shared_bottom import SharedBottom, SharedBottomNet
from lightning_fed.models.multitask.task import MultiTaskRecommendationTask

__all__ = [
    "MMoE",
    "MMoENet",
    "MultiTaskRecommendationTask",
    "PFMSMTrec",
    "PLE",
    "PLENet",
    "SharedBottom",
    "SharedBottomNet",
]
