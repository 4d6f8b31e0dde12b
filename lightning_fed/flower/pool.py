"""The federation's clients as Flower nodes: the round loop's requests become messages on a Flower ``Grid``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from lightning import LightningModule
from lightning.pytorch.loggers import Logger

from lightning_fed.client_runtime import Stage
from lightning_fed.errors import ConfigurationError, UserInputError
from lightning_fed.flower.codec import CONFIG, METRICS, UPLOAD, encode_payload, from_array_record
from lightning_fed.pools import ClientPool
from lightning_fed.server import Server
from lightning_fed.strategies.base import State

POLL_SECONDS = (0.05, 1.0)  # the first wait between pulls of replies, and the longest


class ClientFailure(UserInputError):
    """A client's node failed a request, or did not answer in time; the message names the client."""


class Declarations:
    """What the round loop reads of a model, for a server that never builds one.

    The template's declarations, and the validation metrics the first client reported once built.
    """

    def __init__(self, template: LightningModule, validation_metrics: list[str]) -> None:
        self.monitor = getattr(template, "monitor", None)
        self.monitor_mode = getattr(template, "monitor_mode", "max")
        self.metric_is_fraction = getattr(template, "metric_is_fraction", lambda name: True)
        self.validation_metrics = tuple(validation_metrics) or None


class FlowerPool(ClientPool):
    """Sends the round loop's requests to the Flower nodes that serve the federation's clients.

    On creation it waits until the nodes are connected, asks each which client it serves (``query.identify``),
    and checks that every client is served by exactly one node. A request a node fails, or does not answer within
    ``timeout`` seconds, raises :class:`ClientFailure` naming the client: a round needs every sampled client.

    Args:
        grid: Flower's grid (the SuperLink, or a test's loopback grid).
        names: the federation's clients, in the scenario's order.
        template: the unbuilt template model (its declarations).
        timeout: seconds to wait for the nodes to connect, and for each request's replies.
        send_initial: whether the strategy seeds its store with the first client's initial shared state (else that
            client sends none).
        loggers: the federation's loggers (each client's training losses are logged under its name).
        step: the federation's optimizer steps so far.
        add_steps: adds a client's steps to the federation's count.
    """

    def __init__(
        self,
        grid: Grid,
        names: list[str],
        template: LightningModule,
        timeout: float,
        send_initial: bool = True,
        loggers: Callable[[], list[Logger]] = list,
        step: Callable[[], int] = lambda: 0,
        add_steps: Callable[[int], None] = lambda steps: None,
    ) -> None:
        self.grid = grid
        self.names = list(names)
        self.timeout = timeout
        self._loggers = loggers
        self._step = step
        self._add_steps = add_steps
        self.node_of = self._identify()
        self._best_round: int | None = None
        self.run_id: str | None = None
        config = RecordDict({CONFIG: ConfigRecord({"with-state": send_initial})})
        reply = self._request("query.initial", {self.names[0]: config})[self.names[0]]
        records = reply.content.array_records
        self._initial = from_array_record(records[UPLOAD]) if UPLOAD in records else {}
        metrics = list(reply.content.config_records["client"]["validation-metrics"])
        self._declarations = Declarations(template, metrics)

    # Nodes ----------------------------------------------------------------------------------------------------
    def _identify(self) -> dict[str, int]:
        deadline = time.monotonic() + self.timeout
        while True:
            nodes = list(self.grid.get_node_ids())
            if len(nodes) >= len(self.names) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        if len(nodes) < len(self.names):
            raise ClientFailure(
                f"flower: {len(nodes)} node(s) connected within {self.timeout:.0f} s; the federation needs one per "
                f"client {self.names}"
            )
        messages = [self._message(node, "query.identify", RecordDict()) for node in nodes]
        node_of: dict[str, int] = {}
        for reply in self._send(messages, {node: f"node {node}" for node in nodes}):
            name = str(reply.content.config_records["client"]["name"])
            if name in node_of:
                raise ClientFailure(
                    f"flower: two nodes serve client {name} ({node_of[name]} and {reply.metadata.src_node_id})"
                )
            node_of[name] = reply.metadata.src_node_id
        missing = [n for n in self.names if n not in node_of]
        if missing:
            raise ClientFailure(f"flower: no connected node serves client(s) {missing}; start their SuperNodes")
        return node_of

    def _message(self, node: int, message_type: str, content: RecordDict, group: str = "") -> Message:
        return Message(content, dst_node_id=node, message_type=message_type, group_id=group, ttl=self.timeout)

    def _send(self, messages: list[Message], label: dict[int, str]) -> list[Message]:
        """Send and wait; every destination must answer without an error.

        Replies are pulled as they arrive (every ``POLL_SECONDS[0]`` s at first, backing off to
        ``POLL_SECONDS[1]``), and the first error reply raises at once: a client whose data is broken ends the run
        when it fails, not after the other clients' local training. ``Grid.send_and_receive`` would wait for every
        reply and poll every 3 s.
        """
        kind = messages[0].metadata.message_type if messages else ""
        destinations = [m.metadata.dst_node_id for m in messages]
        if len(set(destinations)) < len(destinations):
            raise ValueError(f"one request sends at most one message to a node, got destinations {destinations}")
        message_ids = list(self.grid.push_messages(messages))
        unsent = [label.get(node, node) for node, i in zip(destinations, message_ids) if i is None]
        if len(message_ids) != len(messages) or unsent:
            raise ClientFailure(
                f"flower: the SuperLink did not take the {kind} message(s) for client(s) "
                f"{', '.join(map(str, unsent or [label.get(n, n) for n in destinations]))} (see its log)"
            )
        pending = dict(zip(destinations, message_ids, strict=True))
        answered: dict[int, Message] = {}
        deadline = time.monotonic() + self.timeout
        pause = POLL_SECONDS[0]
        while pending:
            for reply in self.grid.pull_messages(list(pending.values())):
                node = reply.metadata.src_node_id
                if pending.pop(node, None) is None:
                    continue  # not a reply to this request
                if reply.has_error():
                    raise ClientFailure(f"flower: client {label.get(node, node)} failed {kind}: {reply.error.reason}")
                answered[node] = reply
            if not pending:
                break
            if time.monotonic() >= deadline:
                silent = [label[node] for node in destinations if node in pending]
                raise ClientFailure(
                    f"flower: client(s) {', '.join(silent)} did not answer {kind} within {self.timeout:.0f} s"
                )
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(2 * pause, POLL_SECONDS[1])
        return [answered[node] for node in destinations]

    def _request(self, message_type: str, contents: dict[str, RecordDict], group: str = "") -> dict[str, Message]:
        names = list(contents)
        messages = [self._message(self.node_of[n], message_type, contents[n], group) for n in names]
        label = {self.node_of[n]: n for n in names}
        return dict(zip(names, self._send(messages, label)))

    # ClientPool ----------------------------------------------------------------------------------------------
    @property
    def declarations(self) -> Any:  # noqa: D102
        return self._declarations

    def initial_state(self) -> State:  # noqa: D102
        return self._initial

    def _config(self, values: dict[str, Any] | None = None) -> RecordDict:
        """A new content with the ``config`` record, which names the federation run (a new RecordDict per node)."""
        if self.run_id is None:
            raise RuntimeError("FlowerPool.begin(run_id, ...) must come before requests that touch a client's state")
        return RecordDict({CONFIG: ConfigRecord({"run": self.run_id, **(values or {})})})

    def begin(self, run_id: str, completed_round: int) -> None:
        """Name the federation run in every later request, and check that every node holds its client's state."""
        self.run_id = run_id
        replies = self._request("query.state", {c: self._config() for c in self.names})
        for client, reply in replies.items():
            saved = int(reply.content.config_records["client"]["round"])
            if saved > completed_round:
                raise ClientFailure(
                    f"flower: client {client} holds round {saved} of run {run_id}, later than the server's "
                    f"checkpoint (round {completed_round}); resume from the server's last checkpoint"
                )
            if completed_round > 0 and saved == 0:
                raise ClientFailure(
                    f"flower: client {client} holds no state of run {run_id} (its SuperNode restarted without a "
                    "state-dir, or runs elsewhere); its rounds 1.."
                    f"{completed_round} cannot be resumed"
                )

    def _download(self, server: Server, client: str, config: dict[str, Any]) -> RecordDict:
        content = self._config(config)
        encode_payload(server.download(client), content)
        return content

    def train(self, server: Server, participants: list[str], round_idx: int, epochs: int) -> None:  # noqa: D102
        upload = server.strategy.needs_uploads()
        contents = {
            c: self._download(server, c, {"round": round_idx, "epochs": epochs, "upload": upload}) for c in participants
        }
        replies = self._request(MessageType.TRAIN, contents, group=str(round_idx))
        for client in participants:
            content = replies[client].content
            metrics = dict(content.metric_records[METRICS])
            state = from_array_record(content.array_records[UPLOAD]) if UPLOAD in content.array_records else {}
            server.upload(client, state, int(metrics.pop("num-examples")))
            steps = int(metrics.pop("steps"))
            self._add_steps(steps)
            logged = {f"{client}/{k}": float(v) for k, v in metrics.items()}
            for logger in self._loggers():
                if logged:
                    logger.log_metrics(logged, step=self._step())

    def evaluate(self, server: Server, stage: Stage) -> dict[str, dict[str, float]]:  # noqa: D102
        config: dict[str, Any] = {}
        if stage == "test" and self._best_round is not None:
            config["best-round"] = self._best_round
        contents = {c: self._download(server, c, config) for c in self.names}
        kind = MessageType.EVALUATE if stage == "validate" else f"{MessageType.EVALUATE}.test"
        replies = self._request(kind, contents)
        return {c: {k: float(v) for k, v in replies[c].content.metric_records[METRICS].items()} for c in self.names}

    def client_states(self) -> None:  # noqa: D102
        return None  # each node keeps its own client's state

    def load_client_states(self, states: dict[str, Any] | None, path: Path) -> None:  # noqa: D102
        if states is not None:
            raise ConfigurationError(
                f"ckpt_path: {path} holds the clients' states of an in-process run; resume it with "
                "federation.runtime: inprocess"
            )

    def keep_best(self, round_idx: int) -> None:  # noqa: D102
        self._request("query.snapshot", {c: self._config() for c in self.names})

    def restore_best(self, round_idx: int) -> None:  # noqa: D102
        self._best_round = round_idx
