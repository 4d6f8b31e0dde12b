import math

import pytest
import torch
import torch.nn.functional as F

from lightning_fed.models.layers.mixture_cross_entropy import (
    kept_logit_buffers,
    kept_logit_rows,
    mixture_cross_entropy,
    mixture_loss_from_logits,
)


def naive(hs, ws, bs, targets, gate):
    logits = [h @ w.t() + b for h, w, b in zip(hs, ws, bs)]
    experts = torch.stack([F.cross_entropy(y, targets) for y in logits])
    fused = F.cross_entropy(sum(gate[:, j : j + 1] * y.detach() for j, y in enumerate(logits)), targets)
    return experts, fused


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_values_and_gradients_equal_the_full_logits_computation(chunk_size):
    torch.manual_seed(0)
    m, d, c, k = 23, 6, 40, 3
    hs = [torch.randn(m, d, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    ws = [torch.randn(c, d, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    bs = [torch.randn(c, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    gate = torch.softmax(torch.randn(m, k, dtype=torch.float64), 1).requires_grad_()
    targets = torch.randint(0, c, (m,))
    experts, fused = mixture_cross_entropy(hs, ws, bs, targets, gate=gate, chunk_size=chunk_size)
    ref_experts, ref_fused = naive(hs, ws, bs, targets, gate)
    torch.testing.assert_close(experts, ref_experts)
    torch.testing.assert_close(fused, ref_fused)
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    params = [*hs, *ws, *bs, gate]
    got = torch.autograd.grad((experts * weights).sum() + 3 * fused, params)
    want = torch.autograd.grad((ref_experts * weights).sum() + 3 * ref_fused, params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_the_mixture_loss_reaches_only_the_gate():
    torch.manual_seed(1)
    hs = [torch.randn(5, 4, requires_grad=True) for _ in range(2)]
    ws = [torch.randn(9, 4, requires_grad=True) for _ in range(2)]
    bs = [torch.zeros(9, requires_grad=True) for _ in range(2)]
    gate = torch.full((5, 2), 0.5, requires_grad=True)
    _, fused = mixture_cross_entropy(hs, ws, bs, torch.arange(5), gate=gate)
    grads = torch.autograd.grad(fused, [*hs, *ws, *bs, gate], allow_unused=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads[:-1])
    assert torch.count_nonzero(grads[-1]) > 0


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(2)
    hs = [torch.randn(64, 32, requires_grad=True) for _ in range(2)]
    ws = [(0.1 * torch.randn(500, 32)).requires_grad_() for _ in range(2)]
    bs = [torch.zeros(500, requires_grad=True) for _ in range(2)]
    gate = torch.softmax(torch.randn(64, 2), 1)
    targets = torch.randint(0, 500, (64,))
    exact, _ = mixture_cross_entropy(hs, ws, bs, targets, gate=gate)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = mixture_cross_entropy(hs, ws, bs, targets, gate=gate)
    torch.testing.assert_close(low, exact, rtol=2e-2, atol=2e-2)


def test_a_gate_only_call_skips_the_expert_losses():
    torch.manual_seed(3)
    hs = [torch.randn(9, 4) for _ in range(2)]
    ws = [torch.randn(7, 4) for _ in range(2)]
    bs = [torch.randn(7) for _ in range(2)]
    gate = torch.softmax(torch.randn(9, 2), 1).requires_grad_()
    targets = torch.randint(0, 7, (9,))
    experts, fused = mixture_cross_entropy(hs, ws, bs, targets, gate=gate, chunk_size=4)
    assert torch.isnan(experts).all()
    _, ref_fused = naive(hs, ws, bs, targets, gate)
    torch.testing.assert_close(fused, ref_fused)
    torch.testing.assert_close(torch.autograd.grad(fused, gate)[0], torch.autograd.grad(ref_fused, gate)[0])


def test_an_extreme_logit_gap_keeps_the_exact_loss_and_gradient():
    # the target's logit is 200 below the others: p_t underflows in fp32, the loss is still ~200 + log(C - 1)
    h = [torch.tensor([[1.0], [1.0]], requires_grad=True)]
    w = [torch.tensor([[-100.0], [100.0], [100.0]], requires_grad=True)]
    b = [torch.zeros(3, requires_grad=True)]
    targets = torch.tensor([0, 1])
    (loss,), _ = mixture_cross_entropy(h, w, b, targets)
    logits = h[0] @ w[0].t() + b[0]
    want = F.cross_entropy(logits, targets)
    torch.testing.assert_close(loss, want)
    assert abs(loss.item() - (200 + math.log(2) + math.log(2)) / 2) < 1e-4  # row 1: 200 + log 2; row 2: log 2
    torch.testing.assert_close(torch.autograd.grad(loss, w)[0], torch.autograd.grad(want, w)[0])


def test_a_bf16_expert_call_is_the_cross_entropy_of_its_bf16_logits():
    # Under bf16 autocast an expert call (no gate) takes its softmax from the bf16 logits, with bf16 output: the
    # loss and gradients are those of the fp32 cross-entropy of the same bf16 logits, to bf16 rounding.
    torch.manual_seed(4)
    m, d, c = 96, 32, 700
    h = torch.randn(m, d, requires_grad=True)
    w = (0.3 * torch.randn(c, d)).requires_grad_()
    b = (0.1 * torch.randn(c)).requires_grad_()
    targets = torch.randint(0, c, (m,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (loss,), _ = mixture_cross_entropy([h], [w], [b], targets, chunk_size=40)
    got = torch.autograd.grad(loss, [h, w, b])
    logits = torch.addmm(b.bfloat16(), h.bfloat16(), w.bfloat16().t()).float()
    want_loss = F.cross_entropy(logits, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, want_loss, rtol=2e-3, atol=0)
    dy = (torch.softmax(logits, 1) - F.one_hot(targets, c)) / m  # d loss / d logits
    want = (dy @ w, dy.t() @ h, dy.sum(0))
    for g, ref in zip(got, want):
        torch.testing.assert_close(g, ref.detach(), rtol=2e-2, atol=2e-2 * ref.abs().max().item())


def test_a_bf16_expert_call_keeps_the_exact_loss_at_an_extreme_logit_gap():
    h = [torch.tensor([[1.0], [1.0]], requires_grad=True)]
    w = [torch.tensor([[-100.0], [100.0], [100.0]], requires_grad=True)]  # exact in bf16
    b = [torch.zeros(3, requires_grad=True)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (loss,), _ = mixture_cross_entropy(h, w, b, torch.tensor([0, 1]))
    assert abs(loss.item() - (200 + math.log(2) + math.log(2)) / 2) < 1e-4


def test_a_bf16_gate_only_call_gives_the_mixture_loss_and_gate_gradient():
    # The gate-only call (FMoE-CDSR's L_fuse with detached experts) runs as stacked bf16 matmuls under autocast:
    # y_hat = [g_1 h_1 | g_2 h_2 | g] [W_1 | W_2 | B^T]^T and dL/dg_j = h_j . (dy W_j) + dy . b_j.
    torch.manual_seed(5)
    m, d, c, k = 70, 16, 300, 3
    hs = [torch.randn(m, d) for _ in range(k)]
    ws = [0.2 * torch.randn(c, d) for _ in range(k)]
    bs = [0.5 * torch.randn(c) for _ in range(k)]
    gate = torch.softmax(torch.randn(m, k), 1).requires_grad_()
    targets = torch.randint(0, c, (m,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        experts, fused = mixture_cross_entropy(hs, ws, bs, targets, gate=gate, chunk_size=32)
    assert torch.isnan(experts).all()
    grad = torch.autograd.grad(fused, gate)[0]
    wide = [[x.double() for x in group] for group in (hs, ws, bs)]
    exact_gate = gate.detach().double().requires_grad_()
    _, want = naive(*wide, targets, exact_gate)
    want_grad = torch.autograd.grad(want, exact_gate)[0]
    torch.testing.assert_close(fused.double(), want, rtol=1e-2, atol=0)
    torch.testing.assert_close(grad.double(), want_grad, rtol=0, atol=3e-2 * want_grad.abs().max().item())


def test_the_workspace_serves_both_inference_mode_and_training():
    from lightning_fed.models.layers.workspace import _Workspace

    workspace = _Workspace()
    with torch.inference_mode():
        first = workspace.get("scores", 3, 4, torch.float32, torch.device("cpu"))
        torch.mm(torch.ones(3, 2), torch.ones(2, 4), out=first)
    again = workspace.get("scores", 2, 4, torch.float32, torch.device("cpu"))
    torch.mm(torch.ones(2, 2), torch.ones(2, 4), out=again)  # an inference tensor would refuse this
    assert not again.is_inference() and torch.equal(again, torch.full((2, 4), 2.0))


@pytest.mark.parametrize("precision", ["fp64", "bf16 expert", "bf16 gate-only"])
def test_padded_chunk_rows_never_leak_stale_workspace_rows(precision):
    # Each chunk's matmuls run on a multiple of 64 rows; rows beyond the chunk's own must not count. Poisoning
    # every reused buffer with NaN between two identical calls must leave the losses and gradients unchanged
    # (a padded dy or h row that was not zeroed would turn a head gradient into NaN).
    from lightning_fed.models.layers.workspace import WORKSPACE

    torch.manual_seed(6)
    m, d, c, k = 70, 8, 50, 2  # chunks of 32, 32 and 6 rows, each padded to 64
    dtype = torch.float64 if precision == "fp64" else torch.float32
    hs = [torch.randn(m, d, dtype=dtype, requires_grad=precision != "bf16 gate-only") for _ in range(k)]
    ws = [(0.3 * torch.randn(c, d, dtype=dtype)).requires_grad_(precision != "bf16 gate-only") for _ in range(k)]
    bs = [torch.randn(c, dtype=dtype, requires_grad=precision != "bf16 gate-only") for _ in range(k)]
    gate = torch.softmax(torch.randn(m, k, dtype=dtype), 1).requires_grad_()
    targets = torch.randint(0, c, (m,))
    params = [x for x in [*hs, *ws, *bs, gate] if x.requires_grad]

    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp64"):
            if precision == "bf16 expert":
                experts, _ = mixture_cross_entropy(hs[:1], ws[:1], bs[:1], targets, chunk_size=32)
                return [experts, *torch.autograd.grad(experts.sum(), [hs[0], ws[0], bs[0]])]
            experts, fused = mixture_cross_entropy(hs, ws, bs, targets, gate=gate, chunk_size=32)
        loss = fused if precision == "bf16 gate-only" else experts.sum() + fused
        return [fused, *torch.autograd.grad(loss, params)]

    first = call()
    for buffer in WORKSPACE.buffers.values():
        buffer.fill_(float("nan"))
    second = call()
    for a, b in zip(first, second):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("rows", "chunk_size", "expected"),
    # the last chunk's matmul rows are rounded up to a multiple of 64, at most the chunk's own padded size
    [
        (1900, 512, 3 * 512 + 384),
        (100, 512, 128),
        (1000, 500, 500 + 512),
        (64, 512, 64),
        (513, 512, 512 + 64),
        (0, 512, 0),
    ],
)
def test_kept_logit_rows_cover_the_last_chunks_padded_matmul(rows, chunk_size, expected):
    assert kept_logit_rows(rows, chunk_size) == expected


@pytest.mark.parametrize(
    ("chunk_size", "fusion_chunk_size"), [(1, 1), (7, 7), (16, 16), (1000, 1000), (1000, 7), (7, 16), (5, 1000)]
)
def test_the_mixture_from_kept_logits_equals_the_gate_only_call(chunk_size, fusion_chunk_size):
    # exact in fp64: the expert calls leave y_j = h_j W_j^T + b_j, and L_fuse with its gate gradient follows from them,
    # also in chunks of another size (FMoE-CDSR's expert_chunk_size and loss_chunk_size)
    torch.manual_seed(6)
    m, d, c, k = 23, 6, 40, 3
    hs = [torch.randn(m, d, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    ws = [torch.randn(c, d, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    bs = [torch.randn(c, dtype=torch.float64, requires_grad=True) for _ in range(k)]
    gate = torch.softmax(torch.randn(m, k, dtype=torch.float64), 1).requires_grad_()
    targets = torch.randint(0, c, (m,))
    kept = kept_logit_buffers(k, m, c, chunk_size, hs[0])
    for buffer in kept:
        buffer.fill_(float("nan"))  # stale rows beyond M must not matter
    losses = [mixture_cross_entropy([h], [w], [b], targets, chunk_size=chunk_size, keep_logits=[y])[0]
              for h, w, b, y in zip(hs, ws, bs, kept)]  # fmt: skip
    for h, w, b, y in zip(hs, ws, bs, kept):
        torch.testing.assert_close(y[:m], (h @ w.t() + b).detach())
    fused = mixture_loss_from_logits(kept, gate, targets, fusion_chunk_size)
    ref_experts, ref_fused = naive(hs, ws, bs, targets, gate)
    torch.testing.assert_close(torch.cat(losses), ref_experts)  # keeping the logits leaves the expert losses alone
    torch.testing.assert_close(fused, ref_fused)
    params = [*hs, *ws, *bs, gate]
    got = torch.autograd.grad(sum(losses).sum() + 3 * fused, params)
    want = torch.autograd.grad(ref_experts.sum() + 3 * ref_fused, params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # the M rows alone (no padded rows to compute on: a last block of M mod 16 rows) give the same loss and gradient
    exact_rows = mixture_loss_from_logits([y[:m] for y in kept], gate, targets, fusion_chunk_size)
    torch.testing.assert_close(exact_rows, ref_fused)
    torch.testing.assert_close(3 * torch.autograd.grad(exact_rows, gate)[0], want[-1])  # only L_fuse reaches the gate


def test_the_mixture_from_logits_refuses_logits_shorter_than_the_targets():
    targets = torch.zeros(5, dtype=torch.long)
    gate = torch.full((5, 2), 0.5)
    with pytest.raises(ValueError, match="at least M = 5 rows"):
        mixture_loss_from_logits([torch.zeros(5, 3), torch.zeros(4, 3)], gate, targets)


def test_the_mixture_from_bf16_kept_logits_is_as_close_to_fp64_as_the_stacked_call():
    torch.manual_seed(5)
    m, d, c, k = 300, 64, 3000, 4
    hs = [torch.randn(m, d) for _ in range(k)]
    ws = [0.2 * torch.randn(c, d) for _ in range(k)]
    bs = [0.5 * torch.randn(c) for _ in range(k)]
    gate = torch.softmax(torch.randn(m, k), 1).requires_grad_()
    targets = torch.randint(0, c, (m,))
    wide = [[x.double() for x in group] for group in (hs, ws, bs)]
    exact_gate = gate.detach().double().requires_grad_()
    _, want = naive(*wide, targets, exact_gate)
    want_grad = torch.autograd.grad(want, exact_gate)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = kept_logit_buffers(k, m, c, 128, hs[0])
        assert all(y.dtype == torch.bfloat16 for y in kept)
        for h, w, b, y in zip(hs, ws, bs, kept):
            mixture_cross_entropy([h], [w], [b], targets, chunk_size=128, keep_logits=[y])
        fused = mixture_loss_from_logits(kept, gate, targets, 128)
        _, stacked = mixture_cross_entropy(hs, ws, bs, targets, gate=gate, chunk_size=128)
    errors = {}
    for name, loss in (("kept", fused), ("stacked", stacked)):
        grad = torch.autograd.grad(loss, gate)[0].double()
        errors[name] = (abs(loss.item() - want.item()), (grad - want_grad).abs().max().item())
    scale = want_grad.abs().max().item()
    assert errors["kept"][0] < 1e-2 * want.item() and errors["kept"][1] < 3e-2 * scale
    # no worse than the gate-only call's rounding, within a factor of 3
    assert errors["kept"][0] < 3 * errors["stacked"][0] + 1e-4 and errors["kept"][1] < 3 * errors["stacked"][1] + 1e-4


def test_keep_logits_refuses_buffers_that_do_not_fit():
    h, w, b = torch.randn(70, 4), torch.randn(9, 4), torch.randn(9)
    targets = torch.zeros(70, dtype=torch.long)
    with pytest.raises(ValueError, match="128"):  # 70 rows: the single chunk's matmul runs on 128
        mixture_cross_entropy([h], [w], [b], targets, keep_logits=[torch.empty(70, 9)])
    with pytest.raises(ValueError, match="dtype"):
        mixture_cross_entropy([h], [w], [b], targets, keep_logits=[torch.empty(128, 9, dtype=torch.float64)])
    with pytest.raises(ValueError, match="gate"):
        mixture_cross_entropy([h], [w], [b], targets, gate=torch.ones(70, 1), keep_logits=[torch.empty(128, 9)])
