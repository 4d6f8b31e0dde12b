"""Callbacks of the zoo (installed as ``lightning_fed.callbacks``)."""

from lightning_fed.callbacks.federated_progress_bar import FederatedProgressBar
from lightning_fed.callbacks.federated_round import FederatedRound

__all__ = ["FederatedProgressBar", "FederatedRound"]
