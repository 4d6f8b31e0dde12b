"""A client's view of the federation's loggers: metric names prefixed with the client, one step axis."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Callable
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only


class ClientLogger(Logger):
    """Forwards ``train/loss`` as ``<client>/train/loss`` to the federation's loggers.

    Every round builds a new Trainer whose ``global_step`` starts at 0; the step sent on is the federation's
    step (optimizer steps of all clients so far) plus the Trainer's, so curves never run backwards.

    Args:
        loggers: the federation's loggers (one W&B run and one CSV file for the whole federation).
        client: the client's name.
        federation_step: returns the federation's step before this Trainer started.
    """

    def __init__(self, loggers: list[Logger], client: str, federation_step: Callable[[], int]) -> None:
        super().__init__()
        self._loggers = loggers
        self.client = client
        self._federation_step = federation_step

    @property
    def name(self) -> str:  # noqa: D102
        return self.client

    @property
    def version(self) -> str:  # noqa: D102
        return ""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: D102
        prefixed = {f"{self.client}/{k}": v for k, v in metrics.items() if k != "epoch"}
        for logger in self._loggers:
            logger.log_metrics(prefixed, step=self._federation_step() + (step or 0))

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """The federation logs the run's configuration once; a client adds nothing."""

    @rank_zero_only
    def save(self) -> None:  # noqa: D102
        for logger in self._loggers:
            logger.save()
