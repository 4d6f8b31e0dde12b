"""Where a federation's clients run: the round loop calls a pool, never a client directly."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning import LightningModule
from lightning.pytorch.loggers import Logger

from lightning_fed.client_logger import ClientLogger
from lightning_fed.client_runtime import ClientRuntime, Stage
from lightning_fed.errors import ConfigurationError
from lightning_fed.server import Server
from lightning_fed.strategies.base import State


class ClientPool(ABC):
    """The clients of a federation as the server's round loop sees them.

    :class:`InProcessPool` holds every :class:`~lightning_fed.client_runtime.ClientRuntime` in this process;
    ``lightning_fed.flower.FlowerPool`` sends the same requests to Flower ClientApps on other machines.

    Attributes:
        names: the clients, in the scenario's order.
    """

    names: list[str]

    @property
    @abstractmethod
    def declarations(self) -> LightningModule:
        """A module whose declarations (``monitor``, ``validation_metrics``, ...) the loop reads."""

    @abstractmethod
    def initial_state(self) -> State:
        """The shared state of the first client, freshly built (what a strategy may seed its store with)."""

    @abstractmethod
    def train(self, server: Server, participants: list[str], round_idx: int, epochs: int) -> None:
        """Train ``participants`` for one round; their uploads reach ``server``'s inbox."""

    @abstractmethod
    def evaluate(self, server: Server, stage: Stage) -> dict[str, dict[str, float]]:
        """Validate or test every client with ``server``'s current downloads; metrics keyed by client."""

    @abstractmethod
    def client_states(self) -> dict[str, Any] | None:
        """What a checkpoint holds of the clients (None: every client keeps its own state, on its own machine)."""

    @abstractmethod
    def load_client_states(self, states: dict[str, Any] | None, path: Path) -> None:
        """Restore :meth:`client_states` read from checkpoint ``path``."""

    def begin(self, run_id: str, completed_round: int) -> None:  # noqa: B027 - optional hook
        """The loop starts (or resumes after ``completed_round``) federation run ``run_id``."""

    def keep_best(self, round_idx: int) -> None:  # noqa: B027 - optional hook
        """The round just validated is the best so far (clients that keep their own state copy it)."""

    def restore_best(self, round_idx: int) -> None:  # noqa: B027 - optional hook
        """Before the test: clients that keep their own state return to the best round's."""


class InProcessPool(ClientPool):
    """Every client in this process, trained one after another.

    Args:
        clients: the clients' runtimes, in the scenario's order.
        loggers: the federation's loggers (each client logs its training under its name).
        step: the federation's optimizer steps so far (the x axis of the clients' logged losses).
        add_steps: adds a client's steps to the federation's count.
    """

    def __init__(
        self,
        clients: list[ClientRuntime],
        loggers: Callable[[], list[Logger]],
        step: Callable[[], int],
        add_steps: Callable[[int], None],
    ) -> None:
        self.clients = clients
        self.names = [c.name for c in clients]
        self._loggers = loggers
        self._step = step
        self._add_steps = add_steps

    @property
    def declarations(self) -> LightningModule:  # noqa: D102
        return self.clients[0].module

    def initial_state(self) -> State:  # noqa: D102
        return self.clients[0].module.shared_state()

    def train(self, server: Server, participants: list[str], round_idx: int, epochs: int) -> None:  # noqa: D102
        for client in self.clients:
            if client.name in participants:
                steps, _ = client.train(round_idx, epochs, ClientLogger(self._loggers(), client.name, self._step))
                self._add_steps(steps)

    def evaluate(self, server: Server, stage: Stage) -> dict[str, dict[str, float]]:  # noqa: D102
        return {c.name: c.evaluate(stage) for c in self.clients}

    def client_states(self) -> dict[str, Any]:  # noqa: D102
        return {c.name: c.state_dict() for c in self.clients}

    def load_client_states(self, states: dict[str, Any] | None, path: Path) -> None:  # noqa: D102
        if states is None:
            raise ConfigurationError(
                f"ckpt_path: {path} is a federation run on Flower: its clients' states are on their own machines "
                "(its results.json holds the test of its best round); resume it with federation.runtime: flower"
            )
        saved, names = set(states), set(self.names)
        if saved != names:
            raise ConfigurationError(
                f"ckpt_path: {path} is a federation of the clients {sorted(saved)}, but data gives {sorted(names)}"
            )
        for client in self.clients:
            try:
                client.load_state_dict(states[client.name])
            except RuntimeError as err:
                raise ConfigurationError(mismatch_message(path, client, states[client.name]["module"], err)) from None


def mismatch_message(path: Path, client: ClientRuntime, saved: dict[str, Any], err: RuntimeError) -> str:
    """One line saying how a checkpoint's weights differ from ``client``'s module."""
    own = client.module.state_dict()
    shapes = [k for k in saved if k in own and tuple(saved[k].shape) != tuple(own[k].shape)]
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if shapes:
        k = shapes[0]
        first = f"{k} is {tuple(saved[k].shape)} in the file and {tuple(own[k].shape)} in the model"
    elif missing:
        first = f"the file lacks {missing[0]}"
    elif unexpected:
        first = f"the model has no {unexpected[0]}"
    else:
        first = str(err).strip().splitlines()[0]
    count = len(shapes) + len(missing) + len(unexpected)
    return (
        f"ckpt_path: {path} does not fit the configured model {type(client.module).__name__} at client "
        f"{client.name}: {first} ({count} tensor(s) differ); test it with the model configuration it was "
        "trained with"
    )
