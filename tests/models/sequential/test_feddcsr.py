"""FedDCSR (docs/specs/baselines.md): its upload (with z_g), z_g's average, the hinge discriminator, the loss."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import fit_slice

from lightning_fed.errors import ConfigurationError
from lightning_fed.models import FedDCSR
from lightning_fed.models.sequential.contrastive import shuffle_items
from lightning_fed.models.sequential.feddcsr import GLOBAL_REPRESENTATION
from lightning_fed.models.sequential.pair_discriminator import PairDiscriminator, similarity_hinge_loss
from lightning_fed.strategies import FedAvg
from lightning_fed.strategies.base import GLOBAL, Upload


def build(dm, **kwargs):
    torch.manual_seed(0)
    model = FedDCSR(hidden_dim=8, num_heads=2, dropout=0.0, **kwargs)
    model.build(dm)
    model.train()
    return model


def batch_with_views(dm, index=0):
    inputs, targets = list(dm.train_dataloader())[index][:2]
    return inputs, targets, shuffle_items(inputs, dm.num_items, torch.Generator().manual_seed(index))


def receive(model, z_g):
    """Load a server average holding the model's own shared encoder and the given z_g."""
    state = {k: v for k, v in model.shared_state().items() if k != GLOBAL_REPRESENTATION}
    model.load_shared_state({GLOBAL: {**state, GLOBAL_REPRESENTATION: z_g}})


def test_the_scenario_values_come_from_the_data_layer(food):
    model = build(food)
    assert (model.hparams.anneal_cap, model.hparams.similarity_weight) == (1.0, 2.0)  # configs/data/fkcb.yaml
    assert model.hparams.exclusive_contrastive_weight == 1.0
    assert build(food, similarity_weight=0.5).hparams.similarity_weight == 0.5  # the model's own value wins
    bare = SimpleNamespace(num_items=5, ignore_target=-1, model_defaults={})
    with pytest.raises(ConfigurationError, match="similarity_weight"):
        FedDCSR().scenario_value("similarity_weight", bare)


def test_upload_is_the_shared_encoder_and_z_g_of_the_last_full_batch(food):
    model = build(food)
    encoder_keys = {f"encoder_s.{k}" for k in model.shared.encoder.state_dict()}
    assert set(model.shared_state()) == encoder_keys  # before any training: no z_g yet
    assert {k.split(".")[1] for k in encoder_keys} == {"blocks", "final_norm", "logvar_blocks", "logvar_norm"}

    first, second = batch_with_views(food, 0), batch_with_views(food, 1)
    model.training_step(first, 0)
    torch.manual_seed(7)
    want = model.shared(second[0], model.item_graph).detach()
    torch.manual_seed(7)
    model.training_step(second, 1)
    payload = model.shared_state()
    assert set(payload) == encoder_keys | {GLOBAL_REPRESENTATION}  # and nothing else: no item table, no head
    assert payload[GLOBAL_REPRESENTATION].shape == (16, 16, 8)  # B x T x d
    torch.testing.assert_close(payload[GLOBAL_REPRESENTATION], want)
    assert torch.all(payload[GLOBAL_REPRESENTATION][second[0] == food.num_items] == 0)  # padding zeroed

    short = tuple(t[:5] for t in first)
    model.training_step(short, 2)
    torch.testing.assert_close(model.shared_state()[GLOBAL_REPRESENTATION], want)  # a short batch does not replace it

    fresh = build(food)
    torch.manual_seed(7)
    z_short = fresh.shared(short[0], fresh.item_graph).detach()
    torch.manual_seed(7)
    fresh.training_step(short, 0)
    padded = fresh.shared_state()[GLOBAL_REPRESENTATION]
    torch.testing.assert_close(padded[:5], z_short)
    assert torch.all(padded[5:] == 0)


def test_z_g_is_the_weighted_average_of_the_uploads_and_reaches_the_clients(food):
    a, b = build(food), build(food)
    a.training_step(batch_with_views(food, 0), 0)
    b.training_step(batch_with_views(food, 1), 0)
    strategy, store = FedAvg(), {}
    ua, ub = a.shared_state(), b.shared_state()
    strategy.aggregate(store, {"A": Upload(state=ua, num_examples=30), "B": Upload(state=ub, num_examples=10)})
    want = 0.75 * ua[GLOBAL_REPRESENTATION] + 0.25 * ub[GLOBAL_REPRESENTATION]
    torch.testing.assert_close(store[GLOBAL][GLOBAL_REPRESENTATION], want)
    assert not bool(a.has_global_representation)
    a.load_shared_state(strategy.payload("A", store))
    assert bool(a.has_global_representation)
    torch.testing.assert_close(a.global_representation, want)
    with pytest.raises(ValueError, match="z_g has shape"):
        a.load_shared_state({GLOBAL: {GLOBAL_REPRESENTATION: torch.zeros(3, 16, 8)}})


def test_hinge_discriminator_by_hand():
    t, d = 2, 1
    disc = PairDiscriminator(t, d)  # 2Td = 4 -> 1 -> 1 -> 1
    with torch.no_grad():  # D(a, b) = relu(sum(a m) - sum(b m)) * 2 - 1
        disc.mlp[0].weight.copy_(torch.tensor([[1.0, 1.0, -1.0, -1.0]]))
        disc.mlp[0].bias.zero_()
        disc.mlp[2].weight.fill_(2.0)
        disc.mlp[2].bias.zero_()
        disc.mlp[4].weight.fill_(1.0)
        disc.mlp[4].bias.fill_(-1.0)
    valid = torch.tensor([[False, True], [True, True]])
    shared = torch.tensor([[[9.0], [2.0]], [[1.0], [1.0]]])  # masked sums 2, 2 (the 9 is at padding)
    exclusive = torch.tensor([[[0.0], [0.5]], [[0.0], [3.0]]])  # 0.5, 3
    global_ = torch.tensor([[[5.0], [1.0]], [[1.0], [0.0]]])  # 1, 1
    assert torch.equal(disc(shared, global_, valid), torch.tensor([1.0, 1.0]))  # relu(1)*2-1
    assert torch.equal(disc(exclusive, global_, valid), torch.tensor([-1.0, 3.0]))  # relu(-0.5)*2-1, relu(2)*2-1

    def sig(x):
        return 1 / (1 + math.exp(-x))

    want = (max(0.0, 0.3 - sig(1) + sig(-1)) + max(0.0, 0.3 - sig(1) + sig(3))) / 2  # 0 and 0.3 - 0.731 + 0.953
    loss = similarity_hinge_loss(disc, shared, exclusive, global_, valid, margin=0.3)
    torch.testing.assert_close(loss, torch.tensor(want))


def test_similarity_term_is_zero_until_z_g_arrives_then_beta_times_l_sim(food):
    model = build(food)
    batch = batch_with_views(food)

    def total(beta):
        model.hparams.similarity_weight = beta
        model.annealing_step.fill_(0)
        torch.manual_seed(3)
        return model.training_step(batch, 0).detach()

    assert torch.equal(total(2.0), total(0.0))  # round 1: no z_g
    z_g = torch.randn(16, 16, 8)
    receive(model, z_g)
    zero, two = total(0.0), total(2.0)
    torch.manual_seed(3)
    z_s = model.shared(batch[0], model.item_graph)
    z_e_copy = model.exclusive(torch.cat([batch[0], batch[0], batch[2]]), model.item_graph).split(16)[1]
    valid = batch[0] != food.num_items
    l_sim = similarity_hinge_loss(model.discriminator, z_s, z_e_copy, z_g * valid.unsqueeze(-1), valid, 0.3)
    assert l_sim > 0
    torch.testing.assert_close(two - zero, 2.0 * l_sim.detach(), rtol=1e-4, atol=1e-6)


def test_kl_of_both_branches_anneals_and_is_divided_by_b_times_t(food):
    model = build(food, anneal_cap=0.5, total_annealing_step=4)
    with torch.no_grad():  # every block zero: mu and logvar are the final norms' biases, 0.5 and ln 2
        for branch in (model.shared, model.exclusive):
            for p in branch.encoder.parameters():
                p.zero_()
            branch.encoder.final_norm.bias.fill_(0.5)
            branch.encoder.logvar_norm.bias.fill_(math.log(2.0))
    inputs, targets, views = batch_with_views(food)
    per_branch = int((inputs != food.num_items).sum()) * 4 * (1.25 - math.log(2.0))  # d = 8: d/2 (1.25 - ln 2)
    kl = 2 * per_branch / targets.numel()
    totals = []
    for step in (0, 1, 2, 5):
        model.annealing_step.fill_(step)
        torch.manual_seed(3)
        totals.append(model.training_step((inputs, targets, views), 0).detach())
    for step, total in zip((1, 2, 5), totals[1:]):
        torch.testing.assert_close(total - totals[0], torch.tensor(min(0.5, step / 4) * kl), rtol=1e-4, atol=1e-5)


def test_accumulated_global_mask_keeps_every_batch_mask(food):
    first, second = batch_with_views(food, 0), batch_with_views(food, 1)
    z_g = torch.ones(16, 16, 8)
    for mode, want in (
        ("per_batch", torch.ones(16, 16)),
        ("accumulated", ((first[0] != food.num_items) & (second[0] != food.num_items)).float()),
    ):
        model = build(food, global_mask=mode)
        receive(model, z_g)
        model.training_step(first, 0)
        model.training_step(second, 1)
        torch.testing.assert_close(model.global_representation[..., 0], want)


def test_scores_are_deterministic_at_evaluation(food):
    model = build(food)
    model.eval()
    inputs, candidates = next(iter(food.val_dataloader()))
    with torch.no_grad():
        scores = model.score_candidates(inputs, candidates)
        assert torch.equal(scores, model.score_candidates(inputs, candidates))
        z = model.shared(inputs, model.item_graph) + model.exclusive(inputs, model.item_graph)
        want = (z[:, -1] @ model.head.weight.t() + model.head.bias).gather(1, candidates)
    torch.testing.assert_close(scores, want)


def test_two_rounds_on_real_fkcb_rank_well_above_chance(tmp_path):
    results = fit_slice("feddcsr_fkcb_cpu.yaml", tmp_path)
    assert results["strategy"] == "FedAvg"
    assert results["test"]["Avg"]["MRR"] > 0.03  # chance with 1000 candidates is about 0.0075
