"""W&B loggers of a federation: online when W&B has credentials, offline otherwise; files in the run directory."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

DEFAULT_HOST = "api.wandb.ai"


def wandb_host() -> str:
    """The W&B server's host name (``WANDB_BASE_URL``, default api.wandb.ai)."""
    base_url = os.environ.get("WANDB_BASE_URL", f"https://{DEFAULT_HOST}")
    return urlparse(base_url).hostname or DEFAULT_HOST


def _netrc_path() -> Path:
    if "NETRC" in os.environ:
        return Path(os.environ["NETRC"]).expanduser()
    home = Path.home()
    return home / ("_netrc" if os.name == "nt" and not (home / ".netrc").exists() else ".netrc")


def has_wandb_credentials() -> bool:
    """Whether W&B can log in without asking: an API key in the environment, or one saved by ``wandb login``.

    ``wandb login`` saves the key in the netrc file (``~/.netrc``, or ``$NETRC``) under the W&B host;
    ``WANDB_API_KEY`` and ``WANDB_IDENTITY_TOKEN_FILE`` give credentials through the environment.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = _netrc_path()
    if not path.is_file():
        return False
    try:
        entry = netrc.netrc(str(path)).authenticators(wandb_host())
    except (netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])


def _is_wandb(logger: Any) -> bool:
    return "WandbLogger" in str(getattr(logger, "class_path", "") or "")


def configure_wandb_loggers(config: Any) -> None:
    """Point every configured ``WandbLogger`` at the run directory, and go offline only when it must.

    W&B runs offline when ``WANDB_MODE`` says so, or when it has no credentials at all (then the run is synced
    later with ``wandb sync``); a user logged in with ``wandb login`` stays online. Unless the logger sets
    ``save_dir`` (or ``dir``), its ``wandb/`` folder goes into ``trainer.default_root_dir``, not the current
    directory.
    """
    loggers = config.get("trainer.logger")
    loggers = loggers if isinstance(loggers, list) else [loggers]
    wandb_loggers = [lg for lg in loggers if lg is not None and _is_wandb(lg)]
    if not wandb_loggers:
        return
    run_dir = str(config.get("trainer.default_root_dir") or Path.cwd())
    for logger in wandb_loggers:
        init_args = logger.get("init_args")
        if init_args is None:
            continue
        if init_args.get("save_dir") in (None, ".") and not init_args.get("dir"):
            init_args["save_dir"] = run_dir
    if "WANDB_MODE" in os.environ:
        return
    if not has_wandb_credentials():
        print(f"W&B: no credentials for {wandb_host()} (wandb login or WANDB_API_KEY): logging offline", flush=True)
        os.environ["WANDB_MODE"] = "offline"
