"""Evaluation ranks in fp32 whatever the training precision: planted near-ties stay ordered under bf16-mixed."""

import pytest
import torch
from lightning import Trainer

from lightning_fed.datamodules import FKCB
from lightning_fed.models import FedSASRec
from lightning_fed.models.sequential.ranking_metrics import target_ranks
from lightning_fed.protocols import client_datamodules_of

HIGHER = 5  # negatives planted just above the target


@pytest.fixture
def planted():
    """FedSASRec on one real Beauty validation sequence, its head planted so that 5 of the 9 negatives score
    above the target by 1..5 x 2e-4 relative: distinct in fp32, equal once rounded to bf16's 8 bits."""
    torch.manual_seed(0)
    datamodule = client_datamodules_of(FKCB(domains=["Beauty"], max_sequences=1, num_negatives=9, batch_size=1))
    datamodule = datamodule["Beauty"]
    model = FedSASRec(hidden_dim=8, num_heads=2)
    model.build(datamodule)
    model.eval()
    inputs, candidates = datamodule.datasets["valid"][:]
    with torch.no_grad():
        z = model.expert(inputs, None)[0, -1]
        head = model.expert.head
        target, negatives = int(candidates[0, 0]), candidates[0, 1:].tolist()
        head.bias[target] = 1.0 - head.weight[target] @ z  # the target scores exactly 1
        step = 2e-4 * z / (z @ z)
        for k, item in enumerate(negatives, start=1):
            head.weight[item] = head.weight[target] + (k if k <= HIGHER else -k) * step
            head.bias[item] = head.bias[target]
    return model, datamodule, inputs, candidates


def test_scores_stay_fp32_under_bf16_autocast(planted):
    model, _, inputs, candidates = planted
    head = model.expert.head
    with torch.no_grad():
        fp32 = model.score_candidates(inputs, candidates)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = model.score_candidates(inputs, candidates)
            z = model.expert(inputs, None)[:, -1].float()
            rounded = torch.addmm(head.bias, z, head.weight.t()).gather(1, candidates)  # what autocast makes of it
    assert rounded.dtype == torch.bfloat16 and int(target_ranks(rounded)[0]) == 1  # the planted near-ties tie
    assert under_autocast.dtype == torch.float32
    assert int(target_ranks(under_autocast)[0]) == int(target_ranks(fp32)[0]) == 1 + HIGHER


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_validation_ranks_in_fp32_under_every_precision(planted, precision):
    model, datamodule, _, _ = planted
    trainer = Trainer(precision=precision, logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    rank = 1 + HIGHER
    assert metrics["val/MRR"] == pytest.approx(1 / rank)
    assert (metrics["val/HR@1"], metrics["val/HR@5"], metrics["val/HR@10"]) == (0.0, 0.0, 1.0)
    assert metrics["val/NDCG@10"] == pytest.approx(1 / torch.log2(torch.tensor(rank + 1.0)).item())
