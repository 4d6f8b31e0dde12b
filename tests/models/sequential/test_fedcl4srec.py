"""FedCL4SRec (docs/specs/baselines.md): what it uploads, its loss, and two rounds on real FKCB data."""

import pytest
import torch
from conftest import fit_slice

from lightning_fed.models import FedCL4SRec
from lightning_fed.models.sequential.contrastive import nt_xent
from lightning_fed.strategies.base import GLOBAL


def build(dm, **kwargs):
    torch.manual_seed(0)
    model = FedCL4SRec(hidden_dim=16, num_heads=2, **kwargs)
    model.build(dm)
    return model


def test_it_uploads_the_encoder_only_by_names_and_shapes(food):
    model = build(food)
    payload = model.shared_state()
    assert set(payload) == {f"encoder.{k}" for k in model.expert.encoder.state_dict()}
    assert not any("embedding" in k or "head" in k or "input_norm" in k for k in payload)
    assert all(food.num_items not in v.shape and food.num_items + 1 not in v.shape for v in payload.values())
    other = build(food)
    with torch.no_grad():
        for p in other.expert.encoder.parameters():
            p.add_(1.0)
    other.load_shared_state({GLOBAL: payload})
    for k, v in other.expert.encoder.state_dict().items():
        assert torch.equal(v, model.expert.encoder.state_dict()[k])
    with pytest.raises(ValueError, match="one averaged encoder"):
        model.load_shared_state({"Beauty": payload})


def test_loss_is_the_b_times_t_cross_entropy_plus_a_tenth_of_the_views_contrast(food):
    model = build(food, dropout=0.0)
    model.train()
    batch = next(iter(food.train_dataloader()))
    inputs, targets = batch
    torch.manual_seed(7)
    loss = model.training_step(batch, 0)
    # recompute by hand with the same draws: the operators, then each view's draws, in the step's order
    torch.manual_seed(7)
    from lightning_fed.models.sequential.augmentations import augment, two_distinct_operators

    first, second = two_distinct_operators(len(inputs), inputs.device)
    views = torch.cat([augment(inputs, model.pad_id, first), augment(inputs, model.pad_id, second)])
    with torch.no_grad():
        z = model.expert(inputs, None)
        v = model.expert(views, None)[:, -1]
        rows = targets != food.ignore_target
        logits = z[rows] @ model.expert.head.weight.t() + model.expert.head.bias
        rec = torch.nn.functional.cross_entropy(logits, targets[rows], reduction="sum") / targets.numel()
        contrast = nt_xent(v[: len(inputs)], v[len(inputs) :])
    torch.testing.assert_close(loss.detach(), rec + 0.1 * contrast, rtol=1e-4, atol=1e-5)


def test_two_rounds_on_real_fkcb_rank_well_above_chance(tmp_path):
    results = fit_slice("fedcl4srec_fkcb_cpu.yaml", tmp_path)
    assert results["strategy"] == "FedAvg"
    assert results["test"]["Avg"]["MRR"] > 0.03  # chance with 1000 candidates is about 0.0075
