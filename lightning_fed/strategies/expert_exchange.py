"""Expert exchange (FMoE-CDSR, paper Eq. 5): the server caches each domain's latest encoder, no averaging."""

from __future__ import annotations

from collections.abc import Mapping

from lightning_fed.strategies.base import State, Strategy, Upload


class ExpertExchange(Strategy):
    """Each upload overwrites its client's cache entry; a client downloads every other client's entry."""

    def aggregate(self, store: dict[str, State], uploads: Mapping[str, Upload]) -> None:  # noqa: D102
        for client, upload in uploads.items():
            store[client] = upload.state

    def payload(self, client: str, store: Mapping[str, State]) -> dict[str, State]:  # noqa: D102
        return {origin: state for origin, state in store.items() if origin != client}
