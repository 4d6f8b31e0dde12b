import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]
CONFIG = f"--config={ROOT / 'configs' / 'fkcb_cpu.yaml'}"
#: Overrides that make configs/fkcb_cpu.yaml a few-second federation of two real FKCB slices.
TINY = [
    "--data.init_args.domains=[Food, Beauty]",
    "--data.init_args.max_sequences=64",
    "--data.init_args.batch_size=32",
    "--data.init_args.num_negatives=99",
    "--model.init_args.hidden_dim=16",
    "--model.init_args.num_heads=2",
    "--federation.rounds=1",
    "--trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory):
    """A one-round federation of two tiny FKCB clients, trained with overrides the later commands do not repeat."""
    from lightning_fed.cli import main

    run_dir = tmp_path_factory.mktemp("saved_run")
    main(["fit", CONFIG, *TINY, f"--trainer.default_root_dir={run_dir}"])
    return run_dir


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Candidate caches go to a per-session temporary directory."""
    monkeypatch.setenv("LIGHTNING_FED_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def write_domain(root: Path, domain: str, num_items: int | str | None, splits: dict[str, str]) -> Path:
    """Write a domain directory in the FedDCSR text format."""
    directory = root / domain
    directory.mkdir(parents=True, exist_ok=True)
    if num_items is not None:
        (directory / "num_items.txt").write_text(f"{num_items}\n")
    for split, text in splits.items():
        (directory / f"{split}_data.txt").write_text(text)
    return directory


#: Two rounds of two real FKCB domains (400 sequences each): a smoke run that ranks well above chance.
SLICE = [
    "--data.init_args.domains=[Food, Beauty]",
    "--data.init_args.max_sequences=400",
    "--data.init_args.batch_size=64",
    "--federation.rounds=2",
    "--federation.local_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--model.init_args.hidden_dim=32",
    "--model.init_args.lr=0.005",
]


def fit_slice(config: str, run_dir: Path) -> dict:
    """``fit`` a top-level config on :data:`SLICE`; its results.json, checked for the two rounds and FedAvg-style
    bookkeeping every smoke test relies on."""
    import json

    from lightning_fed.cli import main

    main(["fit", f"--config={ROOT / 'configs' / config}", *SLICE, f"--trainer.default_root_dir={run_dir}"])
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["round"] for r in results["validation"]] == [1, 2]
    assert set(results["test"]) == {"Food", "Beauty", "Avg"}
    return results


@pytest.fixture(scope="module")
def food():
    """Client Food of FKCB, 64 sequences per split, batch 16, 99 negatives, FKCB's model_defaults (set up)."""
    import yaml

    from lightning_fed.datamodules import FKCB

    defaults = yaml.safe_load((ROOT / "configs" / "data" / "fkcb.yaml").read_text())["data"]["init_args"]
    scenario = FKCB(domains=["Food"], max_sequences=64, batch_size=16, num_negatives=99, **defaults)
    dm = scenario.client_datamodules()["Food"]
    dm.setup()
    return dm
