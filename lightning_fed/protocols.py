"""The two contracts of the runtime: what a client model declares, and what a scenario's data provides.

The runtime (federation, server, strategies, the round callback) calls nothing else on models and datamodules:

- a model is a :class:`FederatedModule` (``lightning_fed.models.FederatedTask`` implements it for the zoo);
- the ``data`` of a federation is a :class:`FederatedScenario` (``lightning_fed.datamodules.ScenarioDataModule``
  implements it for the zoo), and :func:`client_datamodules_of` is the one place where the runtime prepares and
  sets up the clients' datamodules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from lightning import LightningDataModule
from torch import Tensor

from lightning_fed.errors import ConfigurationError

#: What a client downloads: tensors keyed by their origin (a client's name, or an aggregate's name, see
#: :mod:`lightning_fed.strategies.base`).
Payload = Mapping[str, Mapping[str, Tensor]]

#: The kinds of download a strategy sends (``Strategy.sends``) and a model accepts (``receives``):
#:
#: - ``"nothing"``: no download (local training only);
#: - ``"peer_states"``: every other client's latest upload, keyed by that client's name;
#: - ``"average"``: one aggregate of all uploads, keyed ``GLOBAL``;
#: - ``"personalized"``: an aggregate (``GLOBAL``) and this client's own personalized mix (``PERSONAL``).
PayloadKind = Literal["nothing", "peer_states", "average", "personalized"]


@runtime_checkable
class FederatedModule(Protocol):
    """A LightningModule that declares what it shares and what it can receive. The runtime calls nothing else.

    - ``receives``: the payload kinds (:data:`PayloadKind`) ``load_shared_state`` understands; a federation
      refuses at start a strategy that sends anything else.
    - ``shared_state()``: copies of the tensors this client uploads. Nothing else leaves the client.
    - ``load_shared_state(payload)``: take what the server sends, read by origin name.
    - ``build(datamodule)``: create the parameters for the client's data (already set up) before anything is
      loaded.

    Optional declarations the runtime reads when present: ``monitor`` and ``monitor_mode`` (the validation
    metric a federation monitors by default), ``validation_metrics`` (the names it may monitor) and
    ``metric_is_fraction(name)`` (how results print it).
    """

    @property
    def receives(self) -> frozenset[str]: ...  # noqa: D102

    def shared_state(self) -> dict[str, Tensor]: ...  # noqa: D102

    def load_shared_state(self, payload: Payload) -> None: ...  # noqa: D102

    def build(self, datamodule: Any) -> None: ...  # noqa: D102


@runtime_checkable
class FederatedScenario(Protocol):
    """The data of a federation: one LightningDataModule per client.

    ``client_datamodules()`` returns them keyed by client name, in a fixed order (the order of the clients in
    every round and in results), distinct, and the same objects on every call. ``prepare_data()`` checks or
    fetches what is on disk and fails at once, with the expected layout, when data is missing.
    """

    def prepare_data(self) -> None: ...  # noqa: D102

    def client_datamodules(self) -> Mapping[str, LightningDataModule]: ...  # noqa: D102


def require_federated(module: Any) -> FederatedModule:
    """Return ``module`` if it declares what it shares, else raise a clear TypeError."""
    if not isinstance(module, FederatedModule):
        raise TypeError(
            f"{type(module).__name__} cannot join a federation: it must define receives, shared_state(), "
            "load_shared_state(payload) and build(datamodule) (see lightning_fed.protocols)"
        )
    return module


def client_datamodules_of(scenario: Any) -> dict[str, LightningDataModule]:
    """Prepare ``scenario`` and set up every client's datamodule for ``fit``; the clients in the scenario's order.

    Raises:
        ConfigurationError: ``scenario`` is not a :class:`FederatedScenario`.
    """
    if not isinstance(scenario, FederatedScenario):
        raise ConfigurationError(
            f"data: {type(scenario).__name__} is not a federated scenario (it has no client_datamodules()); "
            "use one of the zoo's scenarios (python main.py --help lists them)"
        )
    scenario.prepare_data()
    clients = dict(scenario.client_datamodules())
    for datamodule in clients.values():
        datamodule.setup("fit")
    return clients
