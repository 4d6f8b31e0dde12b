import copy

import torch
from lightning import Callback
from lightning.pytorch.loggers import CSVLogger

from lightning_fed.client_logger import ClientLogger
from lightning_fed.datamodules import FKCB
from lightning_fed.federation import Federation
from lightning_fed.models import FMoECDSR
from lightning_fed.strategies import ExpertExchange
from lightning_fed.trainer_factory import TrainerFactory


class Counter(Callback):
    def __init__(self):
        self.fits = 0

    def on_fit_start(self, trainer, pl_module):
        self.fits += 1


def test_each_client_gets_its_own_callbacks_kept_across_rounds(tmp_path):
    shared = Counter()
    factory = TrainerFactory({"callbacks": [shared], "default_root_dir": str(tmp_path), "logger": False})
    a1 = factory.eval_trainer("a", Callback())
    a2 = factory.eval_trainer("a", Callback())
    b1 = factory.eval_trainer("b", Callback())
    counter = lambda t: next(cb for cb in t.callbacks if isinstance(cb, Counter))  # noqa: E731
    assert counter(a1) is counter(a2)
    assert counter(a1) is not counter(b1) and counter(a1) is not shared
    assert factory.callbacks == [shared]  # the configured list is not extended


def test_client_logger_prefixes_names_and_continues_the_step_axis(tmp_path):
    csv = CSVLogger(tmp_path, name="csv", version="")
    offset = {"step": 100}
    logger = ClientLogger([csv], "Food", lambda: offset["step"])
    logger.log_metrics({"train/loss": 1.5, "epoch": 0}, step=7)
    csv.save()
    text = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    assert text[0].split(",") == ["Food/train/loss", "step"] or set(text[0].split(",")) == {"Food/train/loss", "step"}
    assert "107" in text[1] and "1.5" in text[1]


def test_two_rounds_keep_optimizer_state_and_exchange_encoders(tmp_path):
    torch.manual_seed(0)
    scenario = FKCB(domains=["Food", "Beauty"], max_sequences=64, batch_size=32, num_negatives=99)
    federation = Federation(rounds=2, local_epochs=1, patience=None, strategy=ExpertExchange())
    federation.configure_trainers(
        {"default_root_dir": str(tmp_path), "accelerator": "cpu", "enable_progress_bar": False, "logger": False}
    )
    model = FMoECDSR(hidden_dim=16, num_heads=2)
    results = federation.fit(model, scenario)
    assert results["rounds_run"] == 2 and len(results["validation"]) == 2
    checkpoint = torch.load(tmp_path / "federation" / "last.pt", weights_only=False)
    for client in ("Food", "Beauty"):
        (adam_state,) = checkpoint["clients"][client]["sync"]["optimizer_states"]
        steps = {float(s["step"]) for s in adam_state["state"].values()}
        assert steps == {4.0}  # 2 batches per epoch, 2 rounds: Adam's step count continued across fits
    # The server cache holds each client's last upload, equal to that client's local encoder.
    store = checkpoint["server"]["store"]
    food_state = checkpoint["clients"]["Food"]["module"]
    for name, value in store["Food"].items():
        assert torch.equal(value, food_state[f"net.experts.0.{name}"])
    # Beauty's copy of Food's expert (expert 0 in the scenario order) is the downloaded encoder.
    beauty_state = checkpoint["clients"]["Beauty"]["module"]
    for name, value in store["Food"].items():
        assert torch.equal(value, beauty_state[f"net.experts.0.{name}"])


def test_the_round_callback_keeps_the_optimizer_state_and_frees_the_gradients():
    from types import SimpleNamespace

    from lightning_fed.callbacks import FederatedRound

    torch.manual_seed(0)
    module = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(module.parameters())
    module(torch.randn(4, 3)).square().sum().backward()
    optimizer.step()
    moments = {k: v["exp_avg"].clone() for k, v in optimizer.state_dict()["state"].items()}
    sync = FederatedRound("Food", server=None)
    sync.on_train_end(SimpleNamespace(optimizers=[optimizer]), module)
    assert all(p.grad is None for p in module.parameters())
    (kept,) = sync.optimizer_states
    assert set(kept["state"]) == set(moments)
    for k, value in moments.items():
        assert torch.equal(kept["state"][k]["exp_avg"], value)


def test_template_model_is_not_modified(tmp_path):
    scenario = FKCB(domains=["Beauty"], max_sequences=32, batch_size=32, num_negatives=99)
    federation = Federation(rounds=1, local_epochs=1, strategy=ExpertExchange())
    federation.configure_trainers({"default_root_dir": str(tmp_path), "enable_progress_bar": False})
    model = FMoECDSR(hidden_dim=16, num_heads=2)
    snapshot = copy.deepcopy(model.state_dict())
    federation.fit(model, scenario)
    assert model.net is None and model.state_dict().keys() == snapshot.keys()


def test_a_stopped_run_resumes_from_last_checkpoint(tmp_path):
    scenario = FKCB(domains=["Food", "Beauty"], max_sequences=64, batch_size=32, num_negatives=99)
    trainer_config = {"default_root_dir": str(tmp_path), "enable_progress_bar": False, "logger": False}
    torch.manual_seed(0)
    first = Federation(rounds=1, local_epochs=1, patience=None, strategy=ExpertExchange())
    first.configure_trainers(trainer_config)
    first.fit(FMoECDSR(hidden_dim=16, num_heads=2), scenario)
    resumed = Federation(rounds=2, local_epochs=1, patience=None, strategy=ExpertExchange())
    resumed.configure_trainers(trainer_config)
    results = resumed.fit(FMoECDSR(hidden_dim=16, num_heads=2), scenario, ckpt_path=tmp_path / "federation" / "last.pt")
    assert [r["round"] for r in results["validation"]] == [1, 2]  # round 1 kept, only round 2 trained
    checkpoint = torch.load(tmp_path / "federation" / "last.pt", weights_only=False)
    (adam_state,) = checkpoint["clients"]["Food"]["sync"]["optimizer_states"]
    assert {float(s["step"]) for s in adam_state["state"].values()} == {4.0}  # 2 batches x 2 rounds
    assert checkpoint["round"] == 2


def test_model_summary_only_when_asked_for(tmp_path):
    from lightning.pytorch.callbacks import ModelSummary

    def has_summary(config):
        trainer = TrainerFactory({"default_root_dir": str(tmp_path), "logger": False, **config}).eval_trainer(
            "a", Callback()
        )
        return any(isinstance(cb, ModelSummary) for cb in trainer.callbacks)

    assert not has_summary({}) and not has_summary({"enable_model_summary": None})
    assert has_summary({"enable_model_summary": True})


def _local_fedsasrec(run_dir, domains, seed=7, rounds=2):
    from lightning_fed.models import FedSASRec
    from lightning_fed.strategies import LocalOnly

    scenario = FKCB(domains=domains, max_sequences=64, batch_size=32, num_negatives=99)
    federation = Federation(rounds=rounds, local_epochs=1, patience=None, strategy=LocalOnly())
    federation.configure_trainers(
        {"default_root_dir": str(run_dir), "accelerator": "cpu", "enable_progress_bar": False, "logger": False},
        run_config={"seed_everything": seed},
    )
    torch.manual_seed(123)  # whatever the process RNG holds, the federation seeds each client and round itself
    return federation.fit(FedSASRec(hidden_dim=16, num_heads=2, dropout=0.3), scenario)


def test_a_clients_training_does_not_depend_on_the_other_clients_or_their_order(tmp_path):
    both = _local_fedsasrec(tmp_path / "both", ["Food", "Beauty"])
    swapped = _local_fedsasrec(tmp_path / "swapped", ["Beauty", "Food"])
    alone = _local_fedsasrec(tmp_path / "alone", ["Beauty"])
    for run in (swapped, alone):
        assert [r["Beauty"] for r in run["validation"]] == [r["Beauty"] for r in both["validation"]]
        assert run["test"]["Beauty"] == both["test"]["Beauty"]
    other_seed = _local_fedsasrec(tmp_path / "seed8", ["Beauty"], seed=8)
    assert other_seed["validation"][-1]["Beauty"] != alone["validation"][-1]["Beauty"]


def test_a_clients_trainer_runs_on_one_device(tmp_path):
    """Lightning's devices="auto" takes every GPU (and DDP); a federation's client Trainer takes one."""
    import pytest

    from lightning_fed.errors import ConfigurationError

    def devices(value):
        return TrainerFactory({"default_root_dir": str(tmp_path), "devices": value}).config["devices"]

    assert devices("auto") == 1 and devices(None) == 1
    assert devices(1) == 1 and devices("1") == "1" and devices([2]) == [2] and devices("3,") == "3,"  # as given
    trainer = TrainerFactory({"default_root_dir": str(tmp_path), "logger": False}).eval_trainer("a", Callback())
    assert trainer.num_devices == 1 and trainer.world_size == 1
    for config, key in [
        ({"devices": 2}, "trainer.devices"),
        ({"devices": -1}, "trainer.devices"),
        ({"devices": [0, 1]}, "trainer.devices"),
        ({"devices": "0,1"}, "trainer.devices"),
        ({"devices": True}, "trainer.devices"),
        ({"num_nodes": 2}, "trainer.num_nodes"),
        ({"strategy": "ddp"}, "trainer.strategy: 'ddp'"),
        ({"strategy": "fsdp"}, "trainer.strategy: 'fsdp'"),
    ]:
        with pytest.raises(ConfigurationError, match=key.replace(".", r"\.")) as error:
            TrainerFactory({"default_root_dir": str(tmp_path), **config})
        assert "federation.runtime: flower" in str(error.value)
    from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy

    with pytest.raises(ConfigurationError, match="'DDPStrategy' runs several processes"):
        TrainerFactory({"strategy": DDPStrategy()})
    TrainerFactory({"strategy": SingleDeviceStrategy("cpu")})  # one process, one device: accepted
