"""The federation checkpoint file: written atomically, read back with ``weights_only=True`` and clear errors.

A checkpoint (``<run dir>/federation/last.pt`` every round, ``best.pt`` at each improvement) is a dict with
``format``, ``run_id``, the loop state, ``history``, ``server`` (parameter store and strategy state), ``clients``
(each client's module and synchronization state) and ``model_config`` / ``data_config`` (the ``class_path`` and
``init_args`` the federation was built from), so ``test``, ``validate`` and a resumed ``fit`` rebuild the same
networks without repeating the ``fit`` command's overrides.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

import torch

from lightning_fed.atomic import write_atomically
from lightning_fed.errors import ConfigurationError

#: Written into every checkpoint; a file without it is not a federation checkpoint of this project.
FORMAT = "lightning_fed.federation/1"


def import_class(class_path: str) -> type:
    """The class a saved configuration names by its ``class_path``."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def resolve_ckpt_path(
    ckpt_path: str | Path | None, run_dir: Path, default: Literal["best", "last"] | None = None
) -> Path | None:
    """A user-given checkpoint: a path, or Lightning's keywords ``"best"`` / ``"last"`` for ``run_dir``'s files.

    Args:
        ckpt_path: what the user gave (None: ``default``).
        run_dir: the run directory (``trainer.default_root_dir``).
        default: the run directory's file to use when nothing is given (None: no checkpoint).
    """
    if ckpt_path is None:
        return None if default is None else run_dir / "federation" / f"{default}.pt"
    if str(ckpt_path) in ("best", "last"):
        return run_dir / "federation" / f"{ckpt_path}.pt"
    if str(ckpt_path) in ("hpc", "registry") or str(ckpt_path).startswith("registry:"):
        raise ConfigurationError(
            f"ckpt_path: {ckpt_path!r} is a Lightning keyword a federation does not use; give a file, 'best' or 'last'"
        )
    return Path(ckpt_path).expanduser()


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> Path:
    """Write ``checkpoint`` to ``path`` through a temporary file: a crash never damages the previous file."""
    return write_atomically(path, lambda tmp: torch.save({"format": FORMAT, **checkpoint}, tmp))


def load_checkpoint(path: str | Path, option: str = "ckpt_path", mmap: bool = False) -> dict[str, Any]:
    """Read a federation checkpoint; any problem is a one-line :class:`ConfigurationError` naming the file.

    The file is loaded with ``weights_only=True``: a checkpoint is data, never code.

    Args:
        path: the file.
        option: the setting the path came from, named in the messages.
        mmap: map the tensors' storage instead of reading it: only the tensors a caller touches are read, for a
            caller that needs part of the file (the saved configuration, the loop state, the weights an evaluation
            copies but not the optimizer states): a paper-scale checkpoint is gigabytes.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ConfigurationError(f"{option}: {path} {what}; give a saved federation (federation/best.pt or last.pt)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # noqa: BLE001 - unpickling garbage raises anything (IndexError, KeyError, ...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigurationError(
            f"{option}: {path} cannot be read as a checkpoint (truncated, damaged or not a torch file: {reason[:160]})"
        ) from None
    # Checkpoints written before ``format`` existed hold the same "clients" and "server" entries.
    if not isinstance(checkpoint, dict) or not {"clients", "server"} <= set(checkpoint):
        if isinstance(checkpoint, dict) and "state_dict" in checkpoint and "pytorch-lightning_version" in checkpoint:
            kind = "a Lightning checkpoint of a single LightningModule, not a federation"
        else:
            kind = "not a federation checkpoint"
        raise ConfigurationError(
            f"{option}: {path} is {kind}; give a saved federation written by `fit` "
            "(<run dir>/federation/best.pt or last.pt)"
        )
    return checkpoint
