"""Full-softmax cross-entropy of K linear heads and of their gated mixture, without materializing the logits.

For rows h_j (M x d) of expert j and its head (W_j, b_j) over C classes, the expert logits are
``y_j = h_j W_j^T + b_j``; the mixture logits are ``y_hat = sum_j g_j * sg(y_j)`` (FMoE-CDSR, Eq. 9: the
experts' logits are detached, so the mixture loss trains only the gate g). This function returns the summed
cross-entropy of every y_j and of y_hat against the targets divided by a denominator (the number of rows, i.e. the
mean, by default), i.e. ``L_next^j`` (Eq. 4/6) and ``L_fuse`` (Eq. 9).

The M x C logits never exist at once: rows are processed in chunks. The gradients are computed in the forward
pass, from the chunk's logits while they are at hand (softmax minus one-hot), so the backward pass only scales
them: each chunk's logits are computed once. Under CPU/CUDA autocast the matmuls run in the autocast dtype (bf16
on AMX CPUs) while the softmax runs in fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_fed.models.layers.static_shapes import padded_rows
from lightning_fed.models.layers.workspace import WORKSPACE


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


#: Below this probability the target's cross-entropy is taken from an exact log-sum-exp instead of -log(p_t)
#: (fp32 exp underflows near 1e-38; a trained model's p_t is many orders above this).
_SMALLEST_EXACT_PROBABILITY = 1e-30


def _softmax_and_loss(logits: Tensor, targets: Tensor, probs: Tensor) -> Tensor:
    """Write softmax(logits) into ``probs``; return the rows' cross-entropies ``-log p_t`` (in fp32 or wider).

    The fused softmax kernel is several times faster than exp on CPU, and reading the loss off the target's
    probability saves the two passes a log-sum-exp would take. Rows whose p_t is too small for that (an extreme
    logit gap) get ``logsumexp(y) - y_t`` from the logits, which ``probs`` does not overwrite. With bf16 logits
    and ``probs`` the kernel still accumulates in fp32; only its output is rounded.
    """
    wide = torch.promote_types(logits.dtype, torch.float32)
    torch.softmax(logits, 1, out=probs)
    target_probs = probs.gather(1, targets).squeeze(1).to(wide)
    losses = -target_probs.log()
    tiny = (target_probs < _SMALLEST_EXACT_PROBABILITY).nonzero().squeeze(1)
    if len(tiny):
        rows = logits[tiny].to(wide)
        losses[tiny] = torch.logsumexp(rows, 1) - rows.gather(1, targets[tiny]).squeeze(1)
    return losses


class _OneHotSubtraction:
    """``dy = softmax - one-hot`` in place: -1 added at each row's target, for chunks of up to ``rows`` rows.

    ``index_put_`` with ``accumulate``: ``scatter_add_`` and column sums have slow bf16 paths on CPU. One instance
    serves every chunk of a call (its index and value rows are made once).
    """

    def __init__(self, rows: int, dtype: torch.dtype, device: torch.device) -> None:
        self.rows = torch.arange(rows, device=device)
        self.minus_one = torch.full((rows,), -1.0, dtype=dtype, device=device)

    def __call__(self, probs: Tensor, targets: Tensor) -> Tensor:
        """Subtract the one-hot of ``targets`` (n,) from ``probs`` (n, C), in place; returns ``probs``."""
        n = len(targets)
        return probs.index_put_((self.rows[:n], targets), self.minus_one[:n], accumulate=True)


def _transposed_head(w: Tensor, out: Tensor) -> Tensor:
    """W^T (d, C) of a head ``w`` (C, d), written into ``out`` (d, C) in its dtype; returns ``out``.

    The loss's products read the heads transposed, (d, C): oneDNN's bf16 products run faster with that operand
    laid out row by row. A head stored transposed (:class:`~lightning_fed.models.layers.item_head.ItemHead`) is then
    one contiguous cast. On CPU any other head is cast as it is and transposed by a product with the identity
    (exact), several times faster there than a transposing copy.
    """
    if w.t().is_contiguous() or w.device.type != "cpu":
        return out.copy_(w.t())
    rows = WORKSPACE.get("head_cast", *w.shape, out.dtype, out.device).copy_(w)
    return torch.mm(torch.eye(w.size(1), dtype=out.dtype, device=out.device), rows.t(), out=out)


def _transposed_gradient(w: Tensor, dtype: torch.dtype, zero: bool) -> Tensor:
    """A (C, d) gradient for head ``w`` stored as the transposed view of a contiguous (d, C) tensor.

    The loss writes it as (d, C) rows; for an :class:`~lightning_fed.models.layers.item_head.ItemHead` it has the
    parameter's own layout, so autograd takes it as it is.
    """
    make = torch.zeros if zero else torch.empty
    return make(w.size(1), w.size(0), dtype=dtype, device=w.device).t()


def _stacked_gate_only_fusion(
    gate: Tensor, targets: Tensor, hs: tuple[Tensor, ...], weights: tuple[Tensor, ...], biases: tuple[Tensor, ...],
    chunk: int, dtype: torch.dtype, grad_gate: Tensor | None,
) -> Tensor:  # fmt: skip
    """The mixture loss alone, in low precision (bf16), as two stacked matmuls per chunk instead of K of each.

    ``y_hat = sum_j g_j (h_j W_j^T + b_j) = [g_1 h_1 | ... | g_K h_K | g] [W_1 | ... | W_K | B^T]^T``, and the
    gate's gradient ``dL/dg_j = sum_c dy_c y_j,c = h_j . (dy W_j) + dy . b_j`` is read off ``dy [W | B^T]``: no
    per-expert logits are kept and no fp32 copy of them is made. The logits and the softmax are bf16 (the
    kernel accumulates in fp32), as the expert losses are under bf16 autocast. Returns the summed loss and writes
    the gate's gradient into ``grad_gate`` (unless None).
    """
    device, k = gate.device, len(hs)
    d = hs[0].size(1)
    acc = torch.float32
    rows, classes = targets.numel(), weights[0].size(0)
    # [W | B^T]^T, (K d + K, C), in a reused buffer: a fresh one (or an fp32 concatenation first) costs a page
    # fault per page, several times the copy itself in the middle of a training step
    stacked_t = WORKSPACE.get("stacked_w", k * d + k, classes, dtype, device)
    for j in range(k):
        _transposed_head(weights[j], stacked_t[j * d : (j + 1) * d])
        stacked_t[k * d + j].copy_(biases[j])
    chunk_rows = padded_rows(chunk)
    logits = WORKSPACE.get("low0", chunk_rows, classes, dtype, device)
    probs = WORKSPACE.get("d_low", chunk_rows, classes, dtype, device)
    rows_in = WORKSPACE.get("stacked_rows", chunk_rows, k * d + k, dtype, device)
    back_rows = WORKSPACE.get("stacked_back", chunk_rows, k * d + k, dtype, device)
    subtract_one_hot = _OneHotSubtraction(chunk, dtype, device)
    total = torch.zeros((), dtype=acc, device=device)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        p = padded_rows(n, chunk_rows)  # matmul rows (static_shapes); rows are independent here
        g = gate[start : start + n].to(acc)
        x = rows_in[:p]
        for j in range(k):
            torch.mul(hs[j][start : start + n], g[:, j : j + 1], out=x[:n, j * d : (j + 1) * d])
        x[:n, k * d :] = g
        x[n:].zero_()
        y = torch.mm(x, stacked_t, out=logits[:p])
        t = targets[start : start + n]
        total += _softmax_and_loss(y[:n], t[:, None], probs[:n]).sum()
        if grad_gate is not None:
            subtract_one_hot(probs[:n], t)
            back = torch.mm(probs[:p], stacked_t.t(), out=back_rows[:p])[:n].to(acc)  # (n, K d + K)
            for j in range(k):
                grad_gate[start : start + n, j] = (back[:, j * d : (j + 1) * d] * hs[j][start : start + n]).sum(1)
            grad_gate[start : start + n] += back[:, k * d :]
    return total


#: The head bias rides in the bf16 head matmuls as one more input column (ones in h, the bias in W). The width
#: d + 1 is padded to a multiple of this: oneDNN's AMX kernels take d + 1 = 257 columns at several times the cost
#: of 256, and an aligned width at about the cost of its extra columns.
AUGMENTED_MULTIPLE = 32


def augmented_width(d: int) -> int:
    """The head matmuls' inner width for rows of width ``d`` with the bias column: d + 1 rounded up."""
    return -(-(d + 1) // AUGMENTED_MULTIPLE) * AUGMENTED_MULTIPLE


def _bf16_expert_losses(
    hs: tuple[Tensor, ...], weights: tuple[Tensor, ...], biases: tuple[Tensor, ...], targets: Tensor, chunk: int,
    dtype: torch.dtype, need: tuple[list[bool], list[bool], list[bool]], keep_logits: list[Tensor] | None,
    expert_sum: Tensor,
) -> tuple[list, list, list]:  # fmt: skip
    """The experts' own losses in low precision (bf16), with their gradients: ``(grad_h, grad_w, grad_b)``.

    Each chunk's logits ``[h | 1 | 0] [W | b | 0]^T`` are one bf16 matmul (the bias in an extra column, see
    :data:`AUGMENTED_MULTIPLE`), their softmax is taken in bf16 (fp32 inside the kernel) and ``dy = softmax -
    one-hot`` stays bf16, as its matmuls need: ``dh = dy W`` and ``[dW | db]^T = [h | 1]^T dy``, the bias gradient
    being the extra row of the weight gradient's product. The heads are read transposed, ``[W | b | 0]^T`` (see
    :func:`_transposed_head`), and ``[h | 1]^T`` is a contiguous copy: oneDNN runs both products faster so than on
    transposed views. The summed losses are added to ``expert_sum``; gradients are accumulated in fp32 over the
    chunks. ``keep_logits`` (or None): buffers that keep each expert's logits, as :func:`mixture_cross_entropy`
    documents.
    """
    need_h, need_w, need_b = need
    device, acc = hs[0].device, torch.float32
    rows, classes, d = targets.numel(), weights[0].size(0), hs[0].size(1)
    width = augmented_width(d)
    chunk_rows = padded_rows(chunk)  # matmuls on padded row counts (static_shapes): rows n..p of h and dy are zero
    grad_h = [torch.empty(h.shape, dtype=acc, device=device) if n else None for h, n in zip(hs, need_h)]
    grad_w = [_transposed_gradient(w, acc, zero=False) if n else None for w, n in zip(weights, need_w)]
    grad_b = [torch.empty(b.shape, dtype=acc, device=device) if n else None for b, n in zip(biases, need_b)]
    # the heads with their bias row, (d + 1 + pad, C), in reused buffers: a fresh multi-MB buffer costs a page fault
    # per page
    heads = []
    for j, (w, b) in enumerate(zip(weights, biases)):
        head = WORKSPACE.get(f"w{j}", width, classes, dtype, device)
        _transposed_head(w, head[:d])
        head[d].copy_(b)
        head[d + 1 :].zero_()
        heads.append(head)
    logits = WORKSPACE.get("low0", chunk_rows, classes, dtype, device)
    d_low = WORKSPACE.get("d_low", chunk_rows, classes, dtype, device)
    h_c = WORKSPACE.get("expert_rows", chunk_rows, width, dtype, device)
    h_t = WORKSPACE.get("expert_rows_t", width, chunk_rows, dtype, device)
    subtract_one_hot = _OneHotSubtraction(chunk, dtype, device)
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        p = padded_rows(n, chunk_rows)
        t = targets[start : start + n, None]
        for j in range(len(hs)):
            x = h_c[:p]
            x[:n, :d].copy_(hs[j][start : start + n])
            x[:n, d] = 1.0
            x[:n, d + 1 :].zero_()
            x[n:].zero_()
            out = logits[:p] if keep_logits is None else keep_logits[j][start : start + p]
            y = torch.mm(x, heads[j], out=out)[:n]
            expert_sum[j] += _softmax_and_loss(y, t, d_low[:n]).sum()
            if not (need_h[j] or need_w[j] or need_b[j]):
                continue
            subtract_one_hot(d_low[:n], t[:, 0])
            d_low[n:p].zero_()
            dy = d_low[:p]
            if need_h[j]:
                back = WORKSPACE.get("d_rows", chunk_rows, d, dtype, device)[:p]
                grad_h[j][start : start + n] = torch.mm(dy, heads[j][:d].t(), out=back)[:n]
            if need_w[j] or need_b[j]:
                # into reused buffers: a fresh (d + 1 + pad, C) product per chunk, cast on the fly, is slow on CPU
                x_t = h_t[:, :p].copy_(x.t())
                dw = torch.mm(x_t, dy, out=WORKSPACE.get("dw_low", width, classes, dtype, device))
                if start:  # added in fp32 (a mixed-dtype add_ is slower than a copy and an add); the first is copied
                    dw = WORKSPACE.get("dw", width, classes, acc, device).copy_(dw)
                for grad, part in ((None if grad_w[j] is None else grad_w[j].t(), dw[:d]), (grad_b[j], dw[d])):
                    if grad is None:
                        continue
                    if start == 0:
                        grad.copy_(part)
                    else:
                        grad.add_(part)
    return grad_h, grad_w, grad_b


class _MixtureCrossEntropy(torch.autograd.Function):
    """Chunked forward that also computes the gradients; the backward pass scales them by the upstream gradient."""

    @staticmethod
    def forward(ctx, gate, targets, chunk_size, denominator, with_grads, keep_logits, num_experts, *tensors):  # noqa: D102
        k = num_experts
        hs, weights, biases = tensors[:k], tensors[k : 2 * k], tensors[2 * k :]
        device = hs[0].device
        dtype = _compute_dtype(device, hs[0].dtype)
        rows, classes, d = targets.numel(), weights[0].size(0), hs[0].size(1)
        chunk = min(chunk_size, rows)
        chunk_rows = padded_rows(chunk)
        acc = torch.promote_types(dtype, torch.float32)  # softmax statistics: fp32 (fp64 for fp64 inputs)
        needs = ctx.needs_input_grad
        need_h = [with_grads and needs[7 + j] for j in range(k)]
        need_w = [with_grads and needs[7 + k + j] for j in range(k)]
        need_b = [with_grads and needs[7 + 2 * k + j] for j in range(k)]
        need_gate = with_grads and gate is not None and needs[0]
        if keep_logits is not None and any(buffer.dtype != dtype for buffer in keep_logits):
            raise ValueError(f"keep_logits buffers must be in the matmul dtype {dtype}")
        # A gate-only call (every expert input detached) needs no expert loss: skip those softmaxes.
        expert_losses = gate is None or any(t.requires_grad for t in tensors)
        expert_sum = torch.full((k,), 0.0 if expert_losses else float("nan"), dtype=acc, device=device)
        fused_sum = torch.zeros((), dtype=acc, device=device)
        grad_gate = torch.empty(gate.shape, dtype=acc, device=device) if need_gate else None
        with torch.autocast(device.type, enabled=False):
            if gate is not None and not expert_losses and dtype != acc:
                fused_sum = _stacked_gate_only_fusion(gate, targets, hs, weights, biases, chunk, dtype, grad_gate)
                grads = (grad_gate, [None] * k, [None] * k, [None] * k)  # every expert input is detached here
                return _MixtureCrossEntropy._keep(ctx, grads, gate, tensors, expert_sum, fused_sum, denominator)
            if gate is None and dtype != acc:
                grad_h, grad_w, grad_b = _bf16_expert_losses(
                    hs, weights, biases, targets, chunk, dtype, (need_h, need_w, need_b), keep_logits, expert_sum
                )
                grads = (None, grad_h, grad_w, grad_b)
                return _MixtureCrossEntropy._keep(ctx, grads, gate, tensors, expert_sum, fused_sum, denominator)
            grad_h = [torch.empty(h.shape, dtype=acc, device=device) if n else None for h, n in zip(hs, need_h)]
            grad_w = [_transposed_gradient(w, acc, zero=True) if n else None for w, n in zip(weights, need_w)]
            grad_b = [torch.zeros(b.shape, dtype=acc, device=device) if n else None for b, n in zip(biases, need_b)]
            # the heads transposed, (d, C), in the matmul dtype: in reused buffers (as the stacked weights above)
            w_t = [
                w.t() if w.dtype == dtype else _transposed_head(w, WORKSPACE.get(f"w{j}", d, classes, dtype, device))
                for j, w in enumerate(weights)
            ]
            b_c = [b.to(dtype) for b in biases]
            # The gate's gradient needs every expert's logits of the chunk: keep them (in the matmul dtype).
            # matmuls on padded row counts (static_shapes): rows n..p of a chunk's h and dy are zero
            low = [WORKSPACE.get(f"low{j}", chunk_rows, classes, dtype, device) for j in range(k if need_gate else 1)]
            d_low = WORKSPACE.get("d_low", chunk_rows, classes, dtype, device) if dtype != acc else None
            # here with fp32 (or fp64) inputs, or a bf16 call with a gate and expert losses (one joint backward)
            work = WORKSPACE.get("work", chunk_rows, classes, acc, device)
            probs = WORKSPACE.get("probs", chunk_rows, classes, acc, device)
            fused = WORKSPACE.get("fused", chunk_rows, classes, acc, device) if gate is not None else None
            rows_in = WORKSPACE.get("rows", chunk_rows, d, dtype, device)
            subtract_one_hot = _OneHotSubtraction(chunk, acc, device)

            def accumulate_grads(j: int, start: int, n: int, dy_low: Tensor, h_c: Tensor, dy: Tensor):
                """Accumulate expert j's head and row gradients from the chunk's dy = softmax - one-hot.

                ``dy_low`` and ``h_c`` are the chunk's padded rows (zero beyond row n); ``dy`` its n rows in fp32.
                """
                p = h_c.size(0)
                if need_b[j]:
                    grad_b[j].add_(dy.sum(0))
                if need_h[j]:
                    back = torch.mm(dy_low, w_t[j].t(), out=WORKSPACE.get("d_rows", chunk_rows, d, dtype, device)[:p])
                    grad_h[j][start : start + n] = back[:n]
                if need_w[j]:
                    # dW^T = h^T dy from a contiguous h^T, into reused buffers: a fresh (d, C) product per chunk,
                    # cast on the fly, is slow on CPU
                    h_t = WORKSPACE.get("rows_t", d, chunk_rows, dtype, device)[:, :p].copy_(h_c.t())
                    dw = torch.mm(h_t, dy_low, out=WORKSPACE.get("dw_low", d, classes, dtype, device))
                    if dtype != acc:
                        dw = WORKSPACE.get("dw", d, classes, acc, device).copy_(dw)
                    grad_w[j].t().add_(dw)

            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                p = padded_rows(n, chunk_rows)
                t = targets[start : start + n, None]
                for j in range(k):
                    h_c = rows_in[:p]
                    h_c[:n].copy_(hs[j][start : start + n])
                    h_c[n:].zero_()
                    out = low[j if need_gate else 0][:p] if keep_logits is None else keep_logits[j][start : start + p]
                    y_low = torch.addmm(b_c[j], h_c, w_t[j], out=out)[:n]
                    y = y_low if dtype == acc else work[:n].copy_(y_low)
                    if gate is not None:
                        g = gate[start : start + n, j : j + 1].to(acc)
                        if j == 0:
                            torch.mul(y, g, out=fused[:n])
                        else:
                            fused[:n].addcmul_(y, g)
                    if not expert_losses:
                        continue
                    expert_sum[j] += _softmax_and_loss(y, t, probs[:n]).sum()
                    if not (need_h[j] or need_w[j] or need_b[j]):
                        continue
                    dy = subtract_one_hot(probs[:n], t[:, 0])
                    if d_low is None:
                        dy_low = probs[:p]
                    else:
                        dy_low = d_low[:p]
                        dy_low[:n].copy_(dy)
                    dy_low[n:].zero_()
                    accumulate_grads(j, start, n, dy_low, h_c, dy)
                if gate is not None:
                    fused_sum += _softmax_and_loss(fused[:n], t, probs[:n]).sum()
                    if need_gate:
                        d_fused = subtract_one_hot(probs[:n], t[:, 0])
                        for j in range(k):
                            # (mixed-dtype elementwise ops are slow on CPU: copy first, then multiply in place)
                            product = work[:n].copy_(low[j][:n]).mul_(d_fused)
                            grad_gate[start : start + n, j] = product.sum(1)
        return _MixtureCrossEntropy._keep(
            ctx, (grad_gate, grad_h, grad_w, grad_b), gate, tensors, expert_sum, fused_sum, denominator
        )

    @staticmethod
    def _keep(ctx, grads, gate, tensors, expert_sum, fused_sum, denominator) -> tuple[Tensor, Tensor]:
        """Keep the forward pass's gradients for :meth:`backward`; return the two losses."""
        ctx.grads = grads
        ctx.dtypes = [None if gate is None else gate.dtype, *(x.dtype for x in tensors)]
        ctx.denominator = denominator
        return expert_sum / denominator, fused_sum / denominator

    @staticmethod
    def backward(ctx, grad_experts, grad_fused):  # noqa: D102
        grad_gate, grad_h, grad_w, grad_b = ctx.grads
        del ctx.grads  # the saved gradients are used once
        scales = (grad_experts / ctx.denominator).tolist()
        grads = [
            None if g is None else g.mul_(scales[j % len(scales)]) for j, g in enumerate([*grad_h, *grad_w, *grad_b])
        ]
        if grad_gate is not None:
            grad_gate.mul_(float(grad_fused) / ctx.denominator)
        cast = [None if g is None else g.to(dtype) for g, dtype in zip([grad_gate, *grads], ctx.dtypes)]
        return (cast[0], None, None, None, None, None, None, *cast[1:])


def mixture_cross_entropy(
    hidden: list[Tensor],
    weights: list[Tensor],
    biases: list[Tensor],
    targets: Tensor,
    gate: Tensor | None = None,
    chunk_size: int = 512,
    denominator: int | None = None,
    keep_logits: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Cross-entropy of each expert's linear head and of the gated mixture of their detached logits.

    Args:
        hidden: K tensors (M, d): the rows (positions with a target) of each expert.
        weights: K head weights (C, d).
        biases: K head biases (C,).
        targets: (M,) class indices.
        gate: (M, K) mixture weights, or None to skip the mixture loss (returned as 0).
        chunk_size: rows per chunk; peak extra memory is about ``chunk_size * C * (K + 3)`` floats.
        denominator: what the summed cross-entropies are divided by: M (a mean over the rows) if None; the
            reference code divides by B * T, padding positions included.
        keep_logits: K buffers of at least ``kept_logit_rows(M, chunk_size)`` rows and C columns in the matmul
            dtype (bf16 under autocast): expert j's logits ``h_j W_j^T + b_j`` of the M rows are left in the first
            M rows of buffer j, for :func:`mixture_loss_from_logits`. Not with a gate.

    Returns:
        ``(expert_losses, mixture_loss)``: a (K,) tensor and a scalar. Gradients of the expert losses reach the
        hidden rows and the heads; the gradient of the mixture loss reaches only the gate. When a gate is
        given and no hidden row, weight or bias requires a gradient, the expert losses are not computed
        (returned as NaN): only the mixture loss is needed then.
    """
    if not (len(hidden) == len(weights) == len(biases)) or not hidden:
        raise ValueError("hidden, weights and biases need one entry per expert")
    if targets.numel() == 0:
        zero = hidden[0].sum() * 0.0
        return zero.expand(len(hidden)).float(), zero.float()
    denominator = targets.numel() if denominator is None else denominator
    with_grads = torch.is_grad_enabled()
    if keep_logits is not None:
        _check_kept_buffers(keep_logits, len(hidden), kept_logit_rows(targets.numel(), chunk_size), weights[0].size(0))
        if gate is not None:
            raise ValueError("keep_logits is for the experts' own losses (gate=None)")
    return _MixtureCrossEntropy.apply(
        gate, targets, chunk_size, denominator, with_grads, keep_logits, len(hidden), *hidden, *weights, *biases
    )


def kept_logit_buffers(k: int, rows: int, classes: int, chunk_size: int, like: Tensor) -> list[Tensor]:
    """K reused ``keep_logits`` buffers for ``rows`` targets over ``classes``, in ``like``'s matmul dtype.

    That is the autocast dtype under autocast on ``like``'s device, else ``like``'s dtype.
    """
    dtype = _compute_dtype(like.device, like.dtype)
    return [WORKSPACE.get(f"kept{j}", kept_logit_rows(rows, chunk_size), classes, dtype, like.device) for j in range(k)]


def kept_logit_rows(rows: int, chunk_size: int = 512) -> int:
    """Rows a ``keep_logits`` buffer needs for ``rows`` targets: the last chunk's matmul runs on padded rows."""
    chunk = min(chunk_size, rows)
    last = (rows - 1) // chunk * chunk if rows else 0
    return last + padded_rows(rows - last, padded_rows(chunk)) if rows else 0


def _check_kept_buffers(buffers: list[Tensor], k: int, rows: int, classes: int) -> None:
    if len(buffers) != k:
        raise ValueError(f"keep_logits needs one buffer per expert ({k}), got {len(buffers)}")
    for buffer in buffers:
        if buffer.dim() != 2 or buffer.size(0) < rows or buffer.size(1) != classes or not buffer.is_contiguous():
            raise ValueError(
                f"a keep_logits buffer must be contiguous, ({rows}+, {classes}); got {tuple(buffer.shape)}"
            )


#: Rows per block of L_fuse's batched products (:class:`_MixtureFromLogits`).
MIXING_BLOCK = 16


def _row_blocks(rows: int, block: int) -> list[tuple[int, int, int]]:
    """``(first row, blocks, rows per block)`` covering ``rows`` rows: the whole blocks, then one of the rest."""
    whole = rows // block * block
    parts = [(0, rows // block, block)] if whole else []
    if rows > whole:
        parts.append((whole, 1, rows - whole))
    return parts


def _blocks(x: Tensor, first: int, count: int, size: int) -> Tensor:
    """Rows ``first`` to ``first + count * size`` of ``x`` (R, C) as ``count`` blocks (count, size, C)."""
    return x[first : first + count * size].reshape(count, size, x.size(1))


class _MixtureFromLogits(torch.autograd.Function):
    """The gated mixture's loss from the experts' kept logits; its gradient (to the gate only) from the forward.

    Both per-row operations run as batched matmuls over blocks of :data:`MIXING_BLOCK` rows, which oneDNN
    computes about twice as fast as the elementwise passes they replace (bf16 on CPU): the mixing
    ``y_hat_i = sum_j g_ij y_j,i`` as ``diag(g_j) Y_j`` per block, accumulated over the experts, and the gate
    gradient ``dL/dg_ij = sum_c dy_i,c y_j,i,c`` as the diagonal of ``dY Y_j^T`` per block. Each product is rounded
    to the logits' dtype as before (the mixing accumulates in it as ``addcmul_`` did; the row dot products are
    summed in fp32 and rounded once, where the elementwise pass rounded every product first). A chunk's products
    run on its padded row count (static_shapes) where the logit tensors hold those rows, with a zero gate there.
    """

    @staticmethod
    def forward(ctx, gate, targets, chunk_size, denominator, *logits):  # noqa: D102
        k, dtype, device = len(logits), logits[0].dtype, gate.device
        acc = torch.promote_types(dtype, torch.float32)
        rows, classes = targets.numel(), logits[0].size(1)
        chunk = min(chunk_size, rows)
        chunk_rows = padded_rows(chunk)
        available = min(y.size(0) for y in logits)
        fused = WORKSPACE.get("fused_logits", chunk_rows, classes, dtype, device)
        probs = WORKSPACE.get("fused_probs", chunk_rows, classes, dtype, device)
        grad_gate = torch.empty(gate.shape, dtype=acc, device=device) if ctx.needs_input_grad[0] else None
        # in the logits' dtype, as the products need; zero beyond row M
        g_all = torch.zeros((available, k), dtype=dtype, device=device)
        g_all[:rows] = gate.detach()
        subtract_one_hot = _OneHotSubtraction(chunk, dtype, device)
        total = torch.zeros((), dtype=acc, device=device)
        with torch.autocast(device.type, enabled=False):
            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                p = max(n, min(padded_rows(n, chunk_rows), available - start))
                t, g, ys = targets[start : start + n], g_all[start : start + p], [y[start : start + p] for y in logits]
                parts = _row_blocks(p, MIXING_BLOCK)
                for first, count, size in parts:
                    out = _blocks(fused, first, count, size)  # a view: written in place
                    for j in range(k):
                        weights = torch.diag_embed(g[first : first + count * size, j].reshape(count, size))
                        if j == 0:
                            torch.bmm(weights, _blocks(ys[j], first, count, size), out=out)
                        else:
                            out.baddbmm_(weights, _blocks(ys[j], first, count, size))
                total += _softmax_and_loss(fused[:n], t[:, None], probs[:n]).sum()
                if grad_gate is None:
                    continue
                dy = probs[:p]
                subtract_one_hot(dy[:n], t)
                dy[n:].zero_()
                for first, count, size in parts:
                    real = min(first + count * size, n) - first  # the blocks' rows that are chunk rows
                    if real <= 0:  # padding rows only
                        continue
                    for j in range(k):  # dL/dg_j = sum_c dy_c y_j,c
                        dots = torch.bmm(_blocks(dy, first, count, size), _blocks(ys[j], first, count, size).mT)
                        grad_gate[start + first : start + first + real, j] = dots.diagonal(0, 1, 2).flatten()[:real]
        ctx.grad_gate, ctx.gate_dtype, ctx.denominator = grad_gate, gate.dtype, denominator
        return total / denominator

    @staticmethod
    def backward(ctx, grad_fused):  # noqa: D102
        grad_gate = ctx.grad_gate
        del ctx.grad_gate
        if grad_gate is not None:
            grad_gate = grad_gate.mul_(float(grad_fused) / ctx.denominator).to(ctx.gate_dtype)
        return (grad_gate, None, None, None, *(None for _ in range(len(ctx.needs_input_grad) - 4)))


def mixture_loss_from_logits(
    logits: list[Tensor], gate: Tensor, targets: Tensor, chunk_size: int = 512, denominator: int | None = None
) -> Tensor:
    """The gated mixture's cross-entropy ``L_fuse`` (FMoE-CDSR, Eq. 9) from the experts' logits, kept by their losses.

    ``y_hat = sum_j g_j y_j`` with the (detached) logits ``y_j = h_j W_j^T + b_j`` that :func:`mixture_cross_entropy`
    left in its ``keep_logits`` buffers, and ``dL/dg_j = sum_c dy_c y_j,c``: one pass over each expert's logits
    each way per chunk (batched products over 16-row blocks) instead of the two (M x C x K d) matmuls of the
    gate-only call. The same loss and gate gradient as
    ``mixture_cross_entropy(..., gate=gate)`` with detached inputs, rounded in the logits' dtype.

    Args:
        logits: K tensors whose first M rows are the experts' logits (M, C). Where a tensor holds more rows, those
            up to ``kept_logit_rows(M, chunk_size)`` take part in the last chunk's padded products with a zero gate
            and must be finite (``mixture_cross_entropy`` leaves zeros there in its ``keep_logits`` buffers); rows
            beyond are never read.
        gate: (M, K) mixture weights; the only input that gets a gradient.
        targets: (M,) class indices.
        chunk_size: rows per chunk.
        denominator: as in :func:`mixture_cross_entropy`.

    Returns:
        The scalar mixture loss.
    """
    if gate.dim() != 2 or gate.size(1) != len(logits) or gate.size(0) != targets.numel():
        raise ValueError(f"gate must be (M, K) = ({targets.numel()}, {len(logits)}), got {tuple(gate.shape)}")
    if targets.numel() == 0:
        return gate.sum().float() * 0.0
    denominator = targets.numel() if denominator is None else denominator
    for y in logits:
        if y.dim() != 2 or y.size(0) < targets.numel() or y.size(1) != logits[0].size(1):
            raise ValueError(f"logits must be K tensors of at least M = {targets.numel()} rows and C columns")
    return _MixtureFromLogits.apply(gate, targets, chunk_size, denominator, *logits)
