"""The run's results file and its markdown table."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lightning_fed.atomic import write_atomically


def average_over_clients(per_client: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean over clients of every metric they all report."""
    names = [set(m) for m in per_client.values()]
    common = sorted(set.intersection(*names)) if names else []
    return {k: sum(float(m[k]) for m in per_client.values()) / len(per_client) for k in common}


def write_json_atomic(path: Path, content: Any) -> None:
    """Write JSON through a temporary file, so a crash never leaves a half-written file."""
    text = json.dumps(content, indent=2, default=str) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))


def markdown_table(table: Mapping[str, Mapping[str, float]], is_fraction: Callable[[str], bool] | None = None) -> str:
    """Rows = clients (and Avg), columns = metrics; fractions in % with 2 decimals, other values with 4.

    Args:
        table: metric values per row.
        is_fraction: whether a metric is a fraction (the model's ``metric_is_fraction``; default: all are).
    """
    rows = list(table)
    metrics = list(next(iter(table.values())))
    fraction = {m: is_fraction(m) if is_fraction is not None else True for m in metrics}
    lines = ["| Client | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for row in rows:
        cells = [f"{100 * table[row][m]:.2f}" if fraction[m] else f"{table[row][m]:.4f}" for m in metrics]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
