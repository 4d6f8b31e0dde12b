"""One client of a saved federation, as a ready LightningModule (for reuse outside the federation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning import LightningDataModule, LightningModule

from lightning_fed.checkpoint import import_class, load_checkpoint
from lightning_fed.errors import ConfigurationError
from lightning_fed.protocols import client_datamodules_of


def load_client(
    checkpoint: str | Path,
    client: str,
    datamodule: LightningDataModule | None = None,
    expected: type | None = None,
) -> tuple[LightningModule, LightningDataModule]:
    """Rebuild client ``client`` of a saved federation: its model (weights loaded, eval mode) and its datamodule.

    The model and the scenario are rebuilt from the configuration recorded in the checkpoint, the model's
    networks are built for the client's data, and the client's saved state (for FMoE-CDSR: its local expert, the
    downloaded experts it held and its gate) is loaded.

    Args:
        checkpoint: a federation checkpoint (``<run dir>/federation/best.pt`` or ``last.pt``).
        client: the client's name (what it holds: a domain, a scenario).
        datamodule: the client's datamodule, if the data lives elsewhere now (default: rebuilt from the
            checkpoint's data configuration).
        expected: a class the saved model must be an instance of.

    Raises:
        ConfigurationError: the file is not a federation checkpoint, has no such client, or records no
            configuration (written by an older version), or its model is not an ``expected``.
    """
    path = Path(checkpoint).expanduser()
    saved = load_checkpoint(path, option="checkpoint", mmap=True)  # only this client's weights are read
    if client not in saved["clients"]:
        raise ConfigurationError(f"{path}: the federation has no client {client!r}; it has {sorted(saved['clients'])}")
    model_config, data_config = saved.get("model_config"), saved.get("data_config")
    if not model_config or (datamodule is None and not data_config):
        raise ConfigurationError(
            f"{path} records no model/data configuration (written by an older version); build the model yourself, "
            f"call build(datamodule) and load_state_dict(torch.load(...)['clients'][{client!r}]['module'])"
        )
    model_class = import_class(model_config["class_path"])
    if expected is not None and not issubclass(model_class, expected):
        raise ConfigurationError(f"{path} holds {model_config['class_path']} clients, not {expected.__name__}")
    module: Any = model_class(**(model_config.get("init_args") or {}))
    if datamodule is None:
        scenario = import_class(data_config["class_path"])(**(data_config.get("init_args") or {}))
        datamodule = client_datamodules_of(scenario)[client]
    else:
        datamodule.setup("fit")
    module.build(datamodule)
    module.load_state_dict(saved["clients"][client]["module"])
    module.eval()
    return module, datamodule


class LoadableClient:
    """Adds :meth:`from_federation` to a client LightningModule."""

    @classmethod
    def from_federation(cls, checkpoint: str | Path, client: str, datamodule: LightningDataModule | None = None) -> Any:
        """Client ``client`` of a saved federation, weights loaded, in eval mode.

        ``FMoECDSR.from_federation("runs/fkcb_cpu/federation/best.pt", "Food")``; its datamodule (rebuilt from the
        checkpoint's data configuration unless given) is ``module.client_datamodule``.
        """
        module, datamodule = load_client(checkpoint, client, datamodule, expected=cls)
        module.client_datamodule = datamodule
        return module
