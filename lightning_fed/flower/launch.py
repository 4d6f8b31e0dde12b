"""``federation.runtime: flower``: write the run's Flower App and submit it with ``flwr run``.

The App is a small directory of its own, never the project's root: Flower ships the App directory to the SuperLink
and to every SuperNode and puts it first on ``sys.path``, where the repository's ``lightning_fed/`` folder (without
its ``models``, ``datamodules`` and ``callbacks``, which the installed package maps in) would shadow the installed
package. It holds:

- ``pyproject.toml``: the App's name, its two components and its run config (``round-timeout``, ``resume``);
- ``lightning_fed_app/apps.py``: ``server_app`` and ``client_app`` of the experiment beside it;
- ``experiment.yaml``: the resolved configuration of the ``fit`` command, which the server and every client read.

Every machine must have the same ``lightning-fed[flower]`` installed (the App declares no dependency, so Flower's
runtime dependency installation has nothing to do).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from lightning_fed.errors import ConfigurationError
from lightning_fed.flower.experiment import write_experiment

#: Environment for every Flower process we start: no telemetry, no update check (Flower does both by default).
QUIET_FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}

APPS_PY = '''"""The Flower App of one lightning-fed run (written by lightning_fed.flower.launch)."""

from pathlib import Path

from lightning_fed.flower.client_app import make_client_app
from lightning_fed.flower.server_app import make_server_app

EXPERIMENT = Path(__file__).resolve().parents[1] / "experiment.yaml"
server_app = make_server_app(EXPERIMENT)
client_app = make_client_app(EXPERIMENT)
'''

PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "lightning-fed-run"
version = "1.0.0"
description = "One lightning-fed federation (written by lightning_fed.flower.launch)"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["lightning_fed_app"]

[tool.flwr.app]
publisher = "lightning-fed"

[tool.flwr.app.components]
serverapp = "lightning_fed_app.apps:server_app"
clientapp = "lightning_fed_app.apps:client_app"

[tool.flwr.app.config]
round-timeout = {timeout}
resume = "{resume}"
"""


def flower_env() -> dict[str, str]:
    """The environment of this process, with Flower's telemetry and update check off."""
    return {**os.environ, **QUIET_FLOWER_ENV}


def write_app(run_config: dict[str, Any], app_dir: Path, round_timeout: float = 3600.0, resume: str = "") -> Path:
    """Write the Flower App of a run (``run_config``: the ``fit`` command's resolved configuration)."""
    if app_dir.exists():
        shutil.rmtree(app_dir)
    (app_dir / "lightning_fed_app").mkdir(parents=True)
    (app_dir / "lightning_fed_app" / "__init__.py").write_text("", encoding="utf-8")
    (app_dir / "lightning_fed_app" / "apps.py").write_text(APPS_PY, encoding="utf-8")
    (app_dir / "pyproject.toml").write_text(
        PYPROJECT.format(timeout=float(round_timeout), resume=json.dumps(resume)[1:-1]), encoding="utf-8"
    )
    write_experiment(run_config, app_dir / "experiment.yaml")
    return app_dir


def submit(app_dir: Path, superlink: str, stream: bool = True) -> None:
    """``flwr run <app_dir> <superlink> [--stream]``; a failure is a one-line error naming the command."""
    beside = Path(sys.executable).parent / "flwr"  # the flwr of this interpreter's environment, activated or not
    flwr = str(beside) if beside.is_file() else shutil.which("flwr")
    if flwr is None:
        raise ConfigurationError(
            "federation.runtime: flower needs the `flwr` command: pip install 'lightning-fed[flower]'"
        )
    command = [flwr, "run", str(app_dir), superlink, *(["--stream"] if stream else [])]
    proc = subprocess.run(command, env=flower_env())
    if proc.returncode != 0:
        raise ConfigurationError(
            f"flower: `{' '.join(command)}` exited with status {proc.returncode} (see its output above)"
        )
