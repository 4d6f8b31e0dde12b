import math

import torch

from lightning_fed.models.sequential.ranking_metrics import RankingMetrics, rank_metrics, target_ranks


def test_ranks_count_strictly_higher_scores_and_ties_favor_the_target():
    scores = torch.tensor(
        [
            [0.5, 0.9, 0.1, 0.7],  # two candidates above -> rank 3
            [2.0, 1.0, 0.0, -1.0],  # best -> rank 1
            [0.3, 0.3, 0.3, 0.9],  # ties do not count, one above -> rank 2
            [-5.0, -1.0, -2.0, -3.0],  # negative scores are fine -> rank 4
        ]
    )
    assert target_ranks(scores, 0).tolist() == [3, 1, 2, 4]
    assert target_ranks(scores, torch.tensor([1, 1, 3, 1])).tolist() == [1, 2, 1, 1]


def test_metric_values_by_hand():
    ranks = torch.tensor([1, 3, 7, 20])
    values = {k: v.mean().item() for k, v in rank_metrics(ranks).items()}
    assert math.isclose(values["MRR"], (1 + 1 / 3 + 1 / 7 + 1 / 20) / 4)
    assert values["HR@1"] == 0.25
    assert values["HR@5"] == 0.5
    assert values["HR@10"] == 0.75
    assert math.isclose(values["NDCG@5"], (1 + 1 / math.log2(4)) / 4)
    assert math.isclose(values["NDCG@10"], (1 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)


def test_running_means_over_batches():
    metrics = RankingMetrics()
    metrics.update(torch.tensor([1, 2]))
    metrics.update(torch.tensor([4]))
    out = metrics.compute()
    assert math.isclose(out["MRR"].item(), (1 + 0.5 + 0.25) / 3, rel_tol=1e-6)  # float32 states
    assert math.isclose(out["HR@1"].item(), 1 / 3, rel_tol=1e-6)
    metrics.reset()
    metrics.update(torch.tensor([1000]))
    assert math.isclose(metrics.compute()["MRR"].item(), 1e-3, rel_tol=1e-6)
