"""Synchronous federated training of per-client Lightning Trainers."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from lightning import LightningDataModule, LightningModule
from lightning.pytorch.loggers import Logger

from lightning_fed.callbacks.federated_round import FederatedRound
from lightning_fed.client_logger import ClientLogger
from lightning_fed.federated_module import require_federated
from lightning_fed.results import average_over_clients, markdown_table, write_json_atomic
from lightning_fed.server import Server
from lightning_fed.strategies import ExpertExchange, Strategy
from lightning_fed.trainer_factory import TrainerFactory, quiet_lightning


@dataclass
class Client:
    """One client: its own LightningModule, DataModule and synchronization callback."""

    name: str
    module: LightningModule
    datamodule: LightningDataModule
    sync: FederatedRound


class Federation:
    """Runs synchronous rounds over the clients of a scenario, then tests the best round.

    Round r: the server samples ``fraction`` of the clients; each trains ``local_epochs`` epochs in a fresh
    Trainer, downloading before and uploading after (:class:`~lightning_fed.callbacks.FederatedRound`); the
    server aggregates; every client validates with the new cache; the score is the unweighted mean over clients
    of the ``monitor`` metric; training stops after ``patience`` rounds without improvement. Every round saves
    ``federation/last.pt`` (and ``federation/best.pt`` when it improves) in the run directory, so a failed run
    resumes with ``--ckpt_path``. After training, the best round's client states and server cache are restored
    and every client is tested; ``results.json`` and a markdown table are written.

    LightningCLI builds it in place of a Trainer: ``fit``, ``validate`` and ``test`` take the template model
    (deep-copied for each client) and a scenario datamodule with ``client_datamodules()``.
    """

    def __init__(
        self,
        rounds: int = 60,
        local_epochs: int = 3,
        patience: int | None = 10,
        fraction: float = 1.0,
        strategy: Strategy | None = None,
        monitor: str = "MRR",
        monitor_mode: Literal["max", "min"] = "max",
        sampling_seed: int = 0,
    ) -> None:
        """Configure the federation.

        Args:
            rounds: R, the maximum number of rounds.
            local_epochs: epochs of local training per round.
            patience: rounds without improvement of the monitored score before stopping (None: never stop).
            fraction: share of clients that train in each round.
            strategy: the server's strategy (default: ExpertExchange, FMoE-CDSR's).
            monitor: validation metric averaged over clients for early stopping and the best round.
            monitor_mode: whether higher (``"max"``) or lower is better.
            sampling_seed: seed of the client sampling.
        """
        if rounds < 1 or local_epochs < 1:
            raise ValueError("rounds and local_epochs must be at least 1")
        self.rounds = rounds
        self.local_epochs = local_epochs
        self.patience = patience
        self.fraction = fraction
        self.strategy = strategy if strategy is not None else ExpertExchange()
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.sampling_seed = sampling_seed
        self.trainers = TrainerFactory()
        self.run_config: dict[str, Any] = {}
        self.step = 0
        self.history: list[dict[str, Any]] = []

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
        """The federation's loggers (CSV always, plus the configured ones)."""
        return self.trainers.loggers()

    def _clients(self, model: LightningModule, datamodule: Any) -> tuple[list[Client], Server]:
        if not hasattr(datamodule, "client_datamodules"):
            raise TypeError(f"{type(datamodule).__name__} is not a federated scenario: it needs client_datamodules()")
        require_federated(model)
        datamodule.prepare_data()
        client_dms = datamodule.client_datamodules()
        server = Server(self.strategy, list(client_dms), self.fraction, self.sampling_seed)
        clients = []
        for name, dm in client_dms.items():
            module = copy.deepcopy(model)
            module.build(dm)
            sync = FederatedRound(name, server)
            sync.total_rounds = self.rounds
            clients.append(Client(name, module, dm, sync))
        return clients, server

    # Checkpoints --------------------------------------------------------------------------------------------
    def _checkpoint(self, clients: list[Client], server: Server, state: dict[str, Any]) -> dict[str, Any]:
        return {
            **state,
            "step": self.step,
            "history": self.history,
            "server": server.state_dict(),
            "clients": {c.name: {"module": c.module.state_dict(), "sync": c.sync.state_dict()} for c in clients},
        }

    def _save(self, checkpoint: dict[str, Any], name: str) -> Path:
        path = self.run_dir / "federation" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)  # a crash mid-write never damages the previous checkpoint
        return path

    def _load(self, clients: list[Client], server: Server, path: str | Path) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no saved federation at {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        saved = set(checkpoint["clients"])
        if saved != {c.name for c in clients}:
            raise ValueError(f"{path}: saved clients {sorted(saved)} differ from the scenario's clients")
        for c in clients:
            c.module.load_state_dict(checkpoint["clients"][c.name]["module"])
            c.sync.load_state_dict(checkpoint["clients"][c.name]["sync"])
        server.load_state_dict(checkpoint["server"])
        self.step = checkpoint.get("step", 0)
        self.history = checkpoint.get("history", [])
        return checkpoint

    # Rounds -------------------------------------------------------------------------------------------------
    def _train_client(self, client: Client) -> None:
        logger = ClientLogger(self.loggers, client.name, lambda: self.step)
        trainer = self.trainers.fit_trainer(client.name, client.sync, self.local_epochs, logger)
        with quiet_lightning():
            trainer.fit(client.module, datamodule=client.datamodule)
        self.step += trainer.global_step

    def _evaluate(self, client: Client, stage: Literal["validate", "test"]) -> dict[str, float]:
        trainer = self.trainers.eval_trainer(client.name, client.sync)
        with quiet_lightning():
            run = trainer.validate if stage == "validate" else trainer.test
            (metrics,) = run(client.module, datamodule=client.datamodule, verbose=False)
        prefix = "val/" if stage == "validate" else "test/"
        return {k.removeprefix(prefix): float(v) for k, v in metrics.items() if k.startswith(prefix)}

    def _evaluate_all(self, clients: list[Client], stage: Literal["validate", "test"]) -> dict[str, dict]:
        per_client = {c.name: self._evaluate(c, stage) for c in clients}
        return {**per_client, "Avg": average_over_clients(per_client)}

    def _improved(self, score: float, best: float | None) -> bool:
        if best is None:
            return True
        return score > best if self.monitor_mode == "max" else score < best

    def _log(self, table: dict[str, dict[str, float]], stage: str, round_idx: int | None) -> None:
        metrics = {f"{row}/{stage}/{k}": v for row, values in table.items() for k, v in values.items()}
        if round_idx is not None:
            metrics["round"] = round_idx
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.step)

    def _start_loggers(self, clients: list[Client]) -> None:
        for logger in self.loggers:
            logger.log_hyperparams(self.run_config or {"federation": "lightning_fed"})
            experiment = getattr(logger, "experiment", None)
            if type(logger).__name__ == "WandbLogger" and hasattr(experiment, "define_metric"):
                experiment.define_metric("round")
                for row in [*(c.name for c in clients), "Avg"]:
                    experiment.define_metric(f"{row}/val/*", step_metric="round")

    def fit(self, model: LightningModule, datamodule: Any, ckpt_path: str | Path | None = None) -> dict[str, Any]:
        """Train the federation, then test the best round.

        Args:
            model: the template LightningModule (one deep copy per client).
            datamodule: the scenario (``client_datamodules()`` gives one datamodule per client).
            ckpt_path: a saved ``federation/last.pt`` to resume from.

        Returns:
            The results (also written to ``results.json`` in the run directory).
        """
        clients, server = self._clients(model, datamodule)
        self._start_loggers(clients)
        state = {"round": 0, "best_round": None, "best_score": None, "bad_rounds": 0}
        if ckpt_path is not None:
            saved = self._load(clients, server, ckpt_path)
            state = {k: saved[k] for k in state}
        else:
            self.step, self.history = 0, []
            server.initialize(clients[0].module.shared_state())
        started = time.time()
        for round_idx in range(state["round"] + 1, self.rounds + 1):
            if self.patience is not None and state["bad_rounds"] >= self.patience:
                print(f"early stopping: no improvement for {self.patience} rounds", flush=True)
                break
            participants = set(server.sample_clients(round_idx))
            for client in clients:
                client.sync.round = round_idx
                if client.name in participants:
                    self._train_client(client)
            server.aggregate()
            validation = self._evaluate_all(clients, "validate")
            score = validation["Avg"][self.monitor]
            self.history.append({"round": round_idx, "participants": sorted(participants), **validation})
            self._log(validation, "val", round_idx)
            print(
                f"[round {round_idx}/{self.rounds}] Avg val {self.monitor} = {score:.4f} "
                f"({time.time() - started:.0f}s)",
                flush=True,
            )
            state["round"] = round_idx
            if self._improved(score, state["best_score"]):
                state.update(best_round=round_idx, best_score=score, bad_rounds=0)
                self._save(self._checkpoint(clients, server, state), "best.pt")
            else:
                state["bad_rounds"] += 1
            self._save(self._checkpoint(clients, server, state), "last.pt")
        self._load(clients, server, self.run_dir / "federation" / "best.pt")
        test = self._evaluate_all(clients, "test")
        self._log(test, "test", None)
        results = {
            "config": self.run_config,
            "clients": [c.name for c in clients],
            "strategy": type(self.strategy).__name__,
            "rounds_run": state["round"],
            "best_round": state["best_round"],
            "best_val_score": state["best_score"],
            "monitor": self.monitor,
            "validation": self.history,
            "test": test,
            "train_seconds": round(time.time() - started, 1),
        }
        self._finish(results, test, f"Test metrics (%) of the best round ({state['best_round']})")
        return results

    def _restore(self, model: LightningModule, datamodule: Any, ckpt_path: str | Path | None) -> list[Client]:
        clients, server = self._clients(model, datamodule)
        path = ckpt_path or self.run_dir / "federation" / "best.pt"
        self._load(clients, server, path)
        return clients

    def _evaluate_saved(
        self, stage: Literal["validate", "test"], model: LightningModule, datamodule: Any, ckpt_path: str | Path | None
    ) -> dict[str, Any]:
        clients = self._restore(model, datamodule, ckpt_path)
        table = self._evaluate_all(clients, stage)
        self._log(table, "val" if stage == "validate" else "test", None)
        key, title = ("validation", "Validation") if stage == "validate" else ("test", "Test")
        results = {"config": self.run_config, "clients": [c.name for c in clients], key: table}
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
        write_json_atomic(self.run_dir / name, results)
        for logger in self.loggers:
            logger.save()
            logger.finalize("success")
        print(f"\n{title}\n\n{markdown_table(table)}\n\nresults: {self.run_dir / name}", flush=True)
