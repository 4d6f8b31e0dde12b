"""Sampled and full ranking metrics: MRR, HR@k and NDCG@k from the rank of the target.

The rank is ``1 + #(candidates scored strictly higher than the target)``: ties go to the target, as in the
papers' protocol. Ranks are computed vectorized in the evaluation step and each metric is averaged with a
torchmetrics ``MeanMetric`` (never a retrieval metric fed with logits, which would treat scores <= 0 as
non-relevant).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

HIT_CUTOFFS = (1, 5, 10)
NDCG_CUTOFFS = (5, 10)
METRIC_NAMES = ("MRR", *(f"HR@{k}" for k in HIT_CUTOFFS), *(f"NDCG@{k}" for k in NDCG_CUTOFFS))


def target_ranks(scores: Tensor, target_index: Tensor | int = 0) -> Tensor:
    """Rank of the target among the candidates of each row.

    Args:
        scores: (B, C) candidate scores.
        target_index: column of the target in each row (an int for all rows, or a (B,) tensor).

    Returns:
        (B,) int64 ranks in 1..C.
    """
    if isinstance(target_index, int):
        target = scores[:, target_index : target_index + 1]
    else:
        target = scores.gather(1, target_index.view(-1, 1))
    return 1 + (scores > target).sum(dim=1)


def rank_metrics(ranks: Tensor) -> dict[str, Tensor]:
    """Per-row metric values for ranks (MRR is 1/rank over all candidates, not truncated)."""
    ranks = ranks.double()
    values = {"MRR": 1.0 / ranks}
    for k in HIT_CUTOFFS:
        values[f"HR@{k}"] = (ranks <= k).double()
    for k in NDCG_CUTOFFS:
        values[f"NDCG@{k}"] = torch.where(ranks <= k, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))
    return values


class RankingMetrics(nn.Module):
    """Running means of MRR, HR@{1,5,10} and NDCG@{5,10} over a stage's ranks."""

    def __init__(self) -> None:
        super().__init__()
        # MetricCollection keys may not contain '@'; they are mapped back in compute().
        self.means = MetricCollection({_key(name): MeanMetric() for name in METRIC_NAMES})

    def update(self, ranks: Tensor) -> None:
        """Add a batch of ranks."""
        for name, values in rank_metrics(ranks).items():
            self.means[_key(name)].update(values)

    def compute(self) -> dict[str, Tensor]:
        """The means so far, keyed by the metric names of the papers (``MRR``, ``HR@10``, ...)."""
        return {name: self.means[_key(name)].compute() for name in METRIC_NAMES}

    def reset(self) -> None:
        """Forget all ranks."""
        self.means.reset()


def _key(name: str) -> str:
    return name.replace("@", "_at_")
