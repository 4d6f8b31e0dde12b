"""Server-side strategies: how uploads become the parameter store, and what each client downloads."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from lightning_fed.protocols import PayloadKind

State = dict[str, Tensor]

#: Origins of a payload (its keys). A key is a client's name (that client's own upload, as ExpertExchange sends
#: them), or one of these two aggregates; models read them by name, never by order or count.
GLOBAL = "global"  # the aggregate of all clients (FedAvg's average; PersonalizedAggregation's averaged groups)
PERSONAL = "personal"  # this client's own personalized mix (PersonalizedAggregation); it overrides GLOBAL


@dataclass(frozen=True)
class Upload:
    """One client's upload in a round: its shared tensors and its number of training examples."""

    state: State
    num_examples: int


class Strategy(ABC):
    """Turns a round's uploads into the server's parameter store and serves each client's download.

    Each strategy documents the origins it sends (client names, :data:`GLOBAL`, :data:`PERSONAL`).

    Attributes:
        sends: the kind of download :meth:`payload` gives (see :data:`~lightning_fed.protocols.PayloadKind`);
            a federation only pairs it with models that declare they receive it.
    """

    sends: ClassVar[PayloadKind]

    def initialize(self, store: dict[str, State], initial: State) -> None:
        """Seed the store before round 1 with one client's initial shared state (default: nothing)."""
        return None

    @abstractmethod
    def aggregate(self, store: dict[str, State], uploads: Mapping[str, Upload]) -> None:
        """Update ``store`` in place from this round's ``uploads`` (keyed by client)."""

    def needs_uploads(self) -> bool:
        """Whether the next round's uploads would be used (False: clients keep their shared state to themselves)."""
        return True

    def state_dict(self) -> dict:
        """The strategy's own state, saved with the federation (default: none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        return None

    @abstractmethod
    def payload(self, client: str, store: Mapping[str, State]) -> dict[str, State]:
        """What ``client`` downloads, keyed by origin (see :data:`GLOBAL`, :data:`PERSONAL`)."""
