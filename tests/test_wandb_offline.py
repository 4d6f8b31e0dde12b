import pytest

from lightning_fed.datamodules import FKCB
from lightning_fed.federation import Federation
from lightning_fed.models import FMoECDSR

pytest.importorskip("wandb")


def test_one_offline_wandb_run_per_federation(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")  # restored after the test (the logger sets it process-wide)
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="lightning-fed-test", save_dir=str(tmp_path), offline=True)
    federation = Federation(rounds=1, local_epochs=1)
    federation.configure_trainers(
        {"default_root_dir": str(tmp_path), "logger": [logger], "enable_progress_bar": False, "log_every_n_steps": 1}
    )
    scenario = FKCB(domains=["Food", "Beauty"], max_sequences=32, batch_size=32, num_negatives=99)
    federation.fit(FMoECDSR(hidden_dim=16, num_heads=2), scenario)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # both clients log into the same run
    csv_log = tmp_path / "csv" / "version_0" / "metrics.csv"  # CSV is always there too
    header = csv_log.read_text().splitlines()[0].split(",")
    assert {"Food/train/loss", "Beauty/train/loss", "Avg/val/MRR", "Food/val/MRR", "round"} <= set(header)
