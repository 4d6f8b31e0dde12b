"""Layers both model families can use: the chunked mixture cross-entropy and the fast dropout."""

from lightning_fed.models.layers.fast_dropout import Dropout
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy

__all__ = ["Dropout", "mixture_cross_entropy"]
