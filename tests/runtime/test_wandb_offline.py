import pytest

from lightning_fed.datamodules import FKCB
from lightning_fed.federation import Federation
from lightning_fed.models import FMoECDSR
from lightning_fed.strategies import ExpertExchange

pytest.importorskip("wandb")


def test_one_offline_wandb_run_per_federation(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")  # restored after the test (the logger sets it process-wide)
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="lightning-fed-test", save_dir=str(tmp_path), offline=True)
    federation = Federation(rounds=1, local_epochs=1, strategy=ExpertExchange())
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


@pytest.fixture
def no_wandb_env(monkeypatch, tmp_path):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def wandb_config(run_dir, **init_args):
    from jsonargparse import Namespace

    logger = Namespace(class_path="lightning.pytorch.loggers.WandbLogger", init_args=Namespace(**init_args))
    return Namespace(trainer=Namespace(default_root_dir=str(run_dir), logger=[logger]))


def test_a_wandb_login_in_the_netrc_stays_online(no_wandb_env, tmp_path, monkeypatch):
    import os

    from lightning_fed.wandb_mode import configure_wandb_loggers, has_wandb_credentials

    assert not has_wandb_credentials()
    no_wandb_env.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert has_wandb_credentials()
    config = wandb_config(tmp_path / "run", project="p")
    configure_wandb_loggers(config)
    assert "WANDB_MODE" not in os.environ
    assert config.trainer.logger[0].init_args.save_dir == str(tmp_path / "run")  # wandb/ goes in the run dir
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert not has_wandb_credentials()  # a login for another host does not count


def test_no_credentials_at_all_goes_offline_and_an_explicit_mode_is_kept(no_wandb_env, tmp_path, monkeypatch):
    import os

    from lightning_fed.wandb_mode import configure_wandb_loggers

    configure_wandb_loggers(wandb_config(tmp_path, project="p", save_dir="elsewhere"))
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    configure_wandb_loggers(wandb_config(tmp_path, project="p"))
    assert os.environ["WANDB_MODE"] == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    config = wandb_config(tmp_path, project="p", save_dir="elsewhere")
    configure_wandb_loggers(config)
    assert "WANDB_MODE" not in os.environ and config.trainer.logger[0].init_args.save_dir == "elsewhere"
