"""The server: a parameter store, a strategy, client sampling and the round's inbox."""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from lightning_fed.errors import ConfigurationError
from lightning_fed.strategies.base import GLOBAL, PERSONAL, State, Strategy, Upload


class Server:
    """Holds the parameter store and applies the strategy at the end of each synchronous round.

    Args:
        strategy: how uploads become the store and what each client downloads.
        clients: the federation's client names.
        fraction: share of clients sampled per round (at least one).
        seed: seed of the client sampling (round r uses a generator seeded with (seed, r)).
    """

    def __init__(self, strategy: Strategy, clients: list[str], fraction: float = 1.0, seed: int = 0) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        reserved = sorted({GLOBAL, PERSONAL} & set(clients))
        if reserved:
            raise ConfigurationError(
                f"data: a client may not be named {reserved[0]!r}: that name is a payload origin of the server "
                "(lightning_fed.strategies.base); rename the domain or scenario"
            )
        self.strategy = strategy
        self.clients = list(clients)
        self.fraction = fraction
        self.seed = seed
        self.store: dict[str, State] = {}
        self.inbox: dict[str, Upload] = {}

    def sample_clients(self, round_idx: int) -> list[str]:
        """The clients that train in round ``round_idx``, in the federation's order."""
        count = max(1, math.ceil(self.fraction * len(self.clients) - 1e-9))
        if count >= len(self.clients):
            return list(self.clients)
        rng = np.random.default_rng([self.seed, round_idx, zlib.crc32(b"sample")])
        chosen = set(rng.choice(len(self.clients), size=count, replace=False).tolist())
        return [c for i, c in enumerate(self.clients) if i in chosen]

    def initialize(self, initial: State) -> None:
        """Let the strategy seed the store before round 1."""
        self.strategy.initialize(self.store, initial)

    def download(self, client: str) -> dict[str, State]:
        """What ``client`` receives now."""
        return self.strategy.payload(client, self.store)

    def upload(self, client: str, state: State, num_examples: int) -> None:
        """Receive ``client``'s shared state for this round."""
        if client not in self.clients:
            raise ValueError(f"unknown client {client!r}; the federation has {self.clients}")
        self.inbox[client] = Upload(state=state, num_examples=num_examples)

    def aggregate(self) -> None:
        """Apply the strategy to the round's uploads and empty the inbox."""
        self.strategy.aggregate(self.store, self.inbox)
        self.inbox = {}

    def state_dict(self) -> dict[str, Any]:
        """The parameter store and the strategy's state (for checkpoints)."""
        return {"store": self.store, "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the parameter store and the strategy's state."""
        self.store = state["store"]
        self.strategy.load_state_dict(state.get("strategy", {}))
        self.inbox = {}
