"""PF-MSMTrec's server: conflict-coordinated averaging, and personalized aggregation of experts and towers."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lightning_fed.errors import ConfigurationError
from lightning_fed.strategies.base import State, Strategy, Upload
from lightning_fed.strategies.conflict_averse import conflict_averse_direction

GLOBAL = "global"


def group_of(key: str) -> str:
    """The group of an uploaded key ``"<group>/<name>"``."""
    return key.split("/", 1)[0]


def kind_of(group: str) -> str:
    """``averaged`` (global, task*, gate*, bn), ``experts`` (scenario, expert) or ``towers`` (tower*)."""
    if group in ("scenario", "expert"):
        return "experts"
    if group.startswith("tower"):
        return "towers"
    if group.startswith(("global", "task", "gate", "bn")):
        return "averaged"
    raise ValueError(f"PersonalizedAggregation: unknown share group {group!r} (see lightning_fed.models.share_groups)")


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
    """The server side of PF-MSMTrec (shared/specs/pf-msmtrec.md), each component behind a switch.

    Uploads are ``"<group>/<name>"`` tensors (the model declares the groups, see
    :mod:`lightning_fed.models.share_groups`):

    - averaged groups (``global``, ``task<t>``, ``gate<t>``): each group's new value is the previous one plus the
      conflict-averse aggregate of the clients' updates (``conflict_c``; 0 = plain averaging); ``bn`` (only
      without FedBN) is averaged plainly;
    - expert groups (``scenario`` with the template, ``expert`` without): client s receives
      ``sum_j alpha[s, j] theta_j`` with ``alpha`` from :func:`personalized_weights` on those parameters
      (``personalized_experts``; off = plain averaging);
    - tower groups: the same, with the experts' ``alpha`` (``personalized_towers``; off = plain averaging).

    Every client starts from the same initial state (the first client's), as in FedAvg. The last round's
    ``alpha`` is kept in :attr:`alpha` (and in checkpoints).

    Args:
        conflict_c: c of conflict coordination, in [0, 1).
        personalized_experts: personalized aggregation of the experts' scenario parts.
        personalized_towers: personalized aggregation of the towers.
        sigma: temperature of the personalized weights (None: the median heuristic).
    """

    sends = "personalized"

    def __init__(
        self,
        conflict_c: float = 0.4,
        personalized_experts: bool = True,
        personalized_towers: bool = True,
        sigma: float | None = None,
    ) -> None:
        if not 0.0 <= conflict_c < 1.0:
            raise ConfigurationError(f"federation.strategy.init_args.conflict_c must be in [0, 1), got {conflict_c}")
        self.conflict_c = conflict_c
        self.personalized_experts = personalized_experts
        self.personalized_towers = personalized_towers
        self.sigma = sigma
        self.alpha: dict[str, dict[str, float]] = {}

    def initialize(self, store: dict[str, State], initial: State) -> None:  # noqa: D102
        store[GLOBAL] = {k: v.clone() for k, v in initial.items()}

    def aggregate(self, store: dict[str, State], uploads: Mapping[str, Upload]) -> None:  # noqa: D102
        if not uploads:
            return
        clients = list(uploads)
        keys = list(uploads[clients[0]].state)
        for client in clients[1:]:
            if list(uploads[client].state) != keys:
                raise ValueError(f"PersonalizedAggregation: {client} uploads other tensors than {clients[0]}")
        by_kind: dict[str, list[str]] = {"averaged": [], "experts": [], "towers": []}
        for key in keys:
            by_kind[kind_of(group_of(key))].append(key)
        previous = store.get(GLOBAL, {})
        new_global: State = dict(previous)

        groups: dict[str, list[str]] = {}
        for key in by_kind["averaged"]:
            groups.setdefault(group_of(key), []).append(key)
        for group, group_keys in groups.items():
            # BatchNorm statistics (shared only without FedBN) are averaged plainly, not coordinated.
            c = 0.0 if group == "bn" else self.conflict_c
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
            payload["personal"] = store[client]
        return payload

    def state_dict(self) -> dict:  # noqa: D102
        return {"alpha": self.alpha}

    def load_state_dict(self, state: dict) -> None:  # noqa: D102
        self.alpha = state.get("alpha", {})
