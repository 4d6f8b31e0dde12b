"""A Flower ``Grid`` inside one process: the real ServerApp and ClientApps, no SuperLink, no network.

Each message is handed to the ClientApp of its destination node with that node's ``Context``, as a SuperNode
would; an exception in a handler comes back as an error reply, as it does from a real node. For tests and for
debugging a deployment's apps on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid

# The process identity a Flower ServerApp process gets from its runtime: a server Message reads it. Set here as
# Flower's own compatibility grid does (flwr.server.compat.app); private to the pinned flwr release line.
from flwr.supercore.task_identity import TaskIdentity

from lightning_fed.flower.client_app import forget_runtimes

#: The node id of the server side (Flower's ``SUPERLINK_NODE_ID``).
SERVER_NODE_ID = 1


class LoopbackGrid(Grid):
    """The nodes of ``node_configs``, each served by ``client_app`` in this process.

    Args:
        client_app: the ClientApp every node runs.
        node_configs: one node config per node (e.g. ``{"client": "Food"}``).
        fresh_process: rebuild every client from its saved state for every message (as a deployment's
            process-per-message does) instead of reusing the built client.
        run_id: the run's id in every node's Context.

    Attributes:
        sent: every message the server sent, in order.
        replies: every reply, in order.
    """

    def __init__(
        self, client_app: ClientApp, node_configs: list[dict[str, Any]], fresh_process: bool = False, run_id: int = 1
    ) -> None:
        self.client_app = client_app
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SERVER_NODE_ID
        self.fresh_process = fresh_process
        self._run: Any = None
        self.contexts = {
            1000 + i: Context(run_id, 1000 + i, dict(config), RecordDict(), {}) for i, config in enumerate(node_configs)
        }
        self.sent: list[Message] = []
        self.replies: list[Message] = []
        self._pending: dict[str, Message] = {}

    def set_run(self, run: Any) -> None:  # noqa: D102
        self._run = run

    @property
    def run(self) -> Any:  # noqa: D102
        return self._run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:  # noqa: D102
        raise NotImplementedError("deprecated in Flower: build Message(content, dst_node_id, message_type)")

    def get_node_ids(self) -> Iterable[int]:  # noqa: D102
        return list(self.contexts)

    def _deliver(self, message: Message) -> Message:
        if self.fresh_process:
            forget_runtimes()
        context = self.contexts[message.metadata.dst_node_id]
        try:
            reply = self.client_app(message, context)
        except Exception as error:  # a node reports a failed handler as an error reply
            reply = Message(Error(code=0, reason=f"{type(error).__name__}: {error}"), reply_to=message)
        self.sent.append(message)
        self.replies.append(reply)
        return reply

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # noqa: D102
        ids = []
        for i, message in enumerate(messages):
            key = f"{time.monotonic_ns()}-{i}"
            self._pending[key] = self._deliver(message)
            ids.append(key)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # noqa: D102
        return [self._pending.pop(key) for key in message_ids if key in self._pending]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:  # noqa: D102
        return [self._deliver(message) for message in messages]
