"""Layers both model families can use: the chunked mixture cross-entropy, the fast dropout and the item head."""

from lightning_fed.models.layers.fast_dropout import Dropout
from lightning_fed.models.layers.item_head import ItemHead
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy

__all__ = ["Dropout", "ItemHead", "mixture_cross_entropy"]
