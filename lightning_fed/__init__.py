"""lightning_fed: a model-agnostic federated runtime for Lightning."""

from lightning_fed.memory import bound_onednn_caches

bound_onednn_caches()  # before any oneDNN primitive exists (see lightning_fed.memory)
