"""The Flower ClientApp: one domain's (or scenario's) client, on the machine that holds its data.

Flower creates a ClientApp per message (in deployment, a new process per message), so nothing survives in memory
between two messages. Everything a client keeps across rounds (its module's weights, its optimizer moments, the
downloaded and frozen experts) is saved after every message as one blob (:mod:`lightning_fed.flower.codec`):

- in the node's ``Context.state`` (the default; held in the SuperNode's memory, lost if it restarts), or
- in ``<state-dir>/<run id>/<client>/{last,best}.pt`` when the node is started with ``--node-config
  'state-dir="..."'`` (survives a restart; nothing large goes through Flower's local API).

The node's config pins the client: ``client="Food"`` (or ``partition-id=i``, the i-th client of the scenario),
and optionally ``data-root`` (where this machine keeps its data) and ``threads`` (torch threads).
The client builds itself exactly as in-process (:meth:`lightning_fed.federation.Federation.build_client`), from
its own data only (``client_datamodule(name)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from lightning.pytorch.loggers import CSVLogger

from lightning_fed.atomic import write_atomically
from lightning_fed.client_runtime import ClientRuntime
from lightning_fed.errors import ConfigurationError
from lightning_fed.flower.codec import CONFIG, METRICS, UPLOAD, decode_payload, dumps, loads, to_array_record
from lightning_fed.flower.experiment import Experiment, load_experiment
from lightning_fed.flower.payload_proxy import PayloadProxy

STATE_KEY = "lightning_fed"

#: Built clients of this process, keyed by (run id, node id), with the state version they hold. Only a shortcut for
#: a process that serves several messages (a test's loopback grid): the saved state is always the truth.
_RUNTIMES: dict[tuple[int, int], tuple[ClientRuntime, Experiment, int]] = {}


def forget_runtimes() -> None:
    """Drop the built clients of this process (every message then rebuilds from the saved state, as in deployment)."""
    _RUNTIMES.clear()


def client_name(node_config: dict[str, Any], names: list[str]) -> str:
    """The client a node serves: ``client`` (a name) or ``partition-id`` (an index into ``names``)."""
    if "client" in node_config:
        name = str(node_config["client"])
        if name not in names:
            raise ConfigurationError(f"node-config: client={name!r} is not one of this experiment's clients {names}")
        return name
    if "partition-id" in node_config:
        index = int(node_config["partition-id"])
        if not 0 <= index < len(names):
            raise ConfigurationError(f"node-config: partition-id={index} is not an index of the clients {names}")
        return names[index]
    raise ConfigurationError(f'node-config: set client="<name>" (one of {names}) when starting this SuperNode')


@dataclass
class StateStore:
    """Where one client's private state lives between messages: ``Context.state``, or files in a state dir.

    States are kept per federation run (the server's ``run_id``, the same across a resumed run's Flower runs), so a
    resumed federation finds its clients' states in their state dirs.
    """

    context: Context
    client: str
    run: str
    state_dir: Path | None

    def _path(self, tag: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / self.run / self.client / f"{tag}.pt"

    def _key(self, tag: str) -> str:
        return f"{STATE_KEY}.{self.run}.{tag}"

    def version(self) -> int:
        """How many times the state was saved by this node process's runs (0: never)."""
        record = self.context.state.config_records.get(self._key("meta"))
        return int(record["version"]) if record is not None else 0

    def load(self, tag: str = "last") -> dict[str, Any] | None:
        """The saved state ``tag`` (``last`` or ``best``), or None if there is none."""
        if self.state_dir is not None:
            path = self._path(tag)
            return torch.load(path, weights_only=True) if path.is_file() else None
        record = self.context.state.config_records.get(self._key(tag))
        return None if record is None else loads(record["blob"])

    def save(self, state: dict[str, Any], tag: str = "last") -> None:
        """Save ``state`` as ``tag`` and count a new version."""
        if self.state_dir is not None:
            write_atomically(self._path(tag), lambda tmp: torch.save(state, tmp))
        else:
            self.context.state[self._key(tag)] = ConfigRecord({"blob": dumps(state)})
        meta = {"version": self.version() + 1, "round": int(state["round"])}
        if tag != "last":
            meta["round"] = self.saved_round()
        self.context.state[self._key("meta")] = ConfigRecord(meta)

    def saved_round(self) -> int:
        """The round of the last saved state (0: nothing saved)."""
        record = self.context.state.config_records.get(self._key("meta"))
        if record is not None:
            return int(record["round"])
        last = self.load("last") if self.state_dir is not None else None
        return 0 if last is None else int(last["round"])


class ClientSession:
    """One message's view of the node's client: its experiment, its runtime (built or restored) and its store.

    A message without a federation run id (``identify``, ``initial``) sees a freshly built client and no store.
    """

    def __init__(self, experiment_path: Path, context: Context, run: str | None) -> None:
        node = dict(context.node_config)
        overrides = ["--trainer.logger=false"]
        if "data-root" in node:
            overrides.append(f"--data.init_args.root={node['data-root']}")
        if "threads" in node:
            torch.set_num_threads(int(node["threads"]))
        self.key = (run, context.node_id)
        cached = _RUNTIMES.get(self.key)
        known = next((entry[1] for key, entry in _RUNTIMES.items() if key[1] == context.node_id), None)
        self.experiment = known if known is not None else load_experiment(experiment_path, overrides)
        self.name = client_name(node, self.experiment.client_names)
        state_dir = node.get("state-dir")
        self.store = (
            None if run is None else StateStore(context, self.name, run, Path(str(state_dir)) if state_dir else None)
        )
        self.proxy = PayloadProxy(self.name)
        version = 0 if self.store is None else self.store.version()
        self._cached = cached[0] if cached is not None and cached[2] == version and self.store is not None else None
        self._runtime: ClientRuntime | None = None
        self.round = 0 if self.store is None else self.store.saved_round()

    @property
    def runtime(self) -> ClientRuntime:
        """The client, as its last saved state left it (built on first use: ``identify`` needs no data)."""
        if self._runtime is None:
            runtime = self._cached
            if runtime is None:
                runtime = self._build()
                saved = None if self.store is None else self.store.load("last")
                if saved is not None:
                    runtime.load_state_dict(saved["runtime"])
            runtime.sync.server = self.proxy
            self._runtime = runtime
        return self._runtime

    def _build(self) -> ClientRuntime:
        federation = self.experiment.federation
        datamodule = self.experiment.scenario.client_datamodule(self.name)
        datamodule.setup("fit")
        return federation.build_client(self.experiment.model, self.name, datamodule, self.proxy)

    def save(self, round_idx: int, tag: str = "last") -> None:
        """Save the runtime's state as ``tag`` and remember the runtime for the next message of this process."""
        if self.store is None:
            raise RuntimeError("a message without the federation's run id cannot change a client's state")
        self.store.save({"runtime": self.runtime.state_dict(), "round": round_idx}, tag)
        _RUNTIMES[self.key] = (self.runtime, self.experiment, self.store.version())

    def logger(self) -> CSVLogger | bool:
        """The client's training log on its own machine (``<state-dir>/<run>/<client>/csv``), if it has a state dir."""
        if self.store is None or self.store.state_dir is None:
            return False
        return CSVLogger(save_dir=str(self.store.state_dir / self.store.run / self.name), name="csv")


def _config(msg: Message) -> ConfigRecord:
    return msg.content.config_records.get(CONFIG, ConfigRecord())


def make_client_app(experiment: Path) -> ClientApp:
    """The ClientApp of ``experiment`` (a YAML written by :func:`lightning_fed.flower.experiment.write_experiment`)."""
    app = ClientApp()

    def handler(body: Callable[[ClientSession, Message], RecordDict]) -> Callable[[Message, Context], Message]:
        def handle(msg: Message, context: Context) -> Message:
            run = _config(msg).get("run")
            session = ClientSession(experiment, context, None if run is None else str(run))
            return Message(body(session, msg), reply_to=msg)

        return handle

    @app.query("identify")
    @handler
    def identify(session: ClientSession, msg: Message) -> RecordDict:
        return RecordDict({"client": ConfigRecord({"name": session.name})})

    @app.query("state")
    @handler
    def state(session: ClientSession, msg: Message) -> RecordDict:
        return RecordDict({"client": ConfigRecord({"name": session.name, "round": session.round})})

    @app.query("initial")
    @handler
    def initial(session: ClientSession, msg: Message) -> RecordDict:
        module = session.runtime.module
        names = list(getattr(module, "validation_metrics", None) or [])
        content = RecordDict({"client": ConfigRecord({"name": session.name, "validation-metrics": names})})
        if bool(_config(msg).get("with-state", True)):
            content[UPLOAD] = to_array_record(module.shared_state(), f"{session.name}'s shared state")
        return content

    @app.train()
    @handler
    def train(session: ClientSession, msg: Message) -> RecordDict:
        config = _config(msg)
        round_idx = int(config["round"])
        if session.round >= round_idx:
            raise ConfigurationError(
                f"client {session.name} already holds the state of round {session.round}; the server asks for round "
                f"{round_idx} (was the server's run restarted without its checkpoint?)"
            )
        session.proxy.receive(decode_payload(msg.content))
        session.experiment.federation.clock.start(round_idx)
        steps, logged = session.runtime.train(round_idx, int(config["epochs"]), session.logger())
        session.save(round_idx)
        uploaded = session.proxy.uploaded
        if uploaded is None:
            raise RuntimeError(f"client {session.name} trained round {round_idx} but uploaded nothing")
        content = RecordDict({METRICS: MetricRecord({"num-examples": uploaded[1], "steps": steps, **logged})})
        if bool(config["upload"]):
            content[UPLOAD] = to_array_record(uploaded[0], f"{session.name}'s upload")
        return content

    @app.evaluate()
    @handler
    def validate(session: ClientSession, msg: Message) -> RecordDict:
        session.proxy.receive(decode_payload(msg.content))
        metrics = session.runtime.evaluate("validate")
        session.save(session.round)  # the module now holds this download, as an in-process client's would
        return RecordDict({METRICS: MetricRecord(metrics)})

    @app.evaluate("test")
    @handler
    def test(session: ClientSession, msg: Message) -> RecordDict:
        best_round = _config(msg).get("best-round")
        if best_round is not None:  # the best round's state; "last" stays as it is (a later resume continues it)
            best = None if session.store is None else session.store.load("best")
            if best is None or int(best["round"]) != int(best_round):
                found = None if best is None else best["round"]
                raise ConfigurationError(
                    f"client {session.name} holds no state of the best round {best_round} (its best is {found})"
                )
            session.runtime.load_state_dict(best["runtime"])
            _RUNTIMES.pop(session.key, None)
        session.proxy.receive(decode_payload(msg.content))
        return RecordDict({METRICS: MetricRecord(session.runtime.evaluate("test"))})

    @app.query("snapshot")
    @handler
    def snapshot(session: ClientSession, msg: Message) -> RecordDict:
        session.save(session.round, "best")
        return RecordDict({"client": ConfigRecord({"round": session.round})})

    return app
