import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_fed.datamodules import SyntheticMSMT
from lightning_fed.models import MMoE, PFMSMTrec
from lightning_fed.models.multitask.mmoe import MMoENet
from lightning_fed.models.multitask.ple import PLENet
from lightning_fed.models.multitask.proximal import proximal_term
from lightning_fed.models.multitask.shared_bottom import SharedBottomNet
from lightning_fed.models.multitask.template_linear import TemplateLinear
from lightning_fed.strategies import FedAvg, PersonalizedAggregation, Upload
from lightning_fed.strategies.conflict_averse import conflict_averse_direction
from lightning_fed.strategies.personalized_aggregation import personalized_weights

# --- parameter template ------------------------------------------------------------------------------------


def test_template_decomposition_sums_back_to_the_expert_weights():
    torch.manual_seed(0)
    layer = TemplateLinear(5, 3)
    x = torch.randn(4, 5)
    fresh = nn.Linear(5, 3)
    fresh.load_state_dict({"weight": layer.weight_global.data, "bias": layer.bias_global.data})
    assert torch.equal(layer(x), fresh(x))  # task and scenario parts start at zero
    with torch.no_grad():
        for part in (layer.weight_task, layer.weight_scenario, layer.bias_task, layer.bias_scenario):
            part.normal_()
    weight = layer.weight_global + layer.weight_task + layer.weight_scenario
    bias = layer.bias_global + layer.bias_task + layer.bias_scenario
    assert torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias)
    torch.testing.assert_close(layer(x), x @ weight.T + bias)


def test_mmoe_declares_template_parts_and_splits_experts_evenly_between_tasks():
    net = MMoENet(
        [10, 7], 3, num_tasks=2, embedding_dim=4, num_experts=4, expert_dims=[8], tower_dims=[4], template=True
    )
    groups = net.share_groups(fedbn=True)
    assert net.expert_task == [0, 0, 1, 1]
    assert groups["experts.0.layers.0.weight_global"] == "global"
    assert groups["experts.1.layers.0.weight_task"] == "task0"
    assert groups["experts.3.layers.0.bias_task"] == "task1"
    assert groups["experts.2.layers.0.weight_scenario"] == "scenario"
    assert groups["gates.1.weight"] == "gate1" and groups["towers.0.1.weight"] == "tower0"
    assert not any(k.startswith("embedding") for k in groups)
    assert not any("layers.1." in k for k in groups)  # the BatchNorm of each MLP block: local under FedBN
    with_bn = net.share_groups(fedbn=False)
    bn_keys = {k for k, g in with_bn.items() if g == "bn"}
    assert "experts.0.layers.1.running_mean" in bn_keys and "towers.1.0.layers.1.num_batches_tracked" in bn_keys
    assert set(with_bn) - bn_keys == set(groups)
    plain = MMoENet([10, 7], 3, 2, 4, 4, [8], [4], template=False).share_groups(fedbn=True)
    assert plain["experts.0.layers.0.weight"] == "expert"


def test_all_nets_give_one_logit_per_task():
    categorical, numerical = torch.randint(5, (6, 2)), torch.randn(6, 3)
    for net in (
        MMoENet([5, 5], 3, 3, 4, 4, [8], [4]),
        SharedBottomNet([5, 5], 3, 3, 4, [8], [4]),
        PLENet([5, 5], 3, 3, 4, num_levels=2, expert_dims=[8], tower_dims=[4]),
    ):
        assert net(categorical, numerical).shape == (6, 3)


# --- conflict coordination ----------------------------------------------------------------------------------


def test_conflict_coordination_with_c_zero_is_plain_averaging():
    updates = torch.randn(5, 40, dtype=torch.float64)
    assert torch.equal(conflict_averse_direction(updates, 0.0), updates.mean(0))


def test_conflict_coordination_of_two_opposed_updates_matches_brute_force_and_helps_the_worst_client():
    g = torch.tensor([[1.0, 0.1], [-0.8, 0.1]], dtype=torch.float64)  # g1 . g2 < 0
    c = 0.5
    g0 = g.mean(0)
    # first principles: F(w) = g_w.g0 + c |g0| |g_w| on a fine grid of the 2-simplex
    w = torch.linspace(0, 1, 200001, dtype=torch.float64)[:, None]
    g_w = w * g[0] + (1 - w) * g[1]
    objective = g_w @ g0 + c * g0.norm() * g_w.norm(dim=1)
    best = g_w[objective.argmin()]
    expected = g0 + c * g0.norm() / best.norm() * best
    d = conflict_averse_direction(g, c, steps=2000)
    torch.testing.assert_close(d, expected, atol=1e-4, rtol=0)
    assert (g @ d).min() > (g @ g0).min()  # the worst-off client improves more than under averaging
    assert (d - g0).norm() <= c * g0.norm() + 1e-9


# --- personalized aggregation -------------------------------------------------------------------------------


def test_personalized_weights_by_hand():
    vectors = torch.tensor([[0.0], [1.0], [3.0]])
    alpha = personalized_weights(vectors, sigma=1.0)
    torch.testing.assert_close(alpha.sum(1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(alpha[0], torch.softmax(torch.tensor([0.0, -1.0, -9.0], dtype=torch.float64), 0))
    # default sigma: the median of the squared distances {1, 9, 4, 1, 9, 4} (torch takes the lower middle: 4)
    torch.testing.assert_close(
        personalized_weights(vectors)[2], torch.softmax(torch.tensor([-9.0, -4.0, 0.0], dtype=torch.float64) / 4, 0)
    )


def test_personalized_aggregation_mixes_experts_and_towers_and_averages_the_rest():
    states = {
        "a": {"global/w": torch.tensor([0.0, 0.0]), "scenario/e": torch.tensor([0.0]), "tower0/t": torch.tensor([1.0])},
        "b": {"global/w": torch.tensor([2.0, 4.0]), "scenario/e": torch.tensor([1.0]), "tower0/t": torch.tensor([3.0])},
        "c": {"global/w": torch.tensor([4.0, 2.0]), "scenario/e": torch.tensor([3.0]), "tower0/t": torch.tensor([8.0])},
    }
    uploads = {k: Upload(v, num_examples=1) for k, v in states.items()}
    strategy = PersonalizedAggregation(conflict_c=0.0, sigma=1.0)
    store = {}
    strategy.initialize(store, {k: torch.zeros_like(v) for k, v in states["a"].items()})
    strategy.aggregate(store, uploads)
    alpha = personalized_weights(torch.tensor([[0.0], [1.0], [3.0]]), sigma=1.0)
    torch.testing.assert_close(store["global"]["global/w"], torch.tensor([2.0, 2.0]))
    for i, client in enumerate("abc"):
        assert sum(strategy.alpha[client].values()) == pytest.approx(1.0)
        expected_e = (alpha[i] * torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)).sum().float()
        expected_t = (alpha[i] * torch.tensor([1.0, 3.0, 8.0], dtype=torch.float64)).sum().float()
        torch.testing.assert_close(store[client]["scenario/e"], expected_e.reshape(1))
        torch.testing.assert_close(store[client]["tower0/t"], expected_t.reshape(1))
        assert strategy.payload(client, store)["personal"] is store[client]
    off = PersonalizedAggregation(conflict_c=0.0, personalized_experts=False, personalized_towers=False)
    store = {}
    off.initialize(store, {k: torch.zeros_like(v) for k, v in states["a"].items()})
    off.aggregate(store, uploads)
    torch.testing.assert_close(store["b"]["scenario/e"], torch.tensor([4.0 / 3]))
    torch.testing.assert_close(store["a"]["tower0/t"], torch.tensor([4.0]))


# --- regularizer --------------------------------------------------------------------------------------------


def test_regularizer_value_and_gradient_by_hand():
    theta = torch.tensor([1.0, 2.0], requires_grad=True)
    other = torch.tensor([[1.0]], requires_grad=True)
    value = proximal_term({"a": theta, "b": other}, {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([[3.0]])}, 0.5)
    assert value.item() == pytest.approx(0.25 * (1 + 4 + 4))
    value.backward()
    torch.testing.assert_close(theta.grad, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(other.grad, torch.tensor([[-1.0]]))
    assert proximal_term({"a": theta}, {"a": torch.zeros(2)}, 0.0).item() == 0.0


# --- FedBN and what leaves a client -------------------------------------------------------------------------


def _clients(model_cls, **kwargs):
    data = SyntheticMSMT(rows=[600, 400], seed=1, batch_size=128)
    dms = data.client_datamodules()
    modules = {}
    for name, dm in dms.items():
        module = model_cls(num_experts=2, expert_dims=[8], tower_dims=[4], **kwargs)
        module.build(dm)
        modules[name] = module
    return dms, modules


def _train_a_little(module, dm):
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    module.train()
    for categorical, numerical, labels in dm.train_dataloader():
        loss = F.binary_cross_entropy_with_logits(module(categorical, numerical), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("fedbn", [True, False])
def test_fedbn_keeps_batchnorm_local(fedbn):
    torch.manual_seed(0)
    dms, modules = _clients(MMoE, fedbn=fedbn)
    strategy, store = FedAvg(), {}
    strategy.initialize(store, modules["S0"].shared_state())
    for name, module in modules.items():
        _train_a_little(module, dms[name])
    before = {n: {k: v.clone() for k, v in m.net.state_dict().items()} for n, m in modules.items()}
    strategy.aggregate(store, {n: Upload(m.shared_state(), dms[n].num_train_examples) for n, m in modules.items()})
    for name, module in modules.items():
        module.load_shared_state(strategy.payload(name, store))
    key = "experts.0.layers.1.running_mean"
    s0, s1 = (modules[n].net.state_dict()[key] for n in ("S0", "S1"))
    if fedbn:
        assert torch.equal(s0, before["S0"][key]) and torch.equal(s1, before["S1"][key]) and not torch.equal(s0, s1)
        assert not any("layers.1" in k for k in modules["S0"].shared_state())
    else:
        assert torch.equal(s0, s1)
    assert torch.equal(modules["S0"].net.gates[0].weight, modules["S1"].net.gates[0].weight)  # averaged either way


def test_pf_msmtrec_uploads_no_batchnorm_no_embedding_and_no_data():
    dms, modules = _clients(PFMSMTrec)
    module, dm = modules["S0"], dms["S0"]
    upload = module.shared_state()
    names = {k.split("/", 1)[1] for k in upload}
    params = dict(module.net.named_parameters())
    assert names and names <= set(params)  # parameters only: no buffer (BatchNorm statistics), no data
    assert not any(n.startswith("embedding") or ".layers.1." in n for n in names)
    bn = [n for n, m in module.net.named_modules() if isinstance(m, nn.BatchNorm1d)]
    assert bn and not any(n.startswith(tuple(f"{b}." for b in bn)) for n in names)
    rows = dm.num_train_examples
    assert all(rows not in v.shape for v in upload.values())
    for key, value in upload.items():
        assert torch.equal(value, params[key.split("/", 1)[1]].detach())


def test_received_state_feeds_the_regularizer():
    dms, modules = _clients(PFMSMTrec)
    module = modules["S0"]
    payload = {"global": {k: v + 1.0 for k, v in module.shared_state().items()}}
    module.load_shared_state(payload)
    received = {k.split("/", 1)[1]: v for k, v in payload["global"].items()}
    assert set(module.received) == set(received)
    for name, value in module.received.items():
        torch.testing.assert_close(value, received[name])


# --- synthetic data: what is planted ------------------------------------------------------------------------


@pytest.mark.parametrize(("conflict", "sign"), [(0.0, 1.0), (1.0, -1.0)])
def test_synthetic_task_conflict_is_planted(conflict, sign):
    data = SyntheticMSMT(rows=[500, 300], shared_weight=0.0, scenario_weight=0.0, task_conflict=conflict, seed=3)
    bias = torch.tensor([-0.5, -1.5])
    for scenario in ("S0", "S1"):
        logits = data.true_logits[scenario]["train"] - bias
        torch.testing.assert_close(logits[:, 1], sign * logits[:, 0], atol=1e-5, rtol=1e-5)
    dirs = data.planted["task_directions"]
    assert float(dirs[0] @ dirs[1]) == pytest.approx(math.cos(math.pi * conflict), abs=1e-6)


def test_synthetic_data_is_seeded_and_labels_follow_the_planted_logits():
    a, b = SyntheticMSMT(rows=[4000, 300], seed=5), SyntheticMSMT(rows=[4000, 300], seed=5)
    ta, tb = a.client_datamodules()["S0"].splits["train"], b.client_datamodules()["S0"].splits["train"]
    assert torch.equal(ta.categorical, tb.categorical) and torch.equal(ta.labels, tb.labels)
    p = torch.sigmoid(a.true_logits["S0"]["train"])
    n = len(p)
    for t in range(2):  # the label rate is within 4 standard errors of the planted mean probability
        assert abs(ta.labels[:, t].mean() - p[:, t].mean()) < 4 * math.sqrt(0.25 / n)
    # scenario-specific signal: the two scenarios' own directions differ, and the feature shift is real
    assert not torch.allclose(a.planted["w_scenario"][0], a.planted["w_scenario"][1])
    s1 = a.client_datamodules()["S1"].splits["train"].numerical
    assert (ta.numerical.mean(0) - s1.mean(0)).abs().max() > 0.5


def test_a_personalized_mix_overrides_the_aggregate_whatever_the_payload_order():
    from lightning_fed.strategies.base import GLOBAL, PERSONAL

    _, modules = _clients(PFMSMTrec)
    module = modules["S0"]
    shared = module.shared_state()
    personal_key = next(k for k in shared if k.startswith("scenario/"))
    aggregate = {k: torch.zeros_like(v) for k, v in shared.items()}
    mix = {personal_key: torch.ones_like(shared[personal_key])}
    module.load_shared_state({PERSONAL: mix, GLOBAL: aggregate})  # the personal mix first in the dict
    loaded = module.shared_state()
    assert torch.equal(loaded[personal_key], torch.ones_like(shared[personal_key]))
    assert all(torch.equal(v, torch.zeros_like(v)) for k, v in loaded.items() if k != personal_key)
    with pytest.raises(ValueError, match=r"not \['S1'\]"):
        module.load_shared_state({"S1": aggregate})


# --- a pooled (centralized) client is scored per scenario ---------------------------------------------------


def test_a_pooled_client_is_scored_per_scenario_then_averaged_not_over_the_pooled_rows():
    from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskDataModule, MultiTaskTable

    # S0: both positives above both negatives (AUC 1); S1: the positive below the negative (AUC 0). The mean over
    # the scenarios is 0.5; the AUC of the six pooled rows would be 5/9 (pairs across scenarios count there).
    scenario = torch.tensor([0, 0, 0, 0, 1, 1])
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.0], [1.0]])
    scores = torch.tensor([0.9, 0.8, 0.1, 0.2, 0.9, 0.1])
    table = MultiTaskTable(torch.stack([torch.zeros(6, dtype=torch.long), scenario], 1), torch.zeros(6, 1), labels)
    dm = MultiTaskDataModule(
        "pooled", {s: table for s in ("train", "valid", "test")}, [1, 2], ["click"], scenario_names=["S0", "S1"]
    )
    module = MMoE(num_experts=1, expert_dims=[2], tower_dims=[2])
    module.build(dm)
    logits = torch.logit(scores)[:, None]
    module.forward = lambda categorical, numerical: logits[: len(categorical)]
    logged = {}
    module.log_dict = lambda values: logged.update({k: float(v) for k, v in values.items()})
    module._eval_step((table.categorical, table.numerical, labels), "val")
    module._log_epoch("val")

    def bce(p, y):
        return -math.log(p) if y else -math.log(1 - p)

    s0 = sum(bce(p, y) for p, y in zip([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])) / 4
    s1 = sum(bce(p, y) for p, y in zip([0.9, 0.1], [0, 1])) / 2
    assert logged["val/AUC_click@S0"] == 1.0 and logged["val/AUC_click@S1"] == 0.0
    assert logged["val/AUC_click"] == logged["val/AUC"] == 0.5
    assert logged["val/logloss_click@S0"] == pytest.approx(s0, rel=1e-5)
    assert logged["val/logloss_click@S1"] == pytest.approx(s1, rel=1e-5)
    assert logged["val/logloss"] == pytest.approx((s0 + s1) / 2, rel=1e-5)
    assert set(module.validation_metrics) == {k.removeprefix("val/") for k in logged}
