"""Resident memory of a whole federation, round after round (not a test: it prints figures).

Runs ``python main.py fit`` in this process for several rounds and prints, per round, the resident memory
measured after the round's validation, then one final JSON line {"rss_gb": [...], "growth_gb": last - first,
"seconds": ..., "val_mrr": [...]}. The default is the Local Expert variant at the paper's d = 256 on FKCB, one
local epoch per round:

    python benchmarks/round_memory.py                           # oneDNN caches bounded (lightning_fed's default)
    python benchmarks/round_memory.py --onednn-cache 1024       # oneDNN's own default capacity, for comparison
    python benchmarks/round_memory.py --rounds 8 -- --model.init_args.hidden_dim=64   # extra main.py arguments
    python benchmarks/round_memory.py --configs fkcb.yaml --rounds 4 -- --federation.local_epochs=1
                                                                # FMoE-CDSR at the paper's configuration
    python benchmarks/round_memory.py -- --federation.release_memory=false   # freed heap memory kept by glibc
    python benchmarks/round_memory.py --allocator tcmalloc      # on gperftools' tcmalloc
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--onednn-cache", type=int, default=None, help="capacity of both oneDNN caches")
    parser.add_argument(
        "--configs", nargs="+", default=["fkcb_cpu.yaml", "variants/local_expert.yaml"], help="under configs/"
    )
    parser.add_argument("--allocator", choices=["default", "tcmalloc"], default="default")
    parser.add_argument("extra", nargs="*", help="more main.py arguments (after --)")
    args = parser.parse_args()
    if args.onednn_cache is not None:  # before lightning_fed sets its default (it never overrides a user's value)
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = os.environ["LRU_CACHE_CAPACITY"] = str(args.onednn_cache)
    from lightning_fed.errors import ConfigurationError, exit_with_error
    from lightning_fed.memory import allocator, peak_memory_gb, preload_allocator

    try:
        preload_allocator(args.allocator)
    except ConfigurationError as error:
        exit_with_error(f"--{error}")
    os.environ.setdefault("WANDB_MODE", "disabled")

    from lightning_fed.cli import main as cli_main

    with tempfile.TemporaryDirectory() as run_dir:
        started = time.time()
        cli_main(
            [
                "fit", *(f"--config={ROOT / 'configs' / name}" for name in args.configs),
                "--model.init_args.hidden_dim=256", f"--federation.rounds={args.rounds}", "--federation.patience=null",
                "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run_dir}", *args.extra,
            ]
        )  # fmt: skip
        seconds = time.time() - started
        history = json.loads((Path(run_dir) / "results.json").read_text())["validation"]
    rss = [round(r["resident_memory_gb"], 3) for r in history]
    print(
        json.dumps(
            {
                "onednn_cache": os.environ.get("LRU_CACHE_CAPACITY"),
                "allocator": allocator(),
                "arguments": args.configs + args.extra,
                "rss_gb": rss,
                "growth_gb": round(rss[-1] - rss[0], 3),
                "peak_rss_gb": round(peak_memory_gb(), 3),
                "seconds": round(seconds, 1),
                "val_mrr": [round(r["Avg"]["MRR"], 5) for r in history],
            }
        )
    )


if __name__ == "__main__":
    main()
