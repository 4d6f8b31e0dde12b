"""PF-MSMTrec's client model: MMoE with the parameter template, FedBN and the personalization regularizer.

Ding et al., "Towards Personalized Federated Multi-Scenario Multi-Task Recommendation", arXiv:2406.18938 (2024),
as defined in docs/specs/pf-msmtrec.md; the server side is
:class:`~lightning_fed.strategies.PersonalizedAggregation`.
"""

from __future__ import annotations

from lightning_fed.models.multitask.mmoe import MMoE


class PFMSMTrec(MMoE):
    """PF-MSMTrec's client: MMoE with the parameter template, FedBN and the personalization regularizer.

    Ding et al., "Towards Personalized Federated Multi-Scenario Multi-Task Recommendation", arXiv:2406.18938
    (2024); the method as this project defines it is docs/specs/pf-msmtrec.md.
    Pair it with :class:`~lightning_fed.strategies.PersonalizedAggregation` (conflict coordination and the
    personalized aggregation of experts and towers). Each component is one switch: ``template``, ``fedbn``,
    ``proximal_weight`` (0 = off) here; ``conflict_c``, ``personalized_experts``, ``personalized_towers`` on
    the strategy.
    """

    def __init__(
        self,
        num_experts: int = 8,
        expert_dims: list[int] | None = None,
        tower_dims: list[int] | None = None,
        dropout: float = 0.2,
        template: bool = True,
        embedding_dim: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        fedbn: bool = True,
        proximal_weight: float = 0.01,
    ) -> None:
        super().__init__(
            num_experts, expert_dims, tower_dims, dropout, template, embedding_dim, lr, weight_decay, fedbn,
            proximal_weight,
        )  # fmt: skip
