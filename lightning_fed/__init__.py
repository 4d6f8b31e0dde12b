"""lightning_fed: a model-agnostic federated runtime for Lightning."""
