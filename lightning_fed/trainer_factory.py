"""Fresh Lightning Trainers for the clients, built from one Trainer configuration."""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning import Callback, Trainer
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.strategies import ParallelStrategy

from lightning_fed.callbacks.federated_progress_bar import FederatedProgressBar
from lightning_fed.errors import ConfigurationError

#: Trainer arguments the federation decides itself, and the setting a user changes instead. A value other than
#: the Trainer's default is refused with that advice rather than dropped.
MANAGED_ARGS = {
    "max_epochs": "federation.local_epochs (local epochs per round) and federation.rounds",
    "min_epochs": "federation.local_epochs",
    "max_steps": "federation.local_epochs (a round trains whole epochs)",
    "min_steps": "federation.local_epochs (a round trains whole epochs)",
    "max_time": "federation.rounds",
    "enable_checkpointing": "the federation's own checkpoints (federation/last.pt and best.pt, always written)",
    "num_sanity_val_steps": "nothing: every round is validated after its aggregation",
    "check_val_every_n_epoch": "nothing: every round is validated after its aggregation",
    "val_check_interval": "nothing: every round is validated after its aggregation",
    "reload_dataloaders_every_n_epochs": "nothing: every round builds its dataloaders anew",
}


def _trainer_default(name: str) -> Any:
    return inspect.signature(Trainer.__init__).parameters[name].default


#: Strategies that keep one process on one device (any other starts processes of its own, one per device).
SINGLE_DEVICE_STRATEGIES = ("auto", "single_device", "single_tpu", "single_xla")

_ONE_DEVICE = (
    "a client's Trainer runs on one device{give} (the federation trains its clients one after another in one "
    "process; to spread them over devices or machines, run them as Flower SuperNodes: federation.runtime: flower)"
)


def _one_device(devices: Any) -> bool:
    """Whether ``devices`` names one device: 1, "1", one index ([0]) or Lightning's one-index string ("0,")."""
    if isinstance(devices, bool):
        return False
    if isinstance(devices, (list, tuple)):
        return len(devices) == 1
    if isinstance(devices, str):
        text = devices.strip()
        return text == "1" or (text.endswith(",") and text[:-1].strip().isdigit())
    return devices == 1


def check_trainer_config(config: dict[str, Any]) -> None:
    """Refuse Trainer arguments the federation manages, naming the setting to use instead.

    A client's Trainer runs on one device: ``devices`` other than one, ``num_nodes`` above 1 and multi-process
    strategies (DDP, FSDP, DeepSpeed, XLA) are refused (``devices: auto`` means one device here, see
    :class:`TrainerFactory`).
    """
    for name, instead in MANAGED_ARGS.items():
        if name in config and config[name] != _trainer_default(name):
            raise ConfigurationError(
                f"trainer.{name}: {config[name]!r} is managed by the federation and cannot be set; use {instead}"
            )
    devices = config.get("devices", "auto")
    if devices not in ("auto", None) and not _one_device(devices):
        give = ": give 1 or one index such as [0]"
        raise ConfigurationError(f"trainer.devices: {devices!r}: {_ONE_DEVICE.format(give=give)}")
    if config.get("num_nodes", 1) != 1:
        raise ConfigurationError(f"trainer.num_nodes: {config['num_nodes']!r}: {_ONE_DEVICE.format(give='')}")
    strategy = config.get("strategy", "auto")
    if isinstance(strategy, str):
        several, name = strategy not in SINGLE_DEVICE_STRATEGIES, strategy
    else:
        several, name = isinstance(strategy, ParallelStrategy), type(strategy).__name__
    if several:
        raise ConfigurationError(f"trainer.strategy: {name!r} runs several processes: {_ONE_DEVICE.format(give='')}")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-Trainer info lines (accelerator, "max_epochs reached"), repeated every round."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class TrainerFactory:
    """Builds each client's Trainers from the configured Trainer arguments.

    Every client gets its own deep copy of the configured callbacks, made once and reused in all of its
    rounds (one shared Callback object across Trainers would mix the clients' state). The configured loggers
    belong to the federation; :meth:`loggers` returns them with a CSVLogger always present.

    Each Trainer runs on one device: ``devices: auto`` (Lightning's default, which takes every GPU there is and
    DDP across them) becomes 1, and settings for several devices or processes are refused
    (:func:`check_trainer_config`).

    ``fast_dev_run`` (Lightning's smoke test) is honoured the federation's way: one round in which every Trainer
    runs ``n`` batches (1 for ``True``) of training, validation and test, and nothing is written (no checkpoint,
    no results, no logs).

    Args:
        config: ``Trainer`` keyword arguments (as parsed by LightningCLI); ``callbacks`` are instances.

    Raises:
        ConfigurationError: a Trainer argument the federation manages (:data:`MANAGED_ARGS`) is set, or the
            configuration asks for several devices, nodes or processes.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = dict(config or {})
        check_trainer_config(config)
        callbacks = config.pop("callbacks", None) or []
        self.callbacks: list[Callback] = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        self.logger_config = config.pop("logger", True)
        fast_dev_run = config.pop("fast_dev_run", False)
        if isinstance(fast_dev_run, bool):
            fast_dev_run = int(fast_dev_run)
        if not isinstance(fast_dev_run, int) or fast_dev_run < 0:
            raise ConfigurationError(
                f"trainer.fast_dev_run must be a boolean or a number of batches, got {fast_dev_run}"
            )
        self.fast_dev_run = fast_dev_run
        for key in (*MANAGED_ARGS, "logger"):
            config.pop(key, None)
        if config.get("devices", "auto") in ("auto", None):
            config["devices"] = 1  # Lightning's "auto" takes every GPU there is, and DDP with them
        self.config = config
        self.run_dir = Path(config.get("default_root_dir") or Path.cwd())
        self._client_callbacks: dict[str, list[Callback]] = {}
        self._loggers: list[Logger] | None = None

    def loggers(self) -> list[Logger]:
        """The federation's loggers: the configured ones, and a CSVLogger in the run directory if none is."""
        if self._loggers is None:
            configured = self.logger_config
            if configured in (True, None, False):
                configured = []
            loggers = list(configured) if isinstance(configured, list) else [configured]
            if not any(isinstance(lg, CSVLogger) for lg in loggers):
                # versioned (csv/version_N): a later `test` or a resumed `fit` never overwrites earlier logs
                loggers.append(CSVLogger(save_dir=str(self.run_dir), name="csv"))
            self._loggers = loggers
        return self._loggers

    def _callbacks_for(self, client: str) -> list[Callback]:
        if client not in self._client_callbacks:
            self._client_callbacks[client] = [copy.deepcopy(cb) for cb in self.callbacks]
        return self._client_callbacks[client]

    def check(self) -> None:
        """Build one throwaway Trainer from the configuration, so that a setting this machine cannot run fails now.

        The in-process runtime calls this before any data is read: ``accelerator: gpu`` without a GPU, say, is
        refused here in one line instead of when the first client starts training. (Clients on other machines
        build their Trainers there, and a setting their machine refuses ends the run naming the client.)

        Raises:
            ConfigurationError: Lightning refused the Trainer arguments (its reason, with the device settings).
        """
        quiet = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
        self._trainer({**self.config, **quiet, "logger": False, "callbacks": []})

    def _trainer(self, kwargs: dict[str, Any]) -> Trainer:
        """``Trainer(**kwargs)``; Lightning's refusal of an argument becomes a one-line :class:`ConfigurationError`."""
        try:
            with quiet_lightning():
                return Trainer(**kwargs)
        except (MisconfigurationException, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            settings = ", ".join(
                f"{name}={self.config[name]!r}"
                for name in ("accelerator", "devices", "strategy", "precision")
                if name in self.config
            )
            raise ConfigurationError(f"trainer ({settings}): {reason}" if settings else f"trainer: {reason}") from None

    def _build(self, client: str, extra: list[Callback], progress_bar: bool, **overrides: Any) -> Trainer:
        callbacks = [*self._callbacks_for(client), *extra]
        show_bar = progress_bar and self.config.get("enable_progress_bar", True) is not False
        if not show_bar:
            callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
        elif not any(isinstance(cb, ProgressBar) for cb in callbacks):
            callbacks.append(FederatedProgressBar())
        kwargs = {
            **self.config,
            "default_root_dir": str(self.run_dir / "clients" / client),
            "enable_checkpointing": False,
            # One summary per client and round would flood the log: shown only when asked for explicitly.
            "enable_model_summary": self.config.get("enable_model_summary") is True,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": show_bar,
            **overrides,
            "callbacks": callbacks,
        }
        return self._trainer(kwargs)

    def fit_trainer(self, client: str, sync: Callback, local_epochs: int, logger: Logger | bool) -> Trainer:
        """A Trainer for one round of local training (no validation inside it)."""
        limits = {"max_epochs": local_epochs}
        if self.fast_dev_run:
            limits = {"max_epochs": 1, "limit_train_batches": self.fast_dev_run}
        return self._build(client, [sync], progress_bar=True, limit_val_batches=0, logger=logger, **limits)

    def eval_trainer(self, client: str, sync: Callback) -> Trainer:
        """A Trainer for validation/test (metrics are logged by the federation, per round)."""
        limits = {"limit_val_batches": self.fast_dev_run, "limit_test_batches": self.fast_dev_run}
        return self._build(client, [sync], progress_bar=False, logger=False, **(limits if self.fast_dev_run else {}))
