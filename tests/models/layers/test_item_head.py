import copy

import pytest
import torch
from torch import nn

from lightning_fed.datamodules import FKCB
from lightning_fed.models import FedSASRec
from lightning_fed.models.layers.item_head import ItemHead, adopt_linear_head_optimizer_states
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.protocols import client_datamodules_of


def test_it_is_nn_linear_stored_transposed():
    torch.manual_seed(3)
    linear = nn.Linear(6, 11)
    torch.manual_seed(3)
    head = ItemHead(6, 11)
    # the same draws in the same order: a run starts from the same weights as with an nn.Linear head
    assert torch.equal(head.weight, linear.weight) and torch.equal(head.bias, linear.bias)
    assert head.weight_t.shape == (6, 11) and head.weight_t.is_contiguous()
    assert head.weight.data_ptr() == head.weight_t.data_ptr()  # a view: no copy
    x = torch.randn(4, 6)
    torch.testing.assert_close(head(x), linear(x), rtol=0, atol=1e-6)
    with torch.no_grad():
        head.weight[2] = 7.0  # writes reach the parameter
    assert torch.equal(head.weight_t[:, 2], torch.full((6,), 7.0))


def test_a_state_dict_saved_from_an_nn_linear_head_loads():
    linear = nn.Linear(5, 9)
    head = ItemHead(5, 9)
    head.load_state_dict(linear.state_dict())
    assert torch.equal(head.weight, linear.weight) and torch.equal(head.bias, linear.bias)
    assert set(head.state_dict()) == {"weight_t", "bias"}
    again = ItemHead(5, 9)
    again.load_state_dict(head.state_dict())
    assert torch.equal(again.weight_t, head.weight_t)


@pytest.mark.parametrize("precision", ["fp64", "bf16"])
@pytest.mark.parametrize("chunk_size", [24, 1000])
def test_the_loss_gives_an_item_head_and_an_nn_linear_head_the_same_values_and_gradients(precision, chunk_size):
    # The loss reads every head transposed. Under bf16 autocast it copies the heads into bf16 (d, C) buffers: an
    # ItemHead's by a plain cast, an nn.Linear's by a product with the identity, which is exact, so both give
    # the same losses and gradients bit for bit. In fp64 it reads both in place, and the BLAS kernels for the two
    # layouts may add in different orders: equal to rounding. The ItemHead's gradient must come in the
    # parameter's own layout (autograd then keeps it without a copy).
    torch.manual_seed(5)
    dtype = torch.float64 if precision == "fp64" else torch.float32
    k, m, d, c = 2, 70, 16, 300
    hs = [torch.randn(m, d, dtype=dtype) for _ in range(k)]
    linears = [nn.Linear(d, c).to(dtype) for _ in range(k)]
    heads = [ItemHead(d, c).to(dtype) for _ in range(k)]
    for head, linear in zip(heads, linears):
        head.load_state_dict(linear.state_dict())
    targets = torch.randint(0, c, (m,))
    gate = torch.softmax(torch.randn(m, k, dtype=dtype), 1).requires_grad_()
    results = []
    for modules in (linears, heads):
        rows = [h.clone().requires_grad_() for h in hs]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            experts, _ = mixture_cross_entropy(
                rows, [h.weight for h in modules], [h.bias for h in modules], targets, chunk_size=chunk_size
            )
            _, fused = mixture_cross_entropy(
                [r.detach() for r in rows], [h.weight.detach() for h in modules],
                [h.bias.detach() for h in modules], targets, gate=gate, chunk_size=chunk_size,
            )  # fmt: skip
        (experts.sum() + fused).backward()
        grads = [*(r.grad for r in rows), *(p.grad for h in modules for p in h.parameters()), gate.grad.clone()]
        results.append((experts.detach(), fused.detach(), grads))
        gate.grad = None
    (e_lin, f_lin, g_lin), (e_head, f_head, g_head) = results
    tolerance = {"rtol": 0, "atol": 0} if precision == "bf16" else {"rtol": 1e-12, "atol": 1e-15}
    for a, b in zip([e_lin, f_lin, *g_lin], [e_head, f_head, *g_head]):
        b = b.t() if b.shape != a.shape else b  # weight_t's gradient against the Linear weight's
        torch.testing.assert_close(a, b, **tolerance)
    assert all(h.weight_t.grad.is_contiguous() for h in heads)


def _adam(params):
    return torch.optim.Adam(params, lr=0.1, fused=True)


def test_an_optimizer_state_saved_for_an_nn_linear_head_resumes_the_same_updates():
    # A checkpoint from before ItemHead holds the head's Adam moments as (C, d). Loaded into an ItemHead's
    # optimizer they must be transposed; then every later step equals the nn.Linear head's step exactly (Adam is
    # elementwise). Without the hook fused Adam would apply item i's moments to other weights.
    torch.manual_seed(7)
    linear = nn.Linear(4, 9)
    old = _adam(linear.parameters())
    gradients = [torch.randn(9, 4) for _ in range(3)]
    for grad in gradients[:2]:
        linear.weight.grad, linear.bias.grad = grad, grad[:, 0].clone()
        old.step()
    head = ItemHead(4, 9)
    head.load_state_dict(linear.state_dict())
    new = _adam(head.parameters())
    new.register_load_state_dict_post_hook(lambda optimizer: adopt_linear_head_optimizer_states(optimizer, [head]))
    new.load_state_dict(copy.deepcopy(old.state_dict()))  # as from a file: no tensor shared with `old`
    assert new.state[head.weight_t]["exp_avg"].shape == (4, 9)
    linear.weight.grad, linear.bias.grad = gradients[2], gradients[2][:, 0].clone()
    head.weight_t.grad, head.bias.grad = gradients[2].t().contiguous(), gradients[2][:, 0].clone()
    old.step()
    new.step()
    assert torch.equal(head.weight, linear.weight) and torch.equal(head.bias, linear.bias)
    new.load_state_dict(new.state_dict())  # a state saved in the new layout is left as it is
    assert new.state[head.weight_t]["exp_avg"].shape == (4, 9)


def test_a_sequential_models_optimizer_adopts_an_nn_linear_heads_saved_state():
    datamodule = client_datamodules_of(FKCB(domains=["Beauty"], max_sequences=16, num_negatives=9))["Beauty"]
    model = FedSASRec(hidden_dim=8, num_heads=2)
    model.build(datamodule)
    optimizer = model.configure_optimizers()
    head = model.expert.head
    saved = optimizer.state_dict()
    index = [id(p) for p in model.parameters() if p.requires_grad].index(id(head.weight_t))
    moments = torch.randn(head.num_classes, head.in_features)  # as an nn.Linear head's checkpoint holds them
    saved["state"] = {index: {"step": torch.tensor(1.0), "exp_avg": moments, "exp_avg_sq": moments.abs()}}
    optimizer.load_state_dict(saved)
    assert torch.equal(optimizer.state[head.weight_t]["exp_avg"], moments.t())
