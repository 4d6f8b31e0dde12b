"""Synchronous federated training of per-client Lightning Trainers."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning import LightningDataModule, LightningModule
from lightning.pytorch.loggers import Logger

from lightning_fed.callbacks.federated_round import FederatedRound
from lightning_fed.checkpoint import load_checkpoint, resolve_ckpt_path, save_checkpoint
from lightning_fed.client_runtime import ClientRuntime, Stage
from lightning_fed.errors import ConfigurationError, check_integer
from lightning_fed.memory import resident_memory_gb
from lightning_fed.pools import ClientPool, InProcessPool
from lightning_fed.protocols import client_datamodules_of, require_federated
from lightning_fed.results import average_over_clients, markdown_table, write_json_atomic
from lightning_fed.rounds import RoundClock
from lightning_fed.server import Server
from lightning_fed.strategies import Strategy
from lightning_fed.strategies.compatibility import check_compatible
from lightning_fed.trainer_factory import TrainerFactory


@dataclass
class FlowerOptions:
    """Where a ``runtime: flower`` federation runs.

    Attributes:
        superlink: the name of a SuperLink connection in Flower's configuration (``$FLWR_HOME/config.toml``).
        round_timeout: seconds the server waits for the nodes to connect and for each request's replies; a client
            that has not answered by then fails the run with its name.
        stream: show the ServerApp's log while it runs (``flwr run --stream``).
    """

    superlink: str = "local"
    round_timeout: float = 3600.0
    stream: bool = True


@dataclass
class LoopState:
    """Where the round loop is; saved in every checkpoint and restored on resume.

    Attributes:
        run_id: identifies one federation run across its checkpoints (a resumed run keeps it).
        round: the last completed round (0 before round 1).
        best_round: the round with the best monitored score so far.
        best_score: that score.
        bad_rounds: consecutive rounds without improvement since the best one.
        stopped: early stopping ended the run (a resumed run then trains no further).
        best_checkpoint: the file that holds the best round's states.
        step: training steps taken over all clients (the x axis of the clients' logged losses).
        history: every completed round's validation table (what ``results.json`` lists).
    """

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    round: int = 0
    best_round: int | None = None
    best_score: float | None = None
    bad_rounds: int = 0
    stopped: bool = False
    best_checkpoint: str | None = None
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


class Federation:
    """Runs synchronous rounds over the clients of a scenario, then tests the best round.

    Round r: the server samples ``fraction`` of the clients; each trains ``local_epochs`` epochs in a fresh
    Trainer, downloading before and uploading after (:class:`~lightning_fed.callbacks.FederatedRound`); the
    server aggregates; every client validates with the new cache; the score is the unweighted mean over clients
    of the ``monitor`` metric. Early stopping follows Lightning's ``EarlyStopping``: a round that does not improve
    on the best score counts as bad, and training stops once ``patience`` rounds in a row were bad
    (``patience: 0`` stops at the first round without improvement; ``null`` never stops early). Every round saves
    ``federation/last.pt`` (and ``federation/best.pt`` when it improves) in the run directory, so a failed run
    resumes with ``--ckpt_path``. After training, the best round's client states and server cache are restored
    and every client is tested; ``results.json`` (every round's validation, the best round's test) and a markdown
    table are written.

    A run directory holds one federation: ``fit`` refuses a directory that already holds another run's
    checkpoints or results (resume it with ``--ckpt_path``, or pass ``overwrite``).

    LightningCLI builds it in place of a Trainer: ``fit``, ``validate`` and ``test`` take the template model
    (deep-copied for each client) and a scenario datamodule with ``client_datamodules()``.
    """

    def __init__(
        self,
        strategy: Strategy,
        rounds: int = 60,
        local_epochs: int = 3,
        patience: int | None = 10,
        first_round_epochs: int | None = None,
        fraction: float = 1.0,
        monitor: str | None = None,
        monitor_mode: Literal["max", "min"] | None = None,
        sampling_seed: int = 0,
        overwrite: bool = False,
        runtime: Literal["inprocess", "flower"] = "inprocess",
        flower: FlowerOptions | None = None,
        release_memory: bool = True,
    ) -> None:
        """Configure the federation.

        Args:
            strategy: the server's strategy (``lightning_fed.strategies``); it must send what the model receives.
            rounds: R, the maximum number of rounds (at least 1).
            local_epochs: epochs of local training per round (at least 1).
            first_round_epochs: epochs of local training in round 1 only (None: ``local_epochs``). RQ2 of the
                FMoE-CDSR paper trains each local expert alone for E epochs before the one synchronization, then
                rounds of ``local_epochs``.
            patience: consecutive rounds without improvement of the monitored score before stopping (0: stop at
                the first one; None: never stop early).
            fraction: share of clients that train in each round, in (0, 1].
            monitor: validation metric averaged over clients for early stopping and the best round (None: the
                model's declared ``monitor``).
            monitor_mode: whether higher (``"max"``) or lower is better (None: the model's declaration, or
                ``"max"`` when the metric is not the model's own).
            sampling_seed: seed of the client sampling.
            overwrite: let ``fit`` start a new run in a run directory that holds an earlier run's files.
            runtime: ``"inprocess"``: every client in this process; ``"flower"``: each client on a Flower node (its
                own machine), the same clients, strategies and round loop (``pip install 'lightning-fed[flower]'``).
            flower: where and how to run under Flower (``runtime: flower``).
            release_memory: after each client's training and each evaluation, return the heap memory its Trainer
                freed to the system (glibc's ``malloc_trim``, or tcmalloc's ``ReleaseFreeMemory`` when it is
                preloaded; no effect under another allocator). Without it, the allocator keeps every client's
                freed step buffers resident for reuse. Set it false together with the
                ``MALLOC_MMAP_MAX_``/``MALLOC_TRIM_THRESHOLD_`` tunables, whose point is to keep them.
        """
        check_integer("federation.rounds", rounds)
        check_integer("federation.local_epochs", local_epochs)
        if first_round_epochs is not None:
            check_integer("federation.first_round_epochs", first_round_epochs)
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 0):
            raise ConfigurationError(
                f"federation.patience must be an integer of at least 0 (0: stop at the first round without "
                f"improvement) or null (never stop early), got {patience!r}"
            )
        if not 0.0 < fraction <= 1.0:
            raise ConfigurationError(f"federation.fraction must be in (0, 1], got {fraction!r}")
        if monitor is not None and (not isinstance(monitor, str) or not monitor.strip()):
            raise ConfigurationError(f"federation.monitor must name a validation metric, got {monitor!r}")
        if monitor_mode not in ("max", "min", None):
            raise ConfigurationError(f"federation.monitor_mode must be max or min, got {monitor_mode!r}")
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.first_round_epochs = first_round_epochs
        self.patience = patience
        self.fraction = fraction
        if not isinstance(strategy, Strategy):
            raise ConfigurationError(
                f"federation.strategy must be a server strategy (lightning_fed.strategies), got {strategy!r}"
            )
        self.strategy = strategy
        self.configured_monitor = monitor
        self.configured_monitor_mode = monitor_mode
        self.monitor: str = monitor or ""
        self.monitor_mode: Literal["max", "min"] = monitor_mode or "max"
        self.is_fraction: Callable[[str], bool] = lambda name: True
        self.sampling_seed = sampling_seed
        self.overwrite = overwrite
        if runtime not in ("inprocess", "flower"):
            raise ConfigurationError(f"federation.runtime must be inprocess or flower, got {runtime!r}")
        self.runtime = runtime
        if not isinstance(release_memory, bool):
            raise ConfigurationError(f"federation.release_memory must be true or false, got {release_memory!r}")
        self.release_memory = release_memory
        self.flower = flower or FlowerOptions()
        self.trainers = TrainerFactory()
        self.run_config: dict[str, Any] = {}
        self.state = LoopState()
        self.clock = RoundClock(self.rounds)

    # Set-up -------------------------------------------------------------------------------------------------
    def configure_trainers(self, trainer_config: dict[str, Any], run_config: dict[str, Any] | None = None) -> None:
        """Set the Trainer arguments for the clients' Trainers and the configuration to record."""
        self.trainers = TrainerFactory(trainer_config)
        self.run_config = run_config or {}

    @property
    def run_dir(self) -> Path:
        """``default_root_dir`` of the Trainer configuration (the current directory if unset)."""
        return self.trainers.run_dir

    @property
    def loggers(self) -> list[Logger]:
        """The federation's loggers (CSV always, plus the configured ones; none in a fast dev run)."""
        return [] if self.trainers.fast_dev_run else self.trainers.loggers()

    def checkpoint_path(self, name: Literal["best", "last"]) -> Path:
        """``<run dir>/federation/<name>.pt``."""
        return self.run_dir / "federation" / f"{name}.pt"

    def _base_seed(self) -> int | None:
        """The run's seed: the config's ``seed_everything``, else Lightning's ``PL_GLOBAL_SEED`` (None: unseeded)."""
        seed = self.run_config.get("seed_everything")
        if seed is None or isinstance(seed, bool):
            seed = os.environ.get("PL_GLOBAL_SEED")
        return None if seed is None else int(seed)

    def seed_for(self, *parts: str | int) -> None:
        """Seed torch, NumPy and random from (the run's seed, ``parts``): e.g. ("fit", client, round).

        Each client's initialization and each of its rounds then draw the same numbers whatever the other clients
        did before it in this process, and whether the run was resumed: the condition for identical results
        with clients in other processes or on other machines.
        """
        base = self._base_seed()
        if base is None:
            return
        seed = int.from_bytes(hashlib.sha256(repr((base, *parts)).encode()).digest()[:4], "little")
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def check_model(self, model: LightningModule) -> None:
        """Refuse a model that declares nothing to share, or that cannot take what the strategy sends."""
        try:
            require_federated(model)
        except TypeError as err:
            raise ConfigurationError(f"model: {err}") from None
        check_compatible(model, self.strategy)

    def new_server(self, clients: list[str]) -> Server:
        """The server of a federation of ``clients``, with this federation's strategy and sampling."""
        self.clock = RoundClock(self._rounds_to_run())
        return Server(self.strategy, clients, self.fraction, self.sampling_seed)

    def build_client(
        self, model: LightningModule, name: str, datamodule: LightningDataModule, server: Any
    ) -> ClientRuntime:
        """Client ``name``: a copy of the template ``model`` built on its datamodule, synchronizing with ``server``.

        The same call builds a client in this process and on a client's own machine (Flower): the build is seeded
        with (the run's seed, "build", ``name``), so both get the same initial weights.
        """
        module = copy.deepcopy(model)
        self.seed_for("build", name)
        module.build(datamodule)
        sync = FederatedRound(name, server, self.clock.view)
        return ClientRuntime(name, module, datamodule, sync, self.trainers, self.seed_for, self.release_memory)

    def _clients(self, model: LightningModule, datamodule: Any) -> tuple[InProcessPool, Server]:
        self.check_model(model)
        client_dms = client_datamodules_of(datamodule)
        server = self.new_server(list(client_dms))
        clients = [self.build_client(model, name, dm, server) for name, dm in client_dms.items()]
        pool = InProcessPool(clients, lambda: self.loggers, lambda: self.state.step, self._add_steps)
        self._check_monitor(pool.declarations)
        return pool, server

    def _add_steps(self, steps: int) -> None:
        self.state.step += steps

    def _check_monitor(self, module: LightningModule) -> None:
        """Take the monitored metric from the model unless configured, and check the model reports it."""
        declared = getattr(module, "monitor", None)
        self.monitor = self.configured_monitor or declared or ""
        if not self.monitor:
            raise ConfigurationError(
                f"federation.monitor: {type(module).__name__} declares no metric to monitor; set federation.monitor"
            )
        own_mode = getattr(module, "monitor_mode", "max") if self.monitor == declared else "max"
        self.monitor_mode = self.configured_monitor_mode or own_mode
        self.is_fraction = getattr(module, "metric_is_fraction", lambda name: True)
        names = getattr(module, "validation_metrics", None)
        if names is not None and self.monitor not in names:
            raise ConfigurationError(
                f"federation.monitor: {type(module).__name__} reports no validation metric {self.monitor!r}; "
                f"choose one of {', '.join(names)}"
            )

    # Checkpoints --------------------------------------------------------------------------------------------
    def _checkpoint(self, pool: ClientPool, server: Server, state: LoopState) -> dict[str, Any]:
        return {
            **asdict(state),
            "model_config": self.run_config.get("model"),
            "data_config": self.run_config.get("data"),
            "strategy": type(self.strategy).__name__,
            "server": server.state_dict(),
            "clients": pool.client_states(),
        }

    def _save(self, checkpoint: dict[str, Any], name: Literal["best", "last"]) -> Path:
        if self.trainers.fast_dev_run:
            return self.checkpoint_path(name)  # a fast dev run writes nothing (as in Lightning)
        return save_checkpoint(checkpoint, self.checkpoint_path(name))

    def _restore(
        self, pool: ClientPool, server: Server, path: Path, checkpoint: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Load the clients' states (where the checkpoint holds them) and the server from a checkpoint.

        Args:
            pool: the clients to load.
            server: the server to load.
            path: the checkpoint file (read unless ``checkpoint`` is its content, already read).
            checkpoint: the file's content, when the caller has read it already.
        """
        if checkpoint is None:  # a resumed run: read whole, as training goes on to update the optimizer states
            checkpoint = load_checkpoint(path)
        saved_strategy = checkpoint.get("strategy")
        if saved_strategy is not None and saved_strategy != type(self.strategy).__name__:
            raise ConfigurationError(
                f"ckpt_path: {path} was trained with federation.strategy {saved_strategy}, but the configuration "
                f"gives {type(self.strategy).__name__}"
            )
        pool.load_client_states(checkpoint["clients"], path)
        server.load_state_dict(checkpoint["server"])
        return checkpoint

    def _check_run_dir_is_free(self) -> None:
        """A new run never overwrites another run's checkpoints or results, unless ``overwrite`` says so."""
        if self.overwrite or self.trainers.fast_dev_run:
            return
        earlier = (self.checkpoint_path("last"), self.checkpoint_path("best"), self.run_dir / "results.json")
        found = [p for p in earlier if p.exists()]
        if found:
            raise ConfigurationError(
                f"trainer.default_root_dir: {self.run_dir} already holds a federation run ({found[0].name}); resume "
                f"it with --ckpt_path {self.checkpoint_path('last')}, choose another --trainer.default_root_dir, or "
                "pass --federation.overwrite true to replace it"
            )

    # Rounds -------------------------------------------------------------------------------------------------
    def epochs_of_round(self, round_idx: int) -> int:
        """Local epochs in round ``round_idx`` (``first_round_epochs`` in round 1 when set)."""
        if round_idx == 1 and self.first_round_epochs is not None:
            return self.first_round_epochs
        return self.local_epochs

    def _evaluate_all(self, pool: ClientPool, server: Server, stage: Stage) -> dict[str, dict]:
        per_client = pool.evaluate(server, stage)
        return {**per_client, "Avg": average_over_clients(per_client)}

    def _improved(self, score: float, best: float | None) -> bool:
        if best is None:
            return True
        return score > best if self.monitor_mode == "max" else score < best

    def _log(self, table: dict[str, dict[str, float]], stage: str, extra: dict[str, float] | None = None) -> None:
        metrics = {f"{row}/{stage}/{k}": v for row, values in table.items() for k, v in values.items()}
        metrics.update(extra or {})
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.state.step)

    def _start_loggers(self, clients: list[str]) -> None:
        for logger in self.loggers:
            logger.log_hyperparams(self.run_config or {"federation": "lightning_fed"})
            experiment = getattr(logger, "experiment", None)
            if type(logger).__name__ == "WandbLogger" and hasattr(experiment, "define_metric"):
                experiment.define_metric("round")
                for row in [*clients, "Avg", "system"]:
                    experiment.define_metric(f"{row}/val/*", step_metric="round")
                experiment.define_metric("system/*", step_metric="round")

    def _rounds_to_run(self) -> int:
        return 1 if self.trainers.fast_dev_run else self.rounds

    def fit(self, model: LightningModule, datamodule: Any, ckpt_path: str | Path | None = None) -> dict[str, Any]:
        """Train the federation, then test the best round.

        Args:
            model: the template LightningModule (one deep copy per client).
            datamodule: the scenario (``client_datamodules()`` gives one datamodule per client).
            ckpt_path: a saved federation checkpoint to resume from (a path, or ``"last"`` / ``"best"`` in the
                run directory).

        Returns:
            The results (also written to ``results.json`` in the run directory).
        """
        resume_from = resolve_ckpt_path(ckpt_path, self.run_dir)
        if resume_from is None:
            self._check_run_dir_is_free()
        if self.runtime == "flower":
            return self._fit_on_flower(resume_from)
        self.trainers.check()  # before the data is read
        pool, server = self._clients(model, datamodule)
        return self.run(pool, server, resume_from)

    def _fit_on_flower(self, resume_from: Path | None) -> dict[str, Any]:
        """Write this run's Flower App, submit it to ``flower.superlink`` and return the ServerApp's results."""
        from lightning_fed.flower import require_flower

        require_flower()
        from lightning_fed.flower.launch import submit, write_app

        if self.trainers.fast_dev_run:
            raise ConfigurationError(
                "trainer.fast_dev_run runs in process only: drop it or set federation.runtime: inprocess"
            )
        config = dict(self.run_config)
        trainer = dict(config.get("trainer") or {})
        trainer["default_root_dir"] = str(self.run_dir.resolve())  # the server's results, wherever flwr runs it
        config["trainer"] = trainer
        app = write_app(
            config,
            self.run_dir.resolve() / "flower_app",
            self.flower.round_timeout,
            "" if resume_from is None else str(resume_from.resolve()),
        )
        results = self.run_dir / "results.json"
        before = results.stat().st_mtime_ns if results.is_file() else None
        submit(app, self.flower.superlink, stream=self.flower.stream)
        if not results.is_file() or results.stat().st_mtime_ns == before:
            raise ConfigurationError(
                f"flower: the run ended without writing {results}; the SuperLink {self.flower.superlink!r} runs the "
                "ServerApp on its own host, so the results are in this trainer.default_root_dir there"
            )
        return json.loads(results.read_text(encoding="utf-8"))

    def run(self, pool: ClientPool, server: Server, resume_from: Path | None = None) -> dict[str, Any]:
        """The round loop over ``pool``'s clients (in this process, or remote), then the test of the best round.

        Args:
            pool: the clients.
            server: the server of those clients (:meth:`new_server`).
            resume_from: a checkpoint of this federation to continue from (None: a new run).

        Returns:
            The results (also written to ``results.json`` in the run directory).
        """
        self._check_monitor(pool.declarations)
        state = self.state = LoopState()
        if resume_from is not None:
            saved = self._restore(pool, server, resume_from)
            state = self.state = LoopState(**{k: saved[k] for k in asdict(state) if k in saved})
            state.history = list(state.history)
            if "best_checkpoint" not in saved:  # written before best_checkpoint existed: best.pt beside it
                state.best_checkpoint = str(resume_from.with_name("best.pt"))
            if "stopped" not in saved:
                state.stopped = self.patience is not None and state.bad_rounds > 0 and state.bad_rounds >= self.patience
            self._check_resumed_run_dir(state, resume_from)
        else:
            server.initialize(pool.initial_state())
        pool.begin(state.run_id, state.round)
        self._start_loggers(pool.names)
        started = time.time()
        total = self._rounds_to_run()
        if state.stopped:
            print(f"early stopping: the run had already stopped after round {state.round}", flush=True)
        for round_idx in range(state.round + 1, total + 1):
            if state.stopped:
                break
            participants = server.sample_clients(round_idx)
            self.clock.start(round_idx)
            pool.train(server, participants, round_idx, self.epochs_of_round(round_idx))
            server.aggregate()
            validation = self._evaluate_all(pool, server, "validate")
            score = self._score(validation)
            rss = resident_memory_gb()
            state.history.append(
                {"round": round_idx, "participants": sorted(participants), "resident_memory_gb": rss, **validation}
            )
            self._log(validation, "val", {"round": round_idx, "system/rss_gb": rss})
            print(
                f"[round {round_idx}/{total}] Avg val {self.monitor} = {score:.4f} "
                f"({time.time() - started:.0f}s, resident memory {rss:.2f} GB)",
                flush=True,
            )
            state.round = round_idx
            if self._improved(score, state.best_score):
                state.best_round, state.best_score, state.bad_rounds = round_idx, score, 0
                state.best_checkpoint = str(self.checkpoint_path("best"))
                pool.keep_best(round_idx)
                self._save(self._checkpoint(pool, server, state), "best")
            else:
                state.bad_rounds += 1
                if self.patience is not None and state.bad_rounds >= self.patience:
                    state.stopped = True
                    print(f"early stopping: no improvement for {state.bad_rounds} round(s)", flush=True)
            self._save(self._checkpoint(pool, server, state), "last")
        if not self.trainers.fast_dev_run:  # a fast dev run tests the one round it trained, in memory
            self._restore_best(pool, server, state)
        test = self._evaluate_all(pool, server, "test")
        self._log(test, "test")
        results = {
            "config": self.run_config,
            "run_id": state.run_id,
            "clients": pool.names,
            "strategy": type(self.strategy).__name__,
            "rounds_run": state.round,
            "stopped_early": state.stopped,
            "best_round": state.best_round,
            "best_val_score": state.best_score,
            "monitor": self.monitor,
            "validation": state.history,
            "test": test,
            "train_seconds": round(time.time() - started, 1),
        }
        self._finish(results, test, f"Test metrics (%) of the best round ({state.best_round})")
        return results

    def _score(self, validation: dict[str, dict[str, float]]) -> float:
        if self.monitor not in validation["Avg"]:
            raise ConfigurationError(
                f"federation.monitor: the clients report no validation metric {self.monitor!r}; choose one of "
                f"{', '.join(validation['Avg'])}"
            )
        return validation["Avg"][self.monitor]

    def _check_resumed_run_dir(self, state: LoopState, resume_from: Path) -> None:
        """A resumed run may write into its own run directory, or into one that holds no other run."""
        if self.trainers.fast_dev_run:
            return
        last = self.checkpoint_path("last")
        if last.is_file() and last.resolve() != resume_from.resolve():  # resuming from it: the same run
            other = load_checkpoint(last, option=f"trainer.default_root_dir ({last})", mmap=True).get("run_id")
            if other is not None and other != state.run_id and not self.overwrite:
                raise ConfigurationError(
                    f"trainer.default_root_dir: {self.run_dir} holds another federation run than the one in "
                    "ckpt_path; resume into that run's directory, choose another --trainer.default_root_dir, or pass "
                    "--federation.overwrite true"
                )

    def _restore_best(self, pool: ClientPool, server: Server, state: LoopState) -> None:
        """Load the best round's states (not its loop state: the history of every round is kept)."""
        if state.best_checkpoint is None:
            raise ConfigurationError("the run has no best round to test (no round was validated)")
        # The recorded file, or this run directory's best.pt (a run directory may have been moved).
        for path in dict.fromkeys([Path(state.best_checkpoint), self.checkpoint_path("best")]):
            if not path.is_file():
                continue
            # Mapped, not read: the clients copy their weights out of it, and the optimizer states, which the test
            # never reads, stay on disk. Read whole, it held a second federation beside the live one (0.9 GB more
            # at the paper's FKCB configuration: the process's peak, after the last round).
            checkpoint = load_checkpoint(path, mmap=True)
            if checkpoint.get("run_id") in (None, state.run_id) and checkpoint.get("best_round") == state.best_round:
                self._restore(pool, server, path, checkpoint)
                pool.restore_best(state.best_round)
                return
        raise ConfigurationError(
            f"{state.best_checkpoint} no longer holds this run's best round {state.best_round} (it was removed or "
            "replaced by another run); nothing was tested"
        )

    def _load_for_evaluation(
        self, model: LightningModule, datamodule: Any, ckpt_path: str | Path | None, stage: str
    ) -> tuple[InProcessPool, Server]:
        path = resolve_ckpt_path(ckpt_path, self.run_dir, default="best")
        if ckpt_path is None and not path.is_file():
            raise ConfigurationError(
                f"{stage}: no saved federation in {self.run_dir} ({path} does not exist); run `fit` first, or pass "
                "--ckpt_path (a federation/best.pt or last.pt)"
            )
        # a bad file fails here, before the data is read; mapped, as in _restore_best: evaluation copies the weights
        checkpoint = load_checkpoint(path, mmap=True)
        self.trainers.check()
        pool, server = self._clients(model, datamodule)
        self._restore(pool, server, path, checkpoint)
        return pool, server

    def _evaluate_saved(
        self, stage: Literal["validate", "test"], model: LightningModule, datamodule: Any, ckpt_path: str | Path | None
    ) -> dict[str, Any]:
        pool, server = self._load_for_evaluation(model, datamodule, ckpt_path, stage)
        self._start_loggers(pool.names)
        table = self._evaluate_all(pool, server, stage)
        self._log(table, "val" if stage == "validate" else "test")
        key, title = ("validation", "Validation") if stage == "validate" else ("test", "Test")
        results = {"config": self.run_config, "clients": pool.names, key: table}
        self._finish(results, table, f"{title} metrics (%)", f"results_{stage}.json")
        return results

    def validate(self, model: LightningModule, datamodule: Any, ckpt_path: str | Path | None = None) -> dict:
        """Validate every client of a saved federation (default: ``<run dir>/federation/best.pt``).

        Writes ``results_validate.json`` (``fit``'s ``results.json`` is left as it is).
        """
        return self._evaluate_saved("validate", model, datamodule, ckpt_path)

    def test(self, model: LightningModule, datamodule: Any, ckpt_path: str | Path | None = None) -> dict:
        """Test every client of a saved federation (default: ``<run dir>/federation/best.pt``).

        Writes ``results_test.json`` (``fit``'s ``results.json`` is left as it is).
        """
        return self._evaluate_saved("test", model, datamodule, ckpt_path)

    def _finish(
        self, results: dict[str, Any], table: dict[str, dict[str, float]], title: str, name: str = "results.json"
    ) -> None:
        if self.trainers.fast_dev_run:
            where = "fast dev run: nothing written"
        else:
            write_json_atomic(self.run_dir / name, results)
            where = f"results: {self.run_dir / name}"
        for logger in self.loggers:
            logger.save()
            logger.finalize("success")
        print(f"\n{title}\n\n{markdown_table(table, self.is_fraction)}\n\n{where}", flush=True)
