"""FedDuoRec (docs/specs/baselines.md): same-target positives, its loss by hand, two rounds on real FKCB."""

import torch
from conftest import fit_slice

from lightning_fed.models import FedDuoRec
from lightning_fed.models.sequential.contrastive import nt_xent
from lightning_fed.models.sequential.fedduorec import same_target_positives

P = 9


def test_a_positive_shares_the_final_target_and_is_never_an_identical_sequence():
    inputs = torch.tensor([[P, 1, 2], [P, 3, 4], [P, 1, 2], [P, 5, 6], [P, 7, 8]])
    targets = torch.tensor([[-100, 2, 5], [-100, 4, 5], [-100, 2, 5], [-100, 6, 7], [-100, 8, 1]])
    # final targets: 5, 5, 5, 7, 1 -> rows 0 and 2 are identical; row 1 is the only non-identical partner of both
    for seed in range(20):
        positives = same_target_positives(inputs, targets, torch.Generator().manual_seed(seed))
        assert positives[0] == 1 and positives[2] == 1  # never each other (identical), always row 1
        assert positives[1] in (0, 2)  # uniform over its two partners
        assert positives[3] == 3 and positives[4] == 4  # alone with their target: their own positive
    drawn = {same_target_positives(inputs, targets, torch.Generator().manual_seed(s))[1].item() for s in range(20)}
    assert drawn == {0, 2}


def test_loss_contrasts_each_sequence_with_its_positive(food):
    torch.manual_seed(0)
    model = FedDuoRec(hidden_dim=16, num_heads=2, dropout=0.0)
    model.build(food)
    model.train()
    inputs, targets = next(iter(food.train_dataloader()))
    positives = model.positives(inputs, targets)
    assert (positives != inputs).any(1).sum() > 0
    loss = model.training_step((inputs, targets), 0)
    with torch.no_grad():
        z = model.expert(inputs, None)
        plus = model.expert(positives, None)[:, -1]
        rows = targets != food.ignore_target
        logits = z[rows] @ model.expert.head.weight.t() + model.expert.head.bias
        rec = torch.nn.functional.cross_entropy(logits, targets[rows], reduction="sum") / targets.numel()
        contrast = nt_xent(z[:, -1], plus)
    torch.testing.assert_close(loss.detach(), rec + 0.1 * contrast, rtol=1e-4, atol=1e-5)
    # every positive is a training sequence with the same final target
    train = {(tuple(i), t) for b in food.train_dataloader() for i, t in zip(b[0].tolist(), b[1][:, -1].tolist())}
    for row, target in zip(positives.tolist(), targets[:, -1].tolist()):
        assert (tuple(row), target) in train


def test_two_rounds_on_real_fkcb_rank_well_above_chance(tmp_path):
    results = fit_slice("fedduorec_fkcb_cpu.yaml", tmp_path)
    assert results["strategy"] == "FedAvg"
    assert results["test"]["Avg"]["MRR"] > 0.03  # chance with 1000 candidates is about 0.0075
