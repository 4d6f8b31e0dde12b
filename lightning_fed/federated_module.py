"""What a LightningModule declares to take part in a federation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from torch import Tensor

#: What a client downloads: tensors keyed by their origin (a client's name, or an aggregate's name).
Payload = Mapping[str, Mapping[str, Tensor]]

#: The kinds of download a strategy sends (``Strategy.sends``) and a model accepts (``receives``):
#:
#: - ``"nothing"``: no download (local training only);
#: - ``"peer_states"``: every other client's latest upload, keyed by that client's name;
#: - ``"average"``: one aggregate of all uploads, keyed ``"global"``;
#: - ``"personalized"``: an aggregate (``"global"``) and this client's own personalized mix (``"personal"``).
PayloadKind = Literal["nothing", "peer_states", "average", "personalized"]


@runtime_checkable
class FederatedModule(Protocol):
    """A LightningModule that declares what it shares and what it can receive. The runtime calls nothing else.

    - ``receives``: the payload kinds (:data:`PayloadKind`) ``load_shared_state`` understands; a federation
      refuses at start a strategy that sends anything else.
    - ``shared_state()``: copies of the tensors this client uploads. Nothing else leaves the client.
    - ``load_shared_state(payload)``: take what the server sends (the strategy decides its keys).
    - ``build(datamodule)``: create the parameters for the client's data before anything is loaded.
    """

    @property
    def receives(self) -> frozenset[str]: ...  # noqa: D102

    def shared_state(self) -> dict[str, Tensor]: ...  # noqa: D102

    def load_shared_state(self, payload: Payload) -> None: ...  # noqa: D102

    def build(self, datamodule: Any) -> None: ...  # noqa: D102


def require_federated(module: Any) -> FederatedModule:
    """Return ``module`` if it declares what it shares, else raise a clear TypeError."""
    if not isinstance(module, FederatedModule):
        raise TypeError(
            f"{type(module).__name__} cannot join a federation: it must define receives, shared_state(), "
            "load_shared_state(payload) and build(datamodule) (see lightning_fed.federated_module)"
        )
    return module
