"""Local-only training: the server keeps nothing and sends nothing (the Local Expert variant)."""

from __future__ import annotations

from collections.abc import Mapping

from lightning_fed.strategies.base import State, Strategy, Upload


class LocalOnly(Strategy):
    """No exchange at all: each client trains on its own data only.

    Sends: nothing.
    """

    sends = "nothing"

    def needs_uploads(self) -> bool:  # noqa: D102
        return False

    def aggregate(self, store: dict[str, State], uploads: Mapping[str, Upload]) -> None:  # noqa: D102
        return None

    def payload(self, client: str, store: Mapping[str, State]) -> dict[str, State]:  # noqa: D102
        return {}
