"""Full-softmax cross-entropy of K linear heads and of their gated mixture, without materializing the logits.

For rows h_j (M x d) of expert j and its head (W_j, b_j) over C classes, the expert logits are
``y_j = h_j W_j^T + b_j``; the mixture logits are ``y_hat = sum_j g_j * sg(y_j)`` (FMoE-CDSR, Eq. 9: the
experts' logits are detached, so the mixture loss trains only the gate g). This function returns the mean
cross-entropy of every y_j and of y_hat against the targets, i.e. ``L_next^j`` (Eq. 4/6) and ``L_fuse`` (Eq. 9).

The M x C logits of the K experts never exist at once: rows are processed in chunks, the forward pass keeps
only per-row log-sum-exps, and the backward pass recomputes each chunk's logits. Under CPU/CUDA autocast the
matmuls run in the autocast dtype (bf16 on AMX CPUs) while the softmax runs in fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


class _Workspace:
    """Reusable chunk buffers: fresh multi-MB buffers on every call cost a page fault per page on first touch."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}

    def get(self, name: str, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        key = (name, dtype, device)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < rows * cols:
            buffer = self.buffers[key] = torch.empty(rows * cols, dtype=dtype, device=device)
        return buffer[: rows * cols].view(rows, cols)

    def clear(self) -> None:
        """Release the buffers."""
        self.buffers.clear()


#: Shared by all calls of this process (training is sequential); ``WORKSPACE.clear()`` frees it.
WORKSPACE = _Workspace()


def _log_sum_exp_(logits: Tensor) -> Tensor:
    """Row-wise logsumexp that overwrites ``logits`` (several times faster than torch.logsumexp on CPU)."""
    peak = logits.amax(1, keepdim=True)
    return peak.squeeze(1) + logits.sub_(peak).exp_().sum(1).log_()


class _MixtureCrossEntropy(torch.autograd.Function):
    """Chunked forward/backward; work buffers are allocated once per call (no page faults per chunk)."""

    @staticmethod
    def forward(ctx, gate, targets, chunk_size, num_experts, *tensors):  # noqa: D102
        k = num_experts
        hs, weights, biases = tensors[:k], tensors[k : 2 * k], tensors[2 * k :]
        device = hs[0].device
        dtype = _compute_dtype(device, hs[0].dtype)
        rows, classes = targets.numel(), weights[0].size(0)
        chunk = min(chunk_size, rows)
        acc = torch.promote_types(dtype, torch.float32)  # softmax statistics: fp32 (fp64 for fp64 inputs)
        expert_lse = torch.empty(k, rows, dtype=acc, device=device)
        fused_lse = torch.empty(rows if gate is not None else 0, dtype=acc, device=device)
        # A gate-only call (every expert input detached) needs no expert loss: skip those softmaxes.
        expert_losses = gate is None or any(t.requires_grad for t in tensors)
        expert_sum = torch.full((k,), 0.0 if expert_losses else float("nan"), dtype=acc, device=device)
        fused_sum = torch.zeros((), dtype=acc, device=device)
        with torch.autocast(device.type, enabled=False):
            w_c = [w.to(dtype) for w in weights]
            b_c = [b.to(dtype) for b in biases]
            low = WORKSPACE.get("low0", chunk, classes, dtype, device)
            work = low if dtype == acc else WORKSPACE.get("work", chunk, classes, acc, device)
            fused = WORKSPACE.get("fused", chunk, classes, acc, device) if gate is not None else None
            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                t = targets[start : start + n, None]
                for j in range(k):
                    y = torch.addmm(b_c[j], hs[j][start : start + n].to(dtype), w_c[j].t(), out=low[:n])
                    if work is not low:
                        y = work[:n].copy_(y)
                    if gate is not None:
                        g = gate[start : start + n, j : j + 1].to(acc)
                        if j == 0:
                            torch.mul(y, g, out=fused[:n])
                        else:
                            fused[:n].addcmul_(y, g)
                    if not expert_losses:
                        continue
                    expert_sum[j] -= y.gather(1, t).sum()
                    lse = _log_sum_exp_(y)
                    expert_lse[j, start : start + n] = lse
                    expert_sum[j] += lse.sum()
                if gate is not None:
                    f = fused[:n]
                    fused_sum -= f.gather(1, t).sum()
                    lse = _log_sum_exp_(f)
                    fused_lse[start : start + n] = lse
                    fused_sum += lse.sum()
        ctx.save_for_backward(gate if gate is not None else torch.empty(0), targets, expert_lse, fused_lse, *tensors)
        ctx.has_gate = gate is not None
        ctx.chunk, ctx.num_experts, ctx.dtype = chunk, k, dtype
        return expert_sum / rows, fused_sum / rows

    @staticmethod
    def backward(ctx, grad_experts, grad_fused):  # noqa: D102
        gate, targets, expert_lse, fused_lse, *tensors = ctx.saved_tensors
        k, dtype, chunk = ctx.num_experts, ctx.dtype, ctx.chunk
        hs, weights, biases = tensors[:k], tensors[k : 2 * k], tensors[2 * k :]
        device = hs[0].device
        rows, classes = targets.numel(), weights[0].size(0)
        need_h = [ctx.needs_input_grad[4 + j] for j in range(k)]
        need_w = [ctx.needs_input_grad[4 + k + j] for j in range(k)]
        need_b = [ctx.needs_input_grad[4 + 2 * k + j] for j in range(k)]
        need_gate = ctx.has_gate and ctx.needs_input_grad[0]
        grad_h = [torch.empty_like(h) if n else None for h, n in zip(hs, need_h)]
        acc = torch.promote_types(dtype, torch.float32)
        grad_w = [torch.zeros_like(w, dtype=acc) if n else None for w, n in zip(weights, need_w)]
        grad_b = [torch.zeros_like(b, dtype=acc) if n else None for b, n in zip(biases, need_b)]
        grad_gate = torch.empty_like(gate, dtype=acc) if need_gate else None
        scale = (grad_experts.double() / rows).tolist()
        with torch.autocast(device.type, enabled=False):
            w_c = [w.to(dtype) for w in weights]
            b_c = [b.to(dtype) for b in biases]
            # The gate's gradient needs every expert's logits of the chunk: keep them (in the matmul dtype).
            acc = torch.promote_types(dtype, torch.float32)
            low = [WORKSPACE.get(f"low{j}", chunk, classes, dtype, device) for j in range(k if need_gate else 1)]
            work = WORKSPACE.get("work", chunk, classes, acc, device)
            d_low = work if dtype == acc else WORKSPACE.get("d_low", chunk, classes, dtype, device)
            fused = WORKSPACE.get("fused", chunk, classes, acc, device) if need_gate else None
            for start in range(0, rows, chunk):
                n = min(chunk, rows - start)
                t = targets[start : start + n, None]
                for j in range(k):
                    h_c = hs[j][start : start + n].to(dtype)
                    y_low = torch.addmm(b_c[j], h_c, w_c[j].t(), out=low[j if need_gate else 0][:n])
                    y = work[:n].copy_(y_low)
                    if need_gate:
                        g = gate[start : start + n, j : j + 1].to(acc)
                        if j == 0:
                            torch.mul(y, g, out=fused[:n])
                        else:
                            fused[:n].addcmul_(y, g)
                    if not (need_h[j] or need_w[j] or need_b[j]):
                        continue
                    # d CE / d logits = softmax - onehot; the scalar (upstream gradient / rows) is applied to
                    # the small products instead of the chunk x classes matrix.
                    dy = y.sub_(expert_lse[j, start : start + n, None]).exp_()
                    dy.scatter_add_(1, t, torch.full((n, 1), -1.0, dtype=acc, device=device))
                    if need_b[j]:
                        grad_b[j] += dy.sum(0) * scale[j]
                    dy_low = dy if dy.dtype == dtype else d_low[:n].copy_(dy)
                    if need_h[j]:
                        grad_h[j][start : start + n] = (dy_low @ w_c[j]) * scale[j]
                    if need_w[j]:
                        grad_w[j].add_(dy_low.t() @ h_c, alpha=scale[j])
                if need_gate:
                    d_fused = fused[:n].sub_(fused_lse[start : start + n, None]).exp_()
                    d_fused.scatter_add_(1, t, torch.full((n, 1), -1.0, dtype=acc, device=device))
                    for j in range(k):
                        # (mixed-dtype elementwise ops are slow on CPU: copy first, then multiply in place)
                        product = work[:n].copy_(low[j][:n]).mul_(d_fused)
                        grad_gate[start : start + n, j] = product.sum(1)
            if need_gate:
                grad_gate.mul_(grad_fused.double().item() / rows)
        cast = [
            None if g is None else g.to(x.dtype)
            for g, x in zip(grad_h + grad_w + grad_b, list(hs) + list(weights) + list(biases))
        ]
        return (None if grad_gate is None else grad_gate.to(gate.dtype), None, None, None, *cast)


def mixture_cross_entropy(
    hidden: list[Tensor],
    weights: list[Tensor],
    biases: list[Tensor],
    targets: Tensor,
    gate: Tensor | None = None,
    chunk_size: int = 512,
) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of each expert's linear head and of the gated mixture of their detached logits.

    Args:
        hidden: K tensors (M, d): the rows (positions with a target) of each expert.
        weights: K head weights (C, d).
        biases: K head biases (C,).
        targets: (M,) class indices.
        gate: (M, K) mixture weights, or None to skip the mixture loss (returned as 0).
        chunk_size: rows per chunk; peak extra memory is about ``chunk_size * C * (K + 1)`` floats.

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
    return _MixtureCrossEntropy.apply(gate, targets, chunk_size, len(hidden), *hidden, *weights, *biases)
