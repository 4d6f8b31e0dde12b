"""LightningCLI for federations.

``fit`` trains all clients and tests the best round; ``validate`` and ``test`` evaluate a saved federation.

The ``trainer`` section configures every client's Lightning Trainer (accelerator, precision, loggers, ...);
the ``federation`` section configures the rounds (:class:`~lightning_fed.federation.Federation`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_fed.errors import UserInputError
from lightning_fed.federation import Federation


class FederatedCLI(LightningCLI):
    """``LightningCLI`` whose "trainer" is a :class:`Federation` of per-client Trainers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", LightningModule)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 0)
        # The federation records the config in results.json; one SaveConfigCallback per client Trainer would
        # collide. Optimizers belong to the models (each client keeps its own across rounds).
        kwargs.setdefault("save_config_callback", None)
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(*args, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate and test; only ``ckpt_path`` is taken from the Trainer methods' arguments."""
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule", "weights_only"},
            "validate": {"model", "dataloaders", "datamodule", "verbose", "weights_only"},
            "test": {"model", "dataloaders", "datamodule", "verbose", "weights_only"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:  # noqa: D102
        parser.add_class_arguments(Federation, "federation")

    def before_instantiate_classes(self) -> None:
        """Run W&B offline when it is configured but no API key is available."""
        config = self.config.get(str(self.subcommand), self.config)
        loggers = config.get("trainer", {}).get("logger")
        loggers = loggers if isinstance(loggers, list) else [loggers]
        uses_wandb = any("WandbLogger" in str(getattr(lg, "class_path", "")) for lg in loggers if lg)
        if uses_wandb and not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
            print("W&B: no WANDB_API_KEY, logging offline (sync later with `wandb sync`)", flush=True)
            os.environ["WANDB_MODE"] = "offline"

    def instantiate_trainer(self, **kwargs: Any) -> Federation:
        """Return the configured :class:`Federation`, holding the Trainer arguments for its clients."""
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = trainer_config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        trainer_config["callbacks"] = callbacks + extra  # a new list: the parsed config is left as it was
        federation: Federation = self._get(self.config_init, "federation")
        config = self.config.get(str(self.subcommand), self.config)
        federation.configure_trainers(trainer_config, run_config=config.clone().as_dict())
        return federation


def main(args: list[str] | None = None) -> FederatedCLI:
    """Entry point: ``python main.py fit --config configs/fkcb_cpu.yaml``.

    Errors in the user's data or configuration (:class:`~lightning_fed.errors.UserInputError`) end the
    process with their message and exit status 2 when run from the command line (``args`` is None); called
    with ``args`` (tests, notebooks) they propagate.
    """
    if args is not None:
        return FederatedCLI(args=args)
    try:
        return FederatedCLI(args=args)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
