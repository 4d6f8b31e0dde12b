"""Where one FMoE-CDSR client's evaluation goes (not a test: it prints figures).

Client Food of FKCB at the paper's configuration (d = 256, four experts), its 1,307 validation sequences, each
against 1,000 candidates, in the evaluation batches of the datamodule. Timed, medians of three after a warm-up:

- ``eval_s``: the whole validation pass (``validation_step`` on every batch), as ``train_step.py`` times it;
- ``encode_s``: the experts' encoders alone (bf16 autocast, last positions only), what scoring starts from;
- ``score_s``: the rest of ``score_candidates`` from those outputs: every expert's fp32 scores, the gate, the
  fusion (the encoders replaced by their saved outputs);
- ``products_fp32_s`` / ``products_bf16_s``: only the (rows x d) @ (d x N) products of the four experts' heads, in
  fp32 and in bf16, into one reused output as the model's scoring writes them: the floor of exact scoring, and
  what bf16 scoring (ties, so not used) would cost.

Prints one final JSON line with those and ``scoring_gflop`` (the four experts' full-item products).

    python benchmarks/eval_breakdown.py
    python benchmarks/eval_breakdown.py --eval-batch-size 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from lightning_fed.datamodules import FKCB
from lightning_fed.models import FMoECDSR


def median_seconds(run: Callable[[], None], repeats: int = 3) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``run`` after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--eval-batch-size", type=int, default=None, help="default: the datamodule's")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")
    torch.manual_seed(0)

    data_kwargs = {"eval_batch_size": args.eval_batch_size} if args.eval_batch_size else {}
    datamodule = FKCB(**data_kwargs).client_datamodules()["Food"]
    datamodule.setup()
    model = FMoECDSR(hidden_dim=args.hidden_dim)
    model.build(datamodule)
    model.eval()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    batches = list(datamodule.val_dataloader())

    def evaluate() -> None:
        model.val_metrics.reset()
        with torch.no_grad(), autocast:
            for batch in batches:
                model.validation_step(batch, 0)

    def encode() -> None:
        with torch.no_grad(), autocast:
            for inputs, _ in batches:
                model._encode_all(inputs, last_only=True)

    with torch.no_grad(), autocast:
        encoded = [model._encode_all(inputs, last_only=True) for inputs, _ in batches]

    def score() -> None:
        with torch.no_grad(), autocast:
            for (inputs, candidates), outputs in zip(batches, encoded, strict=True):
                model._encode_all = lambda *_, outputs=outputs, **__: outputs  # the saved outputs
                model.score_candidates(inputs, candidates)
        del model._encode_all  # the method again

    heads = [expert.head.weight[:-1].detach().float() for expert in model.net.experts]
    rows = [torch.randn(len(inputs), args.hidden_dim) for inputs, _ in batches]

    def products(dtype: torch.dtype) -> Callable[[], None]:
        weights = [w.to(dtype) for w in heads]
        inputs = [z.to(dtype) for z in rows]
        # one reused output, as the model's scoring has: a fresh one adds a page fault per page (Food's fp32
        # products took 0.19 s with fresh outputs against 0.12 s here)
        out = torch.empty(max(len(z) for z in rows), len(heads[0]), dtype=dtype)

        def run() -> None:
            for z in inputs:
                for w in weights:
                    torch.mm(z, w.t(), out=out[: len(z)])

        return run

    result = {
        "eval_s": median_seconds(evaluate),
        "encode_s": median_seconds(encode),
        "score_s": median_seconds(score),
        "products_fp32_s": median_seconds(products(torch.float32)),
        "products_bf16_s": median_seconds(products(torch.bfloat16)),
    }
    result = {k: round(v, 3) for k, v in result.items()}
    sequences = sum(len(z) for z in rows)
    result["scoring_gflop"] = round(2 * sequences * args.hidden_dim * sum(len(w) for w in heads) / 1e9, 1)
    result["eval_batches"] = [len(z) for z in rows]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
