"""FedVSAN (docs/specs/baselines.md): what it uploads, z sampled only in training, the annealed KL by hand."""

import math

import torch
from conftest import fit_slice

from lightning_fed.models import FedVSAN


def build(dm, **kwargs):
    torch.manual_seed(0)
    model = FedVSAN(hidden_dim=8, num_heads=2, dropout=0.0, **kwargs)
    model.build(dm)
    return model


def test_it_uploads_both_encoder_stacks_and_the_decoder_only(food):
    model = build(food)
    payload = model.shared_state()
    assert {k.split(".")[1] for k in payload if k.startswith("encoder.")} >= {"blocks", "logvar_blocks"}
    assert any(k.startswith("decoder.") for k in payload)
    assert len(payload) == len(model.expert.encoder.state_dict()) + len(model.decoder.state_dict())
    assert all(food.num_items + 1 not in v.shape for v in payload.values())  # no item table, no head


def test_z_is_sampled_in_training_and_is_mu_at_evaluation(food):
    model = build(food)
    inputs, _ = next(iter(food.train_dataloader()))
    with torch.no_grad():
        model.eval()
        assert torch.equal(model.decode(inputs), model.decode(inputs))
        model.train()
        assert not torch.allclose(model.decode(inputs), model.decode(inputs))


def test_kl_weight_anneals_and_the_kl_is_divided_by_b_times_t(food):
    model = build(food, anneal_cap=0.5, total_annealing_step=4)
    encoder = model.expert.encoder
    with torch.no_grad():  # every block zero: mu and logvar are the final norms' biases, 0.5 and ln 2
        for p in encoder.parameters():
            p.zero_()
        encoder.final_norm.bias.fill_(0.5)
        encoder.logvar_norm.bias.fill_(math.log(2.0))
    inputs, targets = next(iter(food.train_dataloader()))
    kl = int((inputs != model.pad_id).sum()) * 4 * (1.25 - math.log(2.0)) / targets.numel()  # d = 8
    model.train()
    totals = []
    for step in (0, 1, 2, 5):
        model.annealing_step.fill_(step)
        torch.manual_seed(3)  # the same z sample every time
        totals.append(model.training_step((inputs, targets), 0).detach())
    for step, total in zip((1, 2, 5), totals[1:]):
        torch.testing.assert_close(total - totals[0], torch.tensor(min(0.5, step / 4) * kl), rtol=1e-4, atol=1e-6)


def test_two_rounds_on_real_fkcb_rank_well_above_chance(tmp_path):
    results = fit_slice("fedvsan_fkcb_cpu.yaml", tmp_path)
    assert results["strategy"] == "FedAvg"
    assert results["test"]["Avg"]["MRR"] > 0.03  # chance with 1000 candidates is about 0.0075
