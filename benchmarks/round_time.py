"""One whole federated round at the paper's configuration, timed (not a test: it prints figures).

Runs ``python main.py fit --config configs/fkcb.yaml`` in this process for one round: every FKCB client trains
its 3 local epochs (d = 256, all four experts, full softmax, bf16 autocast), the server exchanges the experts and
every client validates. Prints one final JSON line::

    {"round_s": seconds from the first client's training to the last client's validation,
     "epoch_s": {client: [seconds of each local epoch]},
     "val_s": {client: seconds of its validation},
     "peak_rss_gb": the process's peak resident memory up to the end of the round (its last client's validation),
     "rss_after_round_gb": resident memory after the round,
     "run_peak_rss_gb": the peak of the whole run, with the restore of the best round and the final test after it,
     "val_mrr": the round's validation Avg MRR, "allocator": the malloc the process ran on}

Memory is in GB (10^9 bytes). Until stop 36 ``peak_rss_gb`` was the whole run's peak, which the final restore set.

    python benchmarks/round_time.py                                   # the paper's FKCB round
    python benchmarks/round_time.py -- --federation.local_epochs=1    # extra main.py arguments
    python benchmarks/round_time.py --allocator tcmalloc              # on gperftools' tcmalloc
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from lightning import Callback

ROOT = Path(__file__).resolve().parents[1]
#: Filled by every client's copy of :class:`RoundTimer` (the federation gives each client its own copy).
EVENTS: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))


def _client(trainer) -> str:
    from lightning_fed.callbacks import FederatedRound

    return next(cb.client for cb in trainer.callbacks if isinstance(cb, FederatedRound))


class RoundTimer(Callback):
    """Per client: the wall-clock time of each local epoch and validation, and the peak memory after each validation."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: D102
        EVENTS[_client(trainer)]["epoch_start"].append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
        EVENTS[_client(trainer)]["epoch_end"].append(time.perf_counter())

    def on_validation_start(self, trainer, pl_module) -> None:  # noqa: D102
        EVENTS[_client(trainer)]["val_start"].append(time.perf_counter())

    def on_validation_end(self, trainer, pl_module) -> None:  # noqa: D102
        from lightning_fed.memory import peak_memory_gb

        EVENTS[_client(trainer)]["val_end"].append(time.perf_counter())
        EVENTS[_client(trainer)]["peak_gb"].append(peak_memory_gb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "fkcb.yaml"))
    parser.add_argument("--allocator", choices=["default", "tcmalloc"], default="default")
    parser.add_argument("extra", nargs="*", help="more main.py arguments (after --)")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")

    from lightning_fed.cli import main as cli_main
    from lightning_fed.errors import ConfigurationError, exit_with_error
    from lightning_fed.memory import allocator, peak_memory_gb, preload_allocator

    try:
        preload_allocator(args.allocator)
    except ConfigurationError as error:
        exit_with_error(f"--{error}")

    with tempfile.TemporaryDirectory() as run_dir:
        cli_main(
            [
                "fit", f"--config={args.config}", "--federation.rounds=1", "--trainer.enable_progress_bar=false",
                "--trainer.callbacks+=__main__.RoundTimer", f"--trainer.default_root_dir={run_dir}", *args.extra,
            ]
        )  # fmt: skip
        history = json.loads((Path(run_dir) / "results.json").read_text())["validation"]
    first_epoch = min(e["epoch_start"][0] for e in EVENTS.values())
    round_end = max(e["val_end"][0] for e in EVENTS.values())  # the round's validation, not the final test
    print(
        json.dumps(
            {
                "round_s": round(round_end - first_epoch, 1),
                "epoch_s": {
                    c: [round(b - a, 1) for a, b in zip(e["epoch_start"], e["epoch_end"])] for c, e in EVENTS.items()
                },
                "val_s": {c: round(e["val_end"][0] - e["val_start"][0], 1) for c, e in EVENTS.items()},
                "peak_rss_gb": round(max(e["peak_gb"][0] for e in EVENTS.values()), 3),
                "rss_after_round_gb": round(history[0]["resident_memory_gb"], 3),
                "run_peak_rss_gb": round(peak_memory_gb(), 3),
                "val_mrr": round(history[0]["Avg"]["MRR"], 5),
                "allocator": allocator(),
            }
        )
    )


if __name__ == "__main__":
    main()
