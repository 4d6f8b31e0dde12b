import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


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
