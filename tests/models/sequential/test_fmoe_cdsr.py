import pytest
import torch

from lightning_fed.datamodules import FKCB
from lightning_fed.models import FedSASRec, FMoECDSR
from lightning_fed.protocols import FederatedModule


@pytest.fixture(scope="module")
def food():
    scenario = FKCB(domains=["Food", "Beauty", "Clothing"], max_sequences=64, batch_size=16, num_negatives=99)
    dm = scenario.client_datamodules()["Food"]
    dm.setup()
    return dm


def build(dm, **kwargs):
    torch.manual_seed(0)
    model = FMoECDSR(hidden_dim=16, num_heads=2, dropout=0.1, **kwargs)
    model.build(dm)
    return model


def one_step(model, batch):
    optimizer = model.configure_optimizers()
    model.train()
    optimizer.zero_grad()
    model.backward_step(batch)
    optimizer.step()


def test_a_step_leaves_global_encoders_bit_identical_and_trains_their_isolation_parameters(food):
    model = build(food)
    assert model.expert_domains == ["Food", "Beauty", "Clothing"] and model.net.local_index == 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_step(model, next(iter(food.train_dataloader())))
    after = model.state_dict()
    for j in (1, 2):
        prefix = f"net.experts.{j}."
        encoder = [k for k in before if k.startswith(prefix + "encoder.")]
        isolation = [k for k in before if k.startswith(prefix) and not k.startswith(prefix + "encoder.")]
        assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
        assert all(not torch.equal(before[k], after[k]) for k in isolation if "position" not in k)
    local_encoder = [k for k in before if k.startswith("net.experts.0.encoder.")]
    assert any(not torch.equal(before[k], after[k]) for k in local_encoder)
    optimizer_params = {id(p) for g in model.configure_optimizers().param_groups for p in g["params"]}
    assert not any(id(p) in optimizer_params for p in model.net.experts[1].encoder.parameters())


def test_without_freeze_the_downloaded_encoders_train(food):
    model = build(food, freeze_global_experts=False)
    before = {k: v.clone() for k, v in model.net.experts[1].encoder.state_dict().items()}
    one_step(model, next(iter(food.train_dataloader())))
    assert any(not torch.equal(v, model.net.experts[1].encoder.state_dict()[k]) for k, v in before.items())


def test_no_gradient_flows_from_the_gate_into_the_experts(food):
    model = build(food)
    model.train()
    inputs, _ = next(iter(food.train_dataloader()))
    outputs = model._encode_all(inputs)
    gate = model.net.gate_weights(outputs)
    torch.testing.assert_close(gate.sum(-1), torch.ones(gate.shape[:-1]))
    gate[..., 1].sum().backward()
    expert_grads = [p.grad for p in model.net.experts.parameters() if p.grad is not None]
    assert not expert_grads
    assert any(p.grad is not None for p in model.net.gate.parameters())


def test_upload_is_exactly_the_local_encoder(food):
    model = build(food)
    assert isinstance(model, FederatedModule)
    payload = model.shared_state()
    encoder_state = model.net.local_expert.encoder.state_dict()
    assert set(payload) == {f"encoder.{k}" for k in encoder_state}
    for name, value in encoder_state.items():
        assert torch.equal(payload[f"encoder.{name}"], value)
        assert payload[f"encoder.{name}"].data_ptr() != value.data_ptr()  # a copy, not a view
    forbidden = ("embedding", "head", "gate", "input_norm", "item_graph")
    assert not any(word in name for name in payload for word in forbidden)
    n_plus_1 = food.num_items + 1
    assert all(n_plus_1 not in t.shape and food.num_items not in t.shape for t in payload.values())
    assert all(t.dtype.is_floating_point for t in payload.values())


def test_downloads_go_to_the_matching_expert_and_the_own_domain_is_ignored(food):
    model = build(food)
    donor = build(food)
    for p in donor.net.local_expert.encoder.parameters():
        p.data.normal_()
    state = donor.shared_state()
    model.load_shared_state({"Clothing": state, "Food": {k: torch.zeros_like(v) for k, v in state.items()}})
    for k, v in model.net.experts[2].encoder.state_dict().items():
        assert torch.equal(v, state[f"encoder.{k}"])
    assert not all(torch.equal(v, torch.zeros_like(v)) for v in model.net.local_expert.encoder.state_dict().values())
    with pytest.raises(ValueError, match="not a domain of this scenario"):
        model.load_shared_state({"Kitchen": state})


@pytest.mark.parametrize(
    ("kwargs", "experts", "has_gate"),
    [({}, 3, True), ({"experts": "local"}, 1, False), ({"gate": "uniform"}, 3, False)],
)
def test_variants_change_the_model(food, kwargs, experts, has_gate):
    model = build(food, **kwargs)
    assert len(model.net.experts) == experts
    assert (model.net.gate is not None) == has_gate
    model.eval()
    inputs, candidates = next(iter(food.val_dataloader()))
    with torch.no_grad():
        scores = model.score_candidates(inputs, candidates)
    assert scores.shape == candidates.shape and torch.isfinite(scores).all()


def test_uniform_gate_scores_are_the_mean_of_the_experts(food):
    model = build(food, gate="uniform").eval()
    inputs, candidates = next(iter(food.val_dataloader()))
    with torch.no_grad():
        fused = model.score_candidates(inputs, candidates)
        outputs = model._encode_all(inputs)
        each = [e.candidate_scores(z[:, -1], candidates) for e, z in zip(model.net.experts, outputs)]
    torch.testing.assert_close(fused, sum(each) / 3)


def test_batch_gate_pooling_makes_a_sample_depend_on_its_batch(food):
    inputs, _ = next(iter(food.train_dataloader()))
    for pooling, depends in (("sample", False), ("batch", True)):
        model = build(food, gate_pooling=pooling).eval()
        with torch.no_grad():
            outputs = model._encode_all(inputs)
            alone = model.net.gate_weights([z[:1] for z in outputs])
            together = model.net.gate_weights(outputs)[:1]
        assert torch.allclose(alone, together, atol=1e-6) != depends


def test_full_ranking_and_kl_regularizer_options_run(food):
    model = build(food, ranking="full", kl_regularizer=True, total_annealing_step=2)
    one_step(model, next(iter(food.train_dataloader())))
    assert model.annealing_step.item() == 1
    model.eval()
    inputs, candidates = next(iter(food.val_dataloader()))
    with torch.no_grad():
        assert model.score_candidates(inputs, None).shape == (len(inputs), food.num_items)
    model._eval_step((inputs, candidates), model.val_metrics)
    assert 0 < model.val_metrics.compute()["MRR"] <= 1


def test_fedsasrec_shares_only_its_encoder(food):
    torch.manual_seed(0)
    model = FedSASRec(hidden_dim=16, num_heads=2)
    model.build(food)
    payload = model.shared_state()
    assert set(payload) == {f"encoder.{k}" for k in model.expert.encoder.state_dict()}
    with pytest.raises(ValueError, match="one averaged encoder"):
        model.load_shared_state({"a": payload, "b": payload})


@pytest.mark.parametrize(
    ("mode", "fusion_logits", "chunks"),
    [
        ("per_expert", "keep", {}),
        ("per_expert", "recompute", {}),
        ("joint", "keep", {}),
        # the experts' losses and L_fuse in chunks of other sizes, neither a multiple of the padded matmul rows
        ("per_expert", "keep", {"expert_chunk_size": 40, "loss_chunk_size": 24}),
        ("per_expert", "recompute", {"expert_chunk_size": 24, "loss_chunk_size": 40}),
    ],
)
def test_backward_modes_equal_one_backward_of_the_total_loss(food, mode, fusion_logits, chunks):
    from lightning_fed.datamodules import IGNORE_TARGET
    from lightning_fed.models.layers.mixture_cross_entropy import kept_logit_rows, mixture_cross_entropy
    from lightning_fed.models.layers.workspace import WORKSPACE
    from lightning_fed.models.sequential.contrastive import nt_xent, shuffle_items

    model = build(food, backward=mode, fusion_logits=fusion_logits, **chunks)
    model.hparams.dropout = 0.0
    for module in model.modules():
        if hasattr(module, "p"):
            module.p = 0.0
    model.train()
    batch = next(iter(food.train_dataloader()))
    WORKSPACE.clear()
    torch.manual_seed(5)
    total = model.backward_step(batch)
    split = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    if fusion_logits == "keep" and mode == "per_expert":  # the kept logits hold the experts' chunks' padded rows
        m, classes = int((batch[1] != IGNORE_TARGET).sum()), model.net.experts[0].head.weight.size(0)
        kept = WORKSPACE.buffers["kept0", torch.float32, torch.device("cpu")]
        assert kept.numel() == kept_logit_rows(m, model.hparams.expert_chunk_size) * classes
    model.zero_grad()

    inputs, targets = batch
    rows = targets != IGNORE_TARGET
    torch.manual_seed(5)
    augmented = shuffle_items(inputs, model.pad_id)
    pairs = [model._encode(e, inputs, augmented) for e in model.net.experts]
    heads = [e.head for e in model.net.experts]
    next_item, fusion = mixture_cross_entropy(
        [z[rows] for z, _ in pairs], [h.weight for h in heads], [h.bias for h in heads], targets[rows],
        gate=model.net.gate_weights([z for z, _ in pairs], rows),
    )  # fmt: skip
    contrast = sum(nt_xent(z[:, -1], v[:, -1]) for z, v in pairs)
    joint = next_item.sum() + contrast + fusion
    joint.backward()
    torch.testing.assert_close(total, joint.detach())
    assert set(split) == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(split[name], p.grad, rtol=1e-4, atol=1e-6)


def test_eval_experts_keeps_only_the_listed_experts_in_the_fusion(food):
    full = build(food).eval()
    only_clothing = build(food, eval_experts=["Clothing"]).eval()
    without_beauty = build(food, eval_experts=["Food", "Clothing"]).eval()
    inputs, candidates = next(iter(food.val_dataloader()))
    with torch.no_grad():
        last = [z[:, -1] for z in full._encode_all(inputs)]
        each = [e.candidate_scores(z, candidates) for e, z in zip(full.net.experts, last)]
        gate = full.net.gate_weights(last)
        torch.testing.assert_close(only_clothing.score_candidates(inputs, candidates), each[2])
        renormalized = (gate[:, :1] * each[0] + gate[:, 2:3] * each[2]) / (gate[:, 0:1] + gate[:, 2:3])
        torch.testing.assert_close(without_beauty.score_candidates(inputs, candidates), renormalized)
    with pytest.raises(ValueError, match="eval_experts"):
        build(food, eval_experts=["Kitchen"])
