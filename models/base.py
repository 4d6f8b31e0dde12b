"""The base of every model in the zoo: a LightningModule that can be a client of a federation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

from lightning import LightningModule
from torch import Tensor

from lightning_fed.client_loading import LoadableClient
from lightning_fed.protocols import Payload


class FederatedTask(LoadableClient, LightningModule, ABC):
    """A client model: built once from its client's datamodule, declaring what it shares and what it monitors.

    Implements :class:`lightning_fed.protocols.FederatedModule` with template hooks (in the style of torchgeo's
    ``BaseTask``): a subclass builds its networks in :meth:`configure_models` from the client's datamodule
    (which the runtime, or Lightning's Trainer, has set up), sets up :meth:`configure_losses` and
    :meth:`configure_metrics`, and declares :attr:`receives`, :meth:`shared_state` and
    :meth:`load_shared_state`. What a federation monitors is declared on the class (:attr:`monitor`,
    :attr:`monitor_mode`).

    One configuration serves every client, so networks are built lazily: :meth:`build` runs in :meth:`setup`
    (from the Trainer's datamodule), or explicitly before loading saved weights.
    """

    #: The validation metric a federation monitors by default (early stopping, best round).
    monitor: ClassVar[str]
    #: Whether a higher (``"max"``) or lower value of :attr:`monitor` is better.
    monitor_mode: ClassVar[Literal["max", "min"]] = "max"
    #: Arguments that may differ from the trained federation's when it is tested or validated again.
    reconfigurable_arguments: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        #: The client this model was built for (its datamodule's ``client``).
        self.client: str | None = None
        self._built = False
        self.configure_losses()

    # Template hooks -----------------------------------------------------------------------------------------
    @abstractmethod
    def configure_models(self, datamodule: Any) -> None:
        """Build the networks for the client served by ``datamodule`` (already set up)."""

    def configure_losses(self) -> None:
        """Set up loss modules (none by default: the zoo's losses are functions)."""

    def configure_metrics(self) -> None:
        """Set up the validation and test metrics, after :meth:`configure_models` (none by default)."""

    @property
    @abstractmethod
    def validation_metrics(self) -> tuple[str, ...]:
        """The names this model logs under ``val/`` (what a federation may monitor)."""

    def metric_is_fraction(self, name: str) -> bool:
        """Whether metric ``name`` is a fraction (results print it in %); all are, unless a subclass says not."""
        return True

    # Federation declarations --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def receives(self) -> frozenset[str]:
        """The payload kinds (:data:`lightning_fed.protocols.PayloadKind`) :meth:`load_shared_state` takes."""

    @abstractmethod
    def shared_state(self) -> dict[str, Tensor]:
        """The tensors this client uploads (copies); nothing else ever leaves it."""

    @abstractmethod
    def load_shared_state(self, payload: Payload) -> None:
        """Load what the server sent, read by origin (a client's name, or ``GLOBAL`` / ``PERSONAL``)."""

    # Lightning ----------------------------------------------------------------------------------------------
    def build(self, datamodule: Any) -> None:
        """Build the networks and metrics from ``datamodule`` (set up) once; later calls do nothing."""
        if self._built:
            return
        self.client = datamodule.client
        self.configure_models(datamodule)
        self.configure_metrics()
        self._built = True

    def setup(self, stage: str) -> None:  # noqa: D102
        if not self._built:
            datamodule = self.trainer.datamodule if self._trainer is not None else None
            if datamodule is None:
                raise ValueError(f"{type(self).__name__} builds itself from a datamodule: pass datamodule=...")
            self.build(datamodule)
