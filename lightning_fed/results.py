"""The run's results file and its markdown table."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def average_over_clients(per_client: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean over clients of every metric they all report."""
    names = [set(m) for m in per_client.values()]
    common = sorted(set.intersection(*names)) if names else []
    return {k: sum(float(m[k]) for m in per_client.values()) / len(per_client) for k in common}


def write_json_atomic(path: Path, content: Any) -> None:
    """Write JSON through a temporary file, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(content, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def markdown_table(table: Mapping[str, Mapping[str, float]], percent: bool = True) -> str:
    """Rows = clients (and Avg), columns = metrics; values in % when ``percent`` (loglosses stay as they are)."""
    rows = list(table)
    metrics = list(next(iter(table.values())))
    header = "| Domain | " + " | ".join(metrics) + " |"
    lines = [header, "|" + "---|" * (len(metrics) + 1)]
    for row in rows:
        values = [100 * table[row][m] if percent and not m.startswith("logloss") else table[row][m] for m in metrics]
        lines.append(
            f"| {row} | "
            + " | ".join(f"{v:.4f}" if m.startswith("logloss") else f"{v:.2f}" for m, v in zip(metrics, values))
            + " |"
        )
    return "\n".join(lines)
