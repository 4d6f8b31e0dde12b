"""What a LightningModule declares to take part in a federation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

#: What a client downloads: tensors keyed by their origin (a client's name, or an aggregate's name).
Payload = Mapping[str, Mapping[str, Tensor]]


@runtime_checkable
class FederatedModule(Protocol):
    """A LightningModule that declares what it shares. The runtime calls nothing else on it.

    - ``shared_state()``: copies of the tensors this client uploads. Nothing else leaves the client.
    - ``load_shared_state(payload)``: take what the server sends (the strategy decides its keys).
    - ``build(datamodule)``: create the parameters for the client's data before anything is loaded.
    """

    def shared_state(self) -> dict[str, Tensor]: ...  # noqa: D102

    def load_shared_state(self, payload: Payload) -> None: ...  # noqa: D102

    def build(self, datamodule: Any) -> None: ...  # noqa: D102


def require_federated(module: Any) -> FederatedModule:
    """Return ``module`` if it declares what it shares, else raise a clear TypeError."""
    if not isinstance(module, FederatedModule):
        raise TypeError(
            f"{type(module).__name__} cannot join a federation: it must define shared_state(), "
            "load_shared_state(payload) and build(datamodule) (see lightning_fed.federated_module)"
        )
    return module
