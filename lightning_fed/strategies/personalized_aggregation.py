"""PF-MSMTrec's server: conflict-coordinated averaging, and personalized aggregation of experts and towers."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase

import torch
from torch import Tensor

from lightning_fed.errors import ConfigurationError
from lightning_fed.strategies.base import GLOBAL, PERSONAL, State, Strategy, Upload
from lightning_fed.strategies.conflict_averse import conflict_averse_direction


def group_of(key: str) -> str:
    """The group of an uploaded key ``"<group>/<name>"``."""
    return key.split("/", 1)[0]


def personalized_weights(vectors: Tensor, sigma: float | None = None) -> Tensor:
    """``alpha[s, j] = softmax_j(-||theta_s - theta_j||^2 / sigma)`` (rows sum to 1; FedAMP-style attention).

    ``sigma`` defaults to the median squared distance between distinct clients (1 if all are equal), which
    makes the weights independent of the parameters' scale.
    """
    distances = torch.cdist(vectors.double(), vectors.double()).pow(2)
    if sigma is None:
        off_diagonal = distances[~torch.eye(len(vectors), dtype=torch.bool)]
        median = off_diagonal.median() if len(off_diagonal) else torch.tensor(0.0, dtype=torch.float64)
        sigma = float(median) if median > 0 else 1.0
    return torch.softmax(-distances / sigma, dim=1)


class PersonalizedAggregation(Strategy):
    """The server side of PF-MSMTrec, each component behind a switch and its group policy in arguments.

    Uploads are ``"<group>/<name>"`` tensors (the model declares the groups, see
    :mod:`lightning_fed.models.multitask.share_groups`). A group goes by the policy whose patterns (``fnmatch``)
    match its name, ``local_groups`` first, then in this order:

    - ``coordinated_groups`` (default ``global``, ``task*``, ``gate*``): the new value is the previous one plus
      the conflict-averse aggregate of the clients' updates (``conflict_c``; 0 = plain averaging);
    - ``averaged_groups`` (default ``bn``, shared only without FedBN): plain averaging;
    - ``expert_groups`` (default ``scenario`` with the template, ``expert`` without): client s receives
      ``sum_j alpha[s, j] theta_j`` with ``alpha`` from :func:`personalized_weights` on those parameters
      (``personalized_experts``; off = plain averaging);
    - ``tower_groups`` (default ``tower*``): the same, with the experts' ``alpha`` (``personalized_towers``; off =
      plain averaging);
    - ``local_groups`` (default none): left local, neither aggregated nor sent back.

    A group no policy names is an error. Every client starts from the same initial state (the first client's),
    as in FedAvg. The last round's ``alpha`` is kept in :attr:`alpha` (and in checkpoints).

    Sends: ``GLOBAL`` (the averaged groups, and the mean of the personalized ones for a client not sampled yet)
    and ``PERSONAL`` (this client's personalized experts and towers, once it has uploaded).

    Args:
        conflict_c: c of conflict coordination, in [0, 1).
        personalized_experts: personalized aggregation of the expert groups.
        personalized_towers: personalized aggregation of the tower groups.
        sigma: temperature of the personalized weights (None: the median heuristic).
        coordinated_groups: group patterns averaged with conflict coordination.
        averaged_groups: group patterns averaged plainly.
        expert_groups: group patterns aggregated per client with the personalized weights (which they define).
        tower_groups: group patterns aggregated per client with the expert groups' weights.
        local_groups: group patterns the server ignores (each client keeps its own).
    """

    sends = "personalized"

    def __init__(
        self,
        conflict_c: float = 0.4,
        personalized_experts: bool = True,
        personalized_towers: bool = True,
        sigma: float | None = None,
        coordinated_groups: tuple[str, ...] = ("global", "task*", "gate*"),
        averaged_groups: tuple[str, ...] = ("bn",),
        expert_groups: tuple[str, ...] = ("scenario", "expert"),
        tower_groups: tuple[str, ...] = ("tower*",),
        local_groups: tuple[str, ...] = (),
    ) -> None:
        if not 0.0 <= conflict_c < 1.0:
            raise ConfigurationError(f"federation.strategy.init_args.conflict_c must be in [0, 1), got {conflict_c}")
        self.conflict_c = conflict_c
        self.personalized_experts = personalized_experts
        self.personalized_towers = personalized_towers
        self.sigma = sigma
        self.policies = {  # local_groups first: leaving a group local overrides the defaults below
            "local": tuple(local_groups),
            "coordinated": tuple(coordinated_groups),
            "averaged": tuple(averaged_groups),
            "experts": tuple(expert_groups),
            "towers": tuple(tower_groups),
        }
        self.alpha: dict[str, dict[str, float]] = {}

    def policy_of(self, group: str) -> str:
        """``local``, ``coordinated``, ``averaged``, ``experts`` or ``towers``: the first policy naming ``group``."""
        for policy, patterns in self.policies.items():
            if any(fnmatchcase(group, pattern) for pattern in patterns):
                return policy
        raise ValueError(
            f"PersonalizedAggregation: share group {group!r} is in no policy (coordinated_groups, averaged_groups, "
            "expert_groups, tower_groups, local_groups; see lightning_fed.models.multitask.share_groups)"
        )

    def initialize(self, store: dict[str, State], initial: State) -> None:  # noqa: D102
        store[GLOBAL] = {k: v.clone() for k, v in initial.items() if self.policy_of(group_of(k)) != "local"}

    def aggregate(self, store: dict[str, State], uploads: Mapping[str, Upload]) -> None:  # noqa: D102
        if not uploads:
            return
        clients = list(uploads)
        keys = list(uploads[clients[0]].state)
        for client in clients[1:]:
            if list(uploads[client].state) != keys:
                raise ValueError(f"PersonalizedAggregation: {client} uploads other tensors than {clients[0]}")
        by_kind: dict[str, list[str]] = {policy: [] for policy in self.policies}
        for key in keys:
            by_kind[self.policy_of(group_of(key))].append(key)
        previous = store.get(GLOBAL, {})
        new_global: State = dict(previous)

        groups: dict[str, tuple[list[str], float]] = {}
        for policy, c in (("coordinated", self.conflict_c), ("averaged", 0.0)):
            for key in by_kind[policy]:
                groups.setdefault(group_of(key), ([], c))[0].append(key)
        for group_keys, c in groups.values():
            new_global.update(self._coordinated_average(uploads, group_keys, previous, c))

        uniform = torch.full((len(clients), len(clients)), 1.0 / len(clients), dtype=torch.float64)
        alpha = uniform
        if by_kind["experts"] and (self.personalized_experts or self.personalized_towers):
            alpha = personalized_weights(self._flatten(uploads, by_kind["experts"]), self.sigma)
        self.alpha = {s: {j: float(alpha[a, b]) for b, j in enumerate(clients)} for a, s in enumerate(clients)}
        for kind, enabled in (("experts", self.personalized_experts), ("towers", self.personalized_towers)):
            weights = alpha if enabled else uniform
            for key in by_kind[kind]:
                stacked = torch.stack([uploads[c].state[key].double() for c in clients])
                for index, client in enumerate(clients):
                    mixed = torch.tensordot(weights[index], stacked, dims=1).to(uploads[client].state[key].dtype)
                    store.setdefault(client, {})[key] = mixed
                new_global[key] = stacked.mean(0).to(uploads[clients[0]].state[key].dtype)  # for clients not sampled
        store[GLOBAL] = new_global

    def _coordinated_average(self, uploads: Mapping[str, Upload], keys: list[str], previous: State, c: float) -> State:
        floating = [k for k in keys if torch.is_floating_point(uploads[next(iter(uploads))].state[k])]
        result: State = {k: next(iter(uploads.values())).state[k].clone() for k in keys if k not in floating}
        if not floating:
            return result
        thetas = self._flatten(uploads, floating)
        base = torch.cat([previous[k].double().flatten() if k in previous else torch.zeros(0) for k in floating])
        if base.numel() != thetas.shape[1]:
            base = thetas.mean(0)  # no previous value: the update is relative to the mean (d = 0 shift)
        direction = conflict_averse_direction(thetas - base, c)
        merged = base + direction
        offset = 0
        for key in floating:
            reference = uploads[next(iter(uploads))].state[key]
            size = reference.numel()
            result[key] = merged[offset : offset + size].view_as(reference).to(reference.dtype)
            offset += size
        return result

    @staticmethod
    def _flatten(uploads: Mapping[str, Upload], keys: list[str]) -> Tensor:
        return torch.stack([torch.cat([u.state[k].double().flatten() for k in keys]) for u in uploads.values()])

    def payload(self, client: str, store: Mapping[str, State]) -> dict[str, State]:  # noqa: D102
        payload = {GLOBAL: store[GLOBAL]} if GLOBAL in store else {}
        if client in store:
            payload[PERSONAL] = store[client]
        return payload

    def state_dict(self) -> dict:  # noqa: D102
        return {"alpha": self.alpha}

    def load_state_dict(self, state: dict) -> None:  # noqa: D102
        self.alpha = state.get("alpha", {})
