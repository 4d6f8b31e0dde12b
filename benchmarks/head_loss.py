"""Speed of the full-softmax head loss alone (not a test: it prints figures).

Times ``mixture_cross_entropy`` forward + backward under bf16 autocast on random data of a client's shape: one
expert's next-item loss (also when it keeps its logits), the gate-only fusion call over K experts
(``fusion_logits: recompute``) and the fusion from the kept logits (``fusion_logits: keep``, FMoE-CDSR's default).
The heads are laid out as the models' :class:`~lightning_fed.models.layers.item_head.ItemHead` stores them (W^T,
(d, C)), and the calls use FMoE-CDSR's chunk sizes: ``expert_chunk_size`` for an expert's own loss,
``loss_chunk_size`` for the fusion. Also times the matmul floor of one expert's loss, ``expert_products_ms``: its
three bf16 products alone (logits ``h W^T``, ``dh = dy W`` and ``dW^T = h^T dy`` over all rows at once, in the
loss's layouts, into reused outputs), with their GFLOP/s. Prints one final JSON line with the medians in ms.

    python benchmarks/head_loss.py                         # Food: 2,000 rows x 13,565 items, 4 experts
    python benchmarks/head_loss.py --items 32919           # Kitchen's item count
    python benchmarks/head_loss.py --chunk-size 512        # an expert's loss in 512-row chunks (the baselines')
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lightning_fed.errors import ConfigurationError, check_integer, exit_with_error
from lightning_fed.models.layers.mixture_cross_entropy import (
    kept_logit_buffers,
    mixture_cross_entropy,
    mixture_loss_from_logits,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="positions with a target in a batch")
    parser.add_argument("--items", type=int, default=13565, help="classes (the domain's items + padding)")
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-size", type=int, default=2048, help="an expert's loss chunk (expert_chunk_size)")
    parser.add_argument("--fusion-chunk-size", type=int, default=512, help="the fusion's chunk (loss_chunk_size)")
    args = parser.parse_args()
    for name in ("rows", "items", "experts", "hidden_dim", "repeats", "chunk_size", "fusion_chunk_size"):
        try:
            check_integer(f"--{name.replace('_', '-')}", getattr(args, name))
        except ConfigurationError as error:
            exit_with_error(str(error))
    torch.manual_seed(0)
    k, m, c, d = args.experts, args.rows, args.items, args.hidden_dim
    chunk, fusion_chunk = args.chunk_size, args.fusion_chunk_size
    hidden = [torch.randn(m, d, requires_grad=True) for _ in range(k)]
    stored = [(0.05 * torch.randn(d, c)).requires_grad_() for _ in range(k)]  # ItemHead.weight_t, (d, C)
    weights = [w.t() for w in stored]  # ItemHead.weight, the (C, d) view
    biases = [torch.zeros(c, requires_grad=True) for _ in range(k)]
    targets = torch.randint(0, c, (m,))
    gate = torch.softmax(torch.randn(m, k), 1).requires_grad_()

    def expert() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            (loss,), _ = mixture_cross_entropy([hidden[0]], [weights[0]], [biases[0]], targets, chunk_size=chunk)
        loss.backward()

    def fusion() -> None:
        detached = ([h.detach() for h in hidden], [w.detach() for w in weights], [b.detach() for b in biases])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = mixture_cross_entropy(*detached, targets, gate=gate, chunk_size=fusion_chunk)
        loss.backward()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = kept_logit_buffers(k, m, c, chunk, weights[0])

    def expert_keeping() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            (loss,), _ = mixture_cross_entropy(
                [hidden[0]], [weights[0]], [biases[0]], targets, chunk_size=chunk, keep_logits=[kept[0]]
            )
        loss.backward()

    def kept_fusion() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = mixture_loss_from_logits(kept, gate, targets, fusion_chunk)
        loss.backward()

    h_low, w_t_low = hidden[0].detach().bfloat16(), stored[0].detach().bfloat16()
    h_t_low = h_low.t().contiguous()
    logits_out = torch.empty(m, c, dtype=torch.bfloat16)
    dh_out, dw_t_out = torch.empty(m, d, dtype=torch.bfloat16), torch.empty(d, c, dtype=torch.bfloat16)

    def expert_products() -> None:
        torch.mm(h_low, w_t_low, out=logits_out)
        torch.mm(logits_out, w_t_low.t(), out=dh_out)  # the logits stand in for dy: the same shape and dtype
        torch.mm(h_t_low, logits_out, out=dw_t_out)

    def median_ms(step) -> float:
        step()  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    products_ms = median_ms(expert_products)
    figures = {
        "expert_loss_ms": median_ms(expert),
        "expert_products_ms": products_ms,
        "expert_loss_keeping_logits_ms": median_ms(expert_keeping),
        "gate_only_fusion_ms": median_ms(fusion),
        "fusion_from_kept_logits_ms": median_ms(kept_fusion),
    }
    result = {name: round(ms, 1) for name, ms in figures.items()}
    result["expert_products_gflops"] = round(3 * 2 * m * d * c / products_ms / 1e6)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
