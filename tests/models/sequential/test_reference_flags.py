"""The reference code's ten points (docs/specs/fmoe-cdsr.md), each flag on tiny cases computed by hand."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_fed.cli import main
from lightning_fed.datamodules import FKCB
from lightning_fed.datamodules.sequential.candidates import reference_negatives
from lightning_fed.datamodules.sequential.item_graph import item_transition_graph
from lightning_fed.errors import ConfigurationError
from lightning_fed.models import FMoECDSR
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.models.sequential.gate_router import GateRouter
from lightning_fed.models.sequential.item_graph_embedding import graph_item_representations
from lightning_fed.models.sequential.sequence_encoder import SequenceEncoder


@pytest.fixture(scope="module")
def food():
    scenario = FKCB(domains=["Food", "Beauty"], max_sequences=40, batch_size=16, num_negatives=99)
    dm = scenario.client_datamodules()["Food"]
    dm.setup()
    return dm


def build(dm, **kwargs):
    torch.manual_seed(0)
    model = FMoECDSR(hidden_dim=8, num_heads=2, dropout=0.0, **kwargs)
    model.build(dm)
    return model


def constant_encoder_outputs(encoder: SequenceEncoder, mu: float, logvar: float) -> None:
    """Zero every block (the stream passes unchanged) and set the final norms to constants mu and logvar."""
    with torch.no_grad():
        for p in encoder.parameters():
            p.zero_()
        encoder.final_norm.bias.fill_(mu)
        encoder.logvar_norm.bias.fill_(logvar)


# 1. KL regulariser ------------------------------------------------------------------------------------------------
def test_kl_of_two_stacks_is_summed_over_each_sequences_valid_positions():
    encoder = SequenceEncoder(hidden_dim=4, num_blocks=1, num_heads=2, dropout=0.0, kl_regularizer=True)
    constant_encoder_outputs(encoder, mu=0.5, logvar=math.log(2.0))
    valid = torch.tensor([[False, True, True, True], [False, False, False, True]])
    z = encoder(torch.randn(2, 4, 4) * valid[..., None], valid)
    # per position: -1/2 * sum_d (1 + ln 2 - 0.25 - 2) = 2 * (1.25 - ln 2) for d = 4; z = mu, zero at padding
    per_position = 2 * (1.25 - math.log(2.0))
    torch.testing.assert_close(encoder.last_kl, torch.tensor([3 * per_position, per_position]))
    torch.testing.assert_close(z, 0.5 * valid[..., None].float().expand(2, 4, 4))


@pytest.mark.parametrize("normalization", ["valid_positions", "all_positions"])
def test_kl_weight_anneals_with_the_optimizer_steps(food, normalization):
    model = build(
        food, experts="local", contrastive_weight=0.0, kl_regularizer=True, anneal_cap=0.5, total_annealing_step=4,
        loss_normalization=normalization,
    )  # fmt: skip
    constant_encoder_outputs(model.net.local_expert.encoder, mu=0.5, logvar=math.log(2.0))
    inputs, targets = next(iter(food.train_dataloader()))
    valid = int((inputs != model.pad_id).sum())
    denominator = targets.numel() if normalization == "all_positions" else int((targets != -100).sum())
    kl = valid * 4 * (1.25 - math.log(2.0)) / denominator  # d = 8: 4 * (1.25 - ln 2) per position
    totals = []
    for step in (0, 1, 2, 5):
        model.annealing_step.fill_(step)
        totals.append(model.backward_step((inputs, targets)))
    for step, total in zip((1, 2, 5), totals[1:]):
        weight = min(0.5, step / 4)  # 0.25, 0.5, then capped at 0.5
        torch.testing.assert_close(total - totals[0], torch.tensor(weight * kl), rtol=1e-5, atol=1e-6)
    assert model.annealing_step.item() == 6  # backward_step counts the steps


def test_the_logvar_stack_leaves_the_client_with_the_encoder(food):
    model = build(food, kl_regularizer=True)
    assert any(k.startswith("encoder.logvar_blocks.") for k in model.shared_state())


# 2. Initialisation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("init", "std"), [("scaled", 8**-0.5), ("standard_normal", 1.0)])
def test_item_embeddings_are_drawn_with_the_chosen_scale(food, init, std):
    table = build(food, embedding_init=init).net.local_expert.item_embedding.weight.detach()
    assert torch.count_nonzero(table[-1]) == 0  # the padding row
    # the sample std of (N x d) normal draws is within 5% of sigma with overwhelming probability here
    assert abs(table[:-1].std().item() - std) < 0.05 * std


@pytest.mark.parametrize(("eps", "expected"), [(1e-5, 1e-6 / math.sqrt(1e-5 + 1e-12)), (1e-12, 0.5**0.5)])
def test_input_norm_eps_reaches_every_expert(food, eps, expected):
    model = build(food, input_norm_eps=eps)
    row = torch.tensor([1e-6, -1e-6] * 4)  # mean 0, variance 1e-12: LN gives row / sqrt(1e-12 + eps)
    for expert in model.net.experts:
        assert expert.input_norm.eps == eps
        torch.testing.assert_close(expert.input_norm(row), torch.tensor([expected, -expected] * 4))


def test_input_norm_eps_must_be_positive():
    with pytest.raises(ConfigurationError, match="model.init_args.input_norm_eps must be positive, got 0.0"):
        FMoECDSR(input_norm_eps=0.0)


# 3. SASRec block form --------------------------------------------------------------------------------------------
def dense_sasrec(encoder: SequenceEncoder, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The reference encoder written on the dense (B, T) stream: no packing, padding zeroed after each block.

    Its LayerNorms have the reference code's eps, 1e-8.
    """
    b, t, d = x.shape
    eps = 1e-8
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    x = x * valid[..., None]
    for block in encoder.blocks:
        w, bias = block.qkv.weight, block.qkv.bias
        q_in = nn.functional.layer_norm(x, (d,), block.attn_norm.weight, block.attn_norm.bias, eps)
        q = q_in @ w[:d].t() + bias[:d]
        k = x @ w[d : 2 * d].t() + bias[d : 2 * d]
        v = x @ w[2 * d :].t() + bias[2 * d :]
        heads = block.num_heads

        def split(y, heads=heads):
            return y.view(b, t, heads, d // heads).transpose(1, 2)

        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
        attn = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1) @ split(v)
        x = q_in + attn.transpose(1, 2).reshape(b, t, d) @ block.out.weight.t() + block.out.bias
        x = nn.functional.layer_norm(x, (d,), block.ffn_norm.weight, block.ffn_norm.bias, eps)
        x = x + block.ffn(x)
        x = x * valid[..., None]
    final = nn.functional.layer_norm(x, (d,), encoder.final_norm.weight, encoder.final_norm.bias, eps)
    return final * valid[..., None]


def test_sasrec_block_equals_the_reference_written_densely():
    torch.manual_seed(0)
    encoder = SequenceEncoder(hidden_dim=8, num_blocks=2, num_heads=2, dropout=0.0, block_form="sasrec").eval()
    for p in encoder.parameters():  # non-trivial norms and biases
        nn.init.normal_(p, std=0.5)
    valid = torch.tensor([[False, False, True, True, True], [True, True, True, True, True]])
    x = torch.randn(2, 5, 8) * valid[..., None]
    torch.testing.assert_close(encoder(x, valid), dense_sasrec(encoder, x, valid))
    # an input of variance about 1e-8, where eps 1e-8 and PyTorch's default 1e-5 differ
    torch.testing.assert_close(encoder(x * 1e-4, valid), dense_sasrec(encoder, x * 1e-4, valid))
    # the pre-norm form is a different function of the same weights
    pre_norm = SequenceEncoder(hidden_dim=8, num_blocks=2, num_heads=2, dropout=0.0).eval()
    pre_norm.load_state_dict(encoder.state_dict())
    assert not torch.allclose(pre_norm(x, valid), encoder(x, valid))


# 4. Loss normalisation -------------------------------------------------------------------------------------------
def test_cross_entropy_is_a_masked_sum_over_the_given_denominator():
    h = [torch.tensor([[1.0, 0.0], [0.0, 2.0]])]
    w = [torch.eye(2)]
    b = [torch.zeros(2)]
    targets = torch.tensor([0, 0])
    # row 1: logits (1, 0) -> log(1 + e^-1); row 2: logits (0, 2) -> log(1 + e^2)
    total = math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))
    (mean,), _ = mixture_cross_entropy(h, w, b, targets)
    (over_bt,), _ = mixture_cross_entropy(h, w, b, targets, denominator=8)
    torch.testing.assert_close(mean, torch.tensor(total / 2))
    torch.testing.assert_close(over_bt, torch.tensor(total / 8))


def test_all_positions_normalisation_scales_the_next_item_loss_by_rows_over_b_times_t(food):
    batch = next(iter(food.train_dataloader()))
    rows = int((batch[1] != -100).sum())
    losses = {}
    for normalization in ("valid_positions", "all_positions"):
        model = build(food, experts="local", contrastive_weight=0.0, loss_normalization=normalization)
        losses[normalization] = model.backward_step(batch)
    torch.testing.assert_close(losses["all_positions"], losses["valid_positions"] * rows / batch[1].numel())


# 5. Item graph ---------------------------------------------------------------------------------------------------
def test_reference_graph_drops_out_the_propagated_copy_and_adds_a_bias():
    graph = item_transition_graph([[0, 1, 2], [2, 0]], num_items=3)
    dense = graph.to_dense()
    table = torch.randn(4, 5)
    bias = torch.randn(5)
    mask = torch.tensor([[1.0], [0.0], [2.0], [2.0]])  # a fixed "dropout" mask (kept rows scaled by 1/(1-p))

    def drop(x):
        return x * mask

    got = graph_item_representations(table, graph, 1, dropout=drop, bias=bias)
    torch.testing.assert_close(got, (table + dense @ (table * mask) + bias) / 2 + table)


def test_reference_graph_form_has_a_trainable_bias(food):
    expert = build(food, graph_form="dropout_bias").net.local_expert
    assert expert.graph_bias.requires_grad and expert.graph_bias.shape == (8,)
    assert build(food).net.local_expert.graph_bias is None


# 6. Adam betas ---------------------------------------------------------------------------------------------------
def test_adam_betas_reach_the_optimizer(food):
    assert build(food, adam_betas=(0.9, 0.98)).configure_optimizers().param_groups[0]["betas"] == (0.9, 0.98)
    assert build(food).configure_optimizers().param_groups[0]["betas"] == (0.9, 0.999)


# 7. Gate pooling -------------------------------------------------------------------------------------------------
def test_batch_pooled_gate_is_one_vector_from_the_mean_over_batch_and_positions(food):
    model = build(food, gate_pooling="batch").eval()
    inputs, _ = next(iter(food.train_dataloader()))
    with torch.no_grad():
        outputs = model._encode_all(inputs)
        weights = model.net.gate_weights(outputs)
        pooled = torch.cat(outputs, -1).mean((0, 1))  # padding positions (zero) included
        expected = torch.softmax(model.net.gate.mlp(pooled), -1)
    torch.testing.assert_close(weights, expected.expand_as(weights))


def test_batch_pooled_gate_routes_one_row_with_one_dropout_mask_in_training():
    gate = GateRouter(hidden_dim=4, num_experts=2, dropout=0.5, pooling="batch").train()
    generator = torch.Generator().manual_seed(3)
    outputs = [torch.randn(3, 5, 4, generator=generator) for _ in range(2)]
    torch.manual_seed(7)
    weights = gate(outputs)
    grads = torch.autograd.grad((weights[..., 0] * torch.arange(15.0).view(3, 5)).sum(), gate.mlp[0].weight)
    pooled = torch.cat(outputs, -1).mean((0, 1)).unsqueeze(0)  # (1, K d)
    torch.manual_seed(7)  # the same dropout masks, drawn for the one pooled row
    expected = torch.softmax(gate.mlp(pooled), -1)
    # every position of the batch carries that row's weights, so the loss weights sum: 0 + 1 + ... + 14 = 105
    (expected_grads,) = torch.autograd.grad(105.0 * expected[0, 0], gate.mlp[0].weight)
    assert weights.shape == (3, 5, 2)
    torch.testing.assert_close(weights, expected.expand(3, 5, 2))
    torch.testing.assert_close(grads[0], expected_grads)


def test_batch_pooled_gate_counts_padding_as_the_reference_encoders_final_norm_bias(food):
    # the reference's final LayerNorm follows the zeroing of the padding: a padding position leaves as LN(0) = bias
    model = build(food, gate_pooling="batch", block_form="sasrec").eval()
    with torch.no_grad():
        for j, expert in enumerate(model.net.experts):
            expert.encoder.final_norm.bias.fill_(0.5 * (j + 1))
    inputs, candidates = next(iter(food.val_dataloader()))
    padding = inputs == food.pad_id
    assert padding.any() and not padding.all()
    with torch.no_grad():
        outputs = model._encode_all(inputs)
        assert all(torch.count_nonzero(z[padding]) == 0 for z in outputs)  # the encoder itself outputs zero there
        filled = [torch.where(padding.unsqueeze(-1), 0.5 * (j + 1), z) for j, z in enumerate(outputs)]
        expected = torch.softmax(model.net.gate.mlp(torch.cat(filled, -1).mean((0, 1))), -1)
        weights = model.net.gate_weights(outputs, padding=padding)
        torch.testing.assert_close(weights, expected.expand_as(weights))
        assert not torch.allclose(model.net.gate_weights(outputs), weights)  # zeros there would route otherwise
        # scoring pools the same way: the fused scores are sum_j g_j y^j with that gate
        scores = [expert.candidate_scores(z[:, -1], candidates) for expert, z in zip(model.net.experts, outputs)]
        fused = sum(expected[j] * scores[j] for j in range(len(scores)))
        torch.testing.assert_close(model.score_candidates(inputs, candidates), fused)
    pre_norm = build(food, gate_pooling="batch").eval()  # the method's encoder: padding counts as zero
    with torch.no_grad():
        outputs = pre_norm._encode_all(inputs)
        assert pre_norm.net.experts[0].encoder.padding_output() is None
        torch.testing.assert_close(
            pre_norm.net.gate_weights(outputs, padding=padding), pre_norm.net.gate_weights(outputs)
        )


@pytest.mark.parametrize("backward", ["per_expert", "joint"])
@pytest.mark.parametrize("pooling", ["batch", "sample"])
def test_training_step_passes_the_padding_to_the_batch_pooled_gate_only(food, monkeypatch, pooling, backward):
    model = build(food, gate_pooling=pooling, block_form="sasrec", backward=backward)
    seen = []
    original = model.net.gate_weights
    monkeypatch.setattr(
        model.net, "gate_weights", lambda *a, **kw: seen.append(kw.get("padding")) or original(*a, **kw)
    )
    inputs, targets = next(iter(food.train_dataloader()))[:2]
    model.backward_step((inputs, targets))
    assert len(seen) == 1
    if pooling == "batch":
        assert torch.equal(seen[0], inputs == food.pad_id)
    else:
        assert seen[0] is None


# 8. Fixed views and order ----------------------------------------------------------------------------------------
def test_fixed_order_repeats_one_shuffle_and_fills_the_last_batch_with_its_first_sequences():
    scenario = FKCB(domains=["Food"], max_sequences=40, batch_size=16, num_negatives=9, training_order="fixed")
    dm = scenario.client_datamodules()["Food"]
    dm.setup()
    epochs = [list(dm.train_dataloader()) for _ in range(2)]
    assert [len(batch) for batch in epochs[0][0]] == [16, 16, 16]  # inputs, targets, views
    for one, two in zip(*epochs):
        for a, b in zip(one, two):
            assert torch.equal(a, b)  # the same order and the same views every epoch
    inputs = torch.cat([batch[0] for batch in epochs[0]])
    assert len(inputs) == 48 and dm.num_train_examples == 40  # 40 sequences + 8 filler
    assert torch.equal(inputs[40:], inputs[:8])
    plain = FKCB(domains=["Food"], max_sequences=40, num_negatives=9).client_datamodules()["Food"]
    plain.setup()
    original = plain.datasets["train"].tensors[0]
    assert sorted(map(tuple, inputs[:40].tolist())) == sorted(map(tuple, original.tolist()))  # a permutation
    views = torch.cat([batch[2] for batch in epochs[0]])
    for seq, view in zip(inputs.tolist(), views.tolist()):  # each view shuffles its sequence's items
        assert sorted(seq) == sorted(view) and [i == dm.pad_id for i in seq] == [i == dm.pad_id for i in view]


def test_the_model_uses_the_views_of_the_batch(food):
    batch = next(iter(food.train_dataloader()))
    model = build(food, experts="local")
    identical = model.backward_step((*batch, batch[0]))  # views equal to the inputs: the same z twice
    model.zero_grad()
    other = model.backward_step((*batch, batch[0].flip(0)))
    assert not torch.equal(identical, other)


# 9. Candidates ---------------------------------------------------------------------------------------------------
def test_reference_candidates_follow_numpys_global_stream_through_the_domains_in_order():
    scenario = FKCB(
        domains=["Food", "Beauty"], max_sequences=3, num_negatives=20, candidate_seed=42, candidate_draws="reference"
    )
    clients = scenario.client_datamodules()
    for dm in clients.values():
        dm.setup()
    np.random.seed(42)  # the reference code, written the way it is written: one scalar draw at a time
    for domain in ("Food", "Beauty"):
        dm = clients[domain]
        for split in ("valid", "test"):
            for row in dm.datasets[split].tensors[1].tolist():
                target, negatives = row[0], row[1:]
                expected = []
                for _ in range(20):
                    draw = np.random.randint(0, dm.num_items)
                    while draw == target:
                        draw = np.random.randint(0, dm.num_items)
                    expected.append(draw)
                assert negatives == expected


def test_reference_candidates_reject_only_the_target():
    draws = reference_negatives([("A", "valid", np.array([1, 1, 1]), 3)], num_negatives=200)[("A", "valid")]
    assert set(np.unique(draws)) == {0, 2}  # with replacement over the two non-target items


# 10 and the layer ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("layers", "cap", "contrast"), [((), 1.0, 1.0), (("reference_sgh.yaml",), 0.01, 0.1)])
def test_reference_layer_sets_every_point(capsys, layers, cap, contrast):
    import yaml
    from conftest import ROOT

    args = ["fit", f"--config={ROOT / 'configs' / 'fkcb.yaml'}", f"--config={ROOT / 'configs/variants/reference.yaml'}"]
    args += [f"--config={ROOT / 'configs/variants' / layer}" for layer in layers]
    with pytest.raises(SystemExit):
        main([*args, "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    model = config["model"]["init_args"]
    assert model["kl_regularizer"] is True and model["anneal_cap"] == cap and model["contrastive_weight"] == contrast
    assert model["embedding_init"] == "standard_normal" and model["block_form"] == "sasrec"
    assert model["input_norm_eps"] == 1e-12
    assert model["loss_normalization"] == "all_positions" and model["graph_form"] == "dropout_bias"
    assert model["adam_betas"] == [0.9, 0.98] and model["gate_pooling"] == "batch"
    data = config["data"]["init_args"]
    assert data["training_order"] == "fixed" and data["candidate_draws"] == "reference"
    assert data["candidate_seed"] == 42
    assert data["eval_batch_size"] == data["batch_size"] == 256  # the batch the pooled gate sees at evaluation
    assert config["trainer"]["precision"] == "32-true"
