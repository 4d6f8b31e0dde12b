"""Speed and memory of one FMoE-CDSR client at the paper's configuration (not a test: it prints figures).

Client Food of FKCB, d = 256, batch 256, all four experts, full softmax over all items (no sampled softmax).
Prints one final JSON line: {"train_step_s": median seconds of one training step (forward, backward, Adam
step), "eval_s": median seconds to evaluate Food's validation set (1307 sequences x 1000 candidates),
"peak_rss_gb": the process's peak resident memory in GB (10^9 bytes, as the other benchmarks; until stop 36 this
script printed GiB, 2^30 bytes: figures 6.9 % lower), "allocator": the malloc the process ran on}.

    python benchmarks/train_step.py                      # bf16 autocast (the default on this CPU)
    python benchmarks/train_step.py --precision 32       # fp32
    python benchmarks/train_step.py --backward joint     # all experts in one backward pass (more memory)
    python benchmarks/train_step.py --fusion-logits recompute   # L_fuse recomputes the logits (less memory)
    python benchmarks/train_step.py --expert-chunk-size 512     # each expert's loss in chunks of 512 rows
    python benchmarks/train_step.py --variant configs/variants/reference.yaml   # the reference code's behaviour
    python benchmarks/train_step.py --allocator tcmalloc   # on gperftools' tcmalloc (libtcmalloc-minimal4)

``--variant`` applies a config layer's ``model.init_args``, ``data.init_args`` and ``trainer.precision``, with
the layers it lists under ``config:`` first (as ``main.py`` reads them; later layers override earlier ones).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import yaml

from lightning_fed.cli import expand_config_layers, is_inline_config, read_config_file
from lightning_fed.datamodules import FKCB
from lightning_fed.errors import ConfigurationError, exit_with_error
from lightning_fed.memory import allocator, peak_memory_gb, preload_allocator
from lightning_fed.models import FMoECDSR

PRECISIONS = {"32": "32", "32-true": "32", "bf16": "bf16", "bf16-mixed": "bf16"}  # what this benchmark runs


def variant_settings(path: str) -> tuple[dict, dict, str | None]:
    """``(model init_args, data init_args, precision)`` of config layer ``path`` and of the layers it includes.

    Args:
        path: a config file for ``main.py`` that layers onto an FMoE-CDSR FKCB config.

    Returns:
        The merged ``model.init_args`` and ``data.init_args`` (later layers win) and ``"32"``, ``"bf16"`` or None
        (the layers set no ``trainer.precision``).

    Raises:
        ConfigurationError: a layer names another model or datamodule, or a precision this benchmark does not run.
    """
    model, data, precision = {}, {}, None
    layers = expand_config_layers(["--config", path])
    for value in layers[1::2]:  # "--config", value, "--config", value, ...
        inline = is_inline_config(value)  # a file's own keys after its layers, its section files' paths resolved
        content = yaml.safe_load(value) if inline else read_config_file(value)
        name = "an inline layer" if inline else value
        for section, kwargs in (("model", model), ("data", data)):
            settings = content.get(section) or {}
            if isinstance(settings, str):  # a section file, relative to the file that names it
                settings = read_config_file(settings if inline else str(Path(value).parent / settings))
            class_path = settings.get("class_path")
            expected = "FMoECDSR" if section == "model" else "FKCB"
            if class_path is not None and class_path.rsplit(".", 1)[-1] != expected:
                raise ConfigurationError(
                    f"{name}: {section}.class_path is {class_path}; this benchmark runs {expected}"
                )
            kwargs.update(settings.get("init_args") or {})
        value = (content.get("trainer") or {}).get("precision")
        if value is not None:
            if str(value) not in PRECISIONS:
                raise ConfigurationError(
                    f"{name}: trainer.precision {value!r}: this benchmark runs {', '.join(PRECISIONS)}"
                )
            precision = PRECISIONS[str(value)]
    return model, data, precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["bf16", "32"], default="bf16")
    parser.add_argument("--steps", type=int, default=7, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=None, help="loss_chunk_size (default: the model's)")
    parser.add_argument("--expert-chunk-size", type=int, default=None, help="expert_chunk_size (default: the model's)")
    parser.add_argument("--backward", choices=["per_expert", "joint"], default="per_expert")
    parser.add_argument("--fusion-logits", choices=["keep", "recompute"], default="keep")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--variant", default=None, help="a config layer (model, data and trainer.precision)")
    parser.add_argument("--allocator", choices=["default", "tcmalloc"], default="default")
    args = parser.parse_args()
    try:
        preload_allocator(args.allocator)
    except ConfigurationError as error:
        exit_with_error(f"--{error}")
    model_kwargs, data_kwargs = {}, {}
    if args.variant:
        try:
            model_kwargs, data_kwargs, precision = variant_settings(args.variant)
        except ConfigurationError as error:
            exit_with_error(f"--variant {error}")
        args.precision = precision or args.precision
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*self.log.*")
    torch.manual_seed(0)

    datamodule = FKCB(batch_size=args.batch_size, **data_kwargs).client_datamodules()["Food"]
    datamodule.setup()
    kwargs = {"loss_chunk_size": args.chunk_size} if args.chunk_size else {}
    if args.expert_chunk_size:
        kwargs["expert_chunk_size"] = args.expert_chunk_size
    kwargs.update(model_kwargs)
    model = FMoECDSR(hidden_dim=args.hidden_dim, backward=args.backward, fusion_logits=args.fusion_logits, **kwargs)
    model.build(datamodule)
    optimizer = model.configure_optimizers()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")

    batches = iter(datamodule.train_dataloader())
    times = []
    model.train()
    for step in range(2 + args.steps):
        batch = next(batches)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)  # before the forward: last step's gradients are not kept alive
        with autocast:
            loss = model.backward_step(batch)
        optimizer.step()
        if step >= 2:
            times.append(time.perf_counter() - start)

    model.eval()
    eval_times = []
    for _ in range(4):  # one warm-up pass, then the median of three
        model.val_metrics.reset()
        start = time.perf_counter()
        with torch.no_grad(), autocast:
            for batch in datamodule.val_dataloader():
                model.validation_step(batch, 0)
        eval_times.append(time.perf_counter() - start)
    metrics = {k: float(v) for k, v in model.val_metrics.compute().items()}
    eval_s = statistics.median(eval_times[1:])

    peak_rss_gb = peak_memory_gb()  # GB (10^9 bytes), as every benchmark and results.json report memory
    print(f"step times: {[round(t, 3) for t in times]}  loss {loss.item():.3f}  val MRR {metrics['MRR']:.4f}")
    result = {
        "train_step_s": round(statistics.median(times), 3),
        "eval_s": round(eval_s, 3),
        "peak_rss_gb": round(peak_rss_gb, 3),
        "allocator": allocator(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
