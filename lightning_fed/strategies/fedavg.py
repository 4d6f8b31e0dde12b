"""FedAvg (McMahan et al., AISTATS 2017): the average of the uploads, weighted by training size."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lightning_fed.strategies.base import GLOBAL, State, Strategy, Upload


class FedAvg(Strategy):
    """The store holds one global state, ``sum_k n_k / n * state_k`` over the round's uploads.

    Before round 1 every client starts from the same initial state (the first client's), as in FedAvg.
    Integer tensors (counters) are taken from the client with the most examples.

    Sends: ``GLOBAL``, the average (nothing before :meth:`initialize`).
    """

    sends = "average"

    def initialize(self, store: dict[str, State], initial: State) -> None:  # noqa: D102
        store[GLOBAL] = {k: v.clone() for k, v in initial.items()}

    def aggregate(self, store: dict[str, State], uploads: Mapping[str, Upload]) -> None:  # noqa: D102
        if not uploads:
            return
        total = sum(u.num_examples for u in uploads.values())
        if total <= 0:
            raise ValueError("FedAvg needs clients with at least one training example")
        largest = max(uploads.values(), key=lambda u: u.num_examples).state
        averaged: State = {}
        for name, reference in largest.items():
            if not torch.is_floating_point(reference):
                averaged[name] = reference.clone()
                continue
            averaged[name] = sum(u.state[name].double() * (u.num_examples / total) for u in uploads.values()).to(
                reference.dtype
            )
        store[GLOBAL] = averaged

    def payload(self, client: str, store: Mapping[str, State]) -> dict[str, State]:  # noqa: D102
        return {GLOBAL: store[GLOBAL]} if GLOBAL in store else {}
