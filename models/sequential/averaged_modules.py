"""The FedAvg baselines' federation contract: named modules averaged by the server, everything else local."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from lightning_fed.models.sequential.task import SequentialRecommendationTask
from lightning_fed.strategies.base import GLOBAL


class AveragedModulesTask(SequentialRecommendationTask):
    """A sequential model whose :meth:`shared_modules` are averaged by FedAvg (FedDCSR's baselines).

    It uploads exactly those modules' weights, keyed ``<name>.<parameter>``, and loads the server's average
    (origin ``GLOBAL``) back into them. Item embeddings, positions, input norms and heads are never among them.
    """

    def shared_modules(self) -> dict[str, nn.Module]:
        """The modules the server averages, by name (the spec's list for the method)."""
        raise NotImplementedError

    @property
    def receives(self) -> frozenset[str]:
        """One average of the shared modules (FedAvg), or nothing (trained locally)."""
        return frozenset({"average", "nothing"})

    def shared_state(self) -> dict[str, Tensor]:
        """The shared modules' weights, detached copies on the CPU."""
        return {
            f"{name}.{key}": value.detach().cpu().clone()
            for name, module in self.shared_modules().items()
            for key, value in module.state_dict().items()
        }

    def load_shared_state(self, payload: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Load the server's average (origin ``GLOBAL``) into the shared modules; an empty payload changes nothing."""
        modules = self.shared_modules()
        unknown = sorted(set(payload) - {GLOBAL})
        if unknown:
            raise ValueError(
                f"{type(self).__name__} expects one averaged {' and '.join(modules)} (strategy FedAvg), "
                f"got {sorted(payload)}"
            )
        if GLOBAL not in payload:
            return
        state = payload[GLOBAL]
        for name, module in modules.items():
            prefix = f"{name}."
            module.load_state_dict({k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)})
