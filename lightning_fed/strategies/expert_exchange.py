"""Expert exchange (FMoE-CDSR, paper Eq. 5): the server caches each client's latest encoder, no averaging."""

from __future__ import annotations

from collections.abc import Mapping

from lightning_fed.errors import ConfigurationError
from lightning_fed.strategies.base import State, Strategy, Upload


class ExpertExchange(Strategy):
    """Each upload overwrites its client's cache entry; a client downloads every other client's entry.

    Sends: every other client's latest upload, keyed by that client's name (no aggregate).

    Args:
        max_syncs: stop updating the cache after this many rounds (None: every round). ``max_syncs=1`` is the
            paper's RQ2 protocol (checkpoint quality): train each local expert alone for E epochs
            (``local_epochs=E``), synchronize once, then keep training against those frozen checkpoints with no
            further synchronization.
    """

    sends = "peer_states"

    def __init__(self, max_syncs: int | None = None) -> None:
        if max_syncs is not None and max_syncs < 1:
            raise ConfigurationError(
                f"federation.strategy.init_args.max_syncs must be at least 1 (or null), got {max_syncs}"
            )
        self.max_syncs = max_syncs
        self.syncs = 0

    def needs_uploads(self) -> bool:  # noqa: D102
        return self.max_syncs is None or self.syncs < self.max_syncs

    def aggregate(self, store: dict[str, State], uploads: Mapping[str, Upload]) -> None:  # noqa: D102
        if self.max_syncs is not None and self.syncs >= self.max_syncs:
            return
        for client, upload in uploads.items():
            store[client] = upload.state
        self.syncs += 1

    def state_dict(self) -> dict:  # noqa: D102
        return {"syncs": self.syncs}

    def load_state_dict(self, state: dict) -> None:  # noqa: D102
        self.syncs = state.get("syncs", 0)

    def payload(self, client: str, store: Mapping[str, State]) -> dict[str, State]:  # noqa: D102
        return {origin: state for origin, state in store.items() if origin != client}
