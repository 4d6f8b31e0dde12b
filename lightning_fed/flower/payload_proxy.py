"""The server as a remote client's round callback sees it: this message's download, and a slot for the upload."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from lightning_fed.protocols import Payload
from lightning_fed.strategies.base import State


class PayloadProxy:
    """Stands in for :class:`~lightning_fed.server.Server` in a client's :class:`FederatedRound` on a Flower node.

    ``download`` returns what the server sent in the current message; ``upload`` keeps what the client uploads,
    for the reply. The callback calls nothing else.

    Args:
        client: the client's name (a download or upload for another name is a programming error).
    """

    def __init__(self, client: str) -> None:
        self.client = client
        self.payload: Payload = {}
        self.uploaded: tuple[State, int] | None = None

    def receive(self, payload: Mapping[str, Mapping[str, Tensor]]) -> None:
        """The payload of the message being handled."""
        self.payload = payload
        self.uploaded = None

    def download(self, client: str) -> Payload:  # noqa: D102
        self._check(client)
        return self.payload

    def upload(self, client: str, state: State, num_examples: int) -> None:  # noqa: D102
        self._check(client)
        self.uploaded = (state, num_examples)

    def _check(self, client: str) -> None:
        if client != self.client:
            raise ValueError(f"this node serves client {self.client!r}, not {client!r}")
