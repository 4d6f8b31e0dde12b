"""PF-MSMTrec's client model: MMoE with the parameter template, FedBN and the personalization regularizer.

Ding et al., "Towards Personalized Federated Multi-Scenario Multi-Task Recommendation", arXiv:2406.18938 (2024),
as defined in docs/specs/pf-msmtrec.md; the server side is
:class:`~lightning_fed.strategies.PersonalizedAggregation`.
"""

from __future__ import annotations

from typing import Any

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

    def __init__(self, template: bool = True, fedbn: bool = True, proximal_weight: float = 0.01, **kwargs: Any) -> None:
        """PF-MSMTrec's defaults: the template, FedBN and the regularizer on; see :class:`MMoE` for the rest."""
        super().__init__(template=template, fedbn=fedbn, proximal_weight=proximal_weight, **kwargs)
