"""The round loop with a toy model: early stopping, the best round, results, checkpoints, run directories."""

import json

import pytest
import torch
from toy_federation import ToyClient, ToyScenario

from lightning_fed.checkpoint import load_checkpoint
from lightning_fed.errors import ConfigurationError
from lightning_fed.federation import Federation
from lightning_fed.strategies import ExpertExchange, FedAvg, LocalOnly, PersonalizedAggregation


def federation(tmp_path, **kwargs):
    kwargs.setdefault("strategy", FedAvg())
    kwargs.setdefault("monitor", "score")
    kwargs.setdefault("local_epochs", 1)
    fed = Federation(**kwargs)
    fed.configure_trainers({"default_root_dir": str(tmp_path), "enable_progress_bar": False, "logger": False})
    return fed


@pytest.mark.parametrize(
    ("patience", "scores", "rounds_run", "best_round"),
    [
        (0, [0.5, 0.4, 0.9, 0.9], 2, 1),  # Lightning's EarlyStopping: stop at the first round without improvement
        (1, [0.5, 0.6, 0.4, 0.9], 3, 2),
        (2, [0.5, 0.4, 0.3, 0.9], 3, 1),
        (2, [0.5, 0.4, 0.6, 0.5, 0.4, 0.9], 5, 3),  # an improvement resets the count
        (None, [0.5, 0.4, 0.3, 0.2], 4, 1),
    ],
)
def test_patience_counts_rounds_without_improvement(tmp_path, patience, scores, rounds_run, best_round):
    fed = federation(tmp_path, rounds=4 if patience is None else 6, patience=patience)
    results = fed.fit(ToyClient(scores), ToyScenario())
    assert results["rounds_run"] == rounds_run and results["best_round"] == best_round
    assert results["stopped_early"] is (patience is not None and rounds_run < 6)
    assert results["best_val_score"] == pytest.approx(scores[best_round - 1])


def test_results_keep_every_round_after_the_best_one_and_test_the_best_state(tmp_path):
    results = federation(tmp_path, rounds=3, patience=None).fit(ToyClient([0.9, 0.5, 0.4]), ToyScenario())
    assert results["best_round"] == 1 and results["rounds_run"] == 3
    assert [r["round"] for r in results["validation"]] == [1, 2, 3]
    assert [r["Avg"]["score"] for r in results["validation"]] == pytest.approx([0.9, 0.5, 0.4])
    assert all(r["resident_memory_gb"] > 0 for r in results["validation"])
    assert json.loads((tmp_path / "results.json").read_text())["validation"] == results["validation"]
    best = load_checkpoint(tmp_path / "federation" / "best.pt")
    last = load_checkpoint(tmp_path / "federation" / "last.pt")
    for client in ("a", "b"):  # the test ran with round 1's weights, not round 3's
        weight = best["clients"][client]["module"]["layer.weight"].sum().item()
        assert results["test"][client]["weight_sum"] == pytest.approx(weight)
        assert last["clients"][client]["module"]["layer.weight"].sum().item() != pytest.approx(weight)


@pytest.mark.parametrize(("release_memory", "calls"), [(True, 2 * (2 + 2) + 2), (False, 0)])
def test_freed_memory_is_returned_after_every_trainer_when_asked(tmp_path, monkeypatch, release_memory, calls):
    released = []
    monkeypatch.setattr("lightning_fed.client_runtime.release_free_memory", lambda: released.append(1))
    fed = federation(tmp_path, rounds=2, patience=None, release_memory=release_memory)
    fed.fit(ToyClient([0.5, 0.6]), ToyScenario())
    # two rounds of (2 clients' training + 2 validations), then the 2 clients' tests
    assert len(released) == calls


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"rounds": 0}, "federation.rounds"),
        ({"rounds": -1}, "federation.rounds"),
        ({"local_epochs": 0}, "federation.local_epochs"),
        ({"patience": -1}, "federation.patience"),
        ({"fraction": 0.0}, "federation.fraction"),
        ({"fraction": 1.5}, "federation.fraction"),
        ({"monitor": ""}, "federation.monitor"),
        ({"release_memory": "yes"}, "federation.release_memory"),
    ],
)
def test_every_federation_value_is_checked_up_front(kwargs, key):
    with pytest.raises(ConfigurationError, match=key):
        Federation(**{"strategy": FedAvg(), **kwargs})


def test_an_unknown_monitor_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigurationError, match="federation.monitor: ToyClient reports no validation metric 'MRR'"):
        federation(tmp_path, rounds=1, monitor="MRR").fit(ToyClient([0.5]), ToyScenario())
    assert not (tmp_path / "federation").exists()


def test_a_new_run_never_overwrites_another_runs_files(tmp_path):
    federation(tmp_path, rounds=1).fit(ToyClient([0.5]), ToyScenario())
    before = {p.name: p.read_bytes() for p in [tmp_path / "results.json", *(tmp_path / "federation").iterdir()]}
    with pytest.raises(ConfigurationError, match="already holds a federation run"):
        federation(tmp_path, rounds=1).fit(ToyClient([0.7]), ToyScenario())
    after = {p.name: p.read_bytes() for p in [tmp_path / "results.json", *(tmp_path / "federation").iterdir()]}
    assert after == before
    results = federation(tmp_path, rounds=1, overwrite=True).fit(ToyClient([0.7]), ToyScenario())
    assert results["best_val_score"] == pytest.approx(0.7)


def test_a_resumed_run_continues_its_history_and_its_run_id(tmp_path):
    first = federation(tmp_path, rounds=1, patience=None).fit(ToyClient([0.5, 0.6]), ToyScenario())
    resumed = federation(tmp_path, rounds=2, patience=None).fit(ToyClient([0.6, 0.6]), ToyScenario(), ckpt_path="last")
    assert resumed["run_id"] == first["run_id"]
    assert [r["round"] for r in resumed["validation"]] == [1, 2]
    assert resumed["validation"][0] == first["validation"][0]


def test_checkpoints_load_as_weights_only_and_record_the_configuration(tmp_path):
    fed = federation(tmp_path, rounds=1)
    fed.run_config = {"model": {"class_path": "toy.ToyClient", "init_args": {"scores": [0.5]}}, "data": None}
    fed.fit(ToyClient([0.5]), ToyScenario())
    checkpoint = torch.load(tmp_path / "federation" / "best.pt", weights_only=True)
    assert checkpoint["format"] == "lightning_fed.federation/1"
    assert checkpoint["model_config"] == {"class_path": "toy.ToyClient", "init_args": {"scores": [0.5]}}
    assert checkpoint["strategy"] == "FedAvg" and checkpoint["best_round"] == 1


@pytest.mark.parametrize(
    ("strategy", "accepted"),
    [(FedAvg(), True), (LocalOnly(), True), (ExpertExchange(), False), (PersonalizedAggregation(), False)],
)
def test_a_model_and_a_strategy_that_do_not_fit_are_refused_at_start(tmp_path, strategy, accepted):
    fed = federation(tmp_path, rounds=1, strategy=strategy)
    if accepted:
        fed.fit(ToyClient([0.5]), ToyScenario())
        return
    with pytest.raises(ConfigurationError) as info:
        fed.fit(ToyClient([0.5]), ToyScenario())
    message = str(info.value)
    assert type(strategy).__name__ in message and "ToyClient" in message
    assert "lightning_fed.strategies.FedAvg or lightning_fed.strategies.LocalOnly" in message
    assert not (tmp_path / "federation").exists()


def test_fast_dev_run_trains_one_round_of_one_batch_and_writes_nothing(tmp_path):
    fed = Federation(rounds=5, local_epochs=3, strategy=FedAvg(), monitor="score")
    fed.configure_trainers({"default_root_dir": str(tmp_path), "enable_progress_bar": False, "fast_dev_run": True})
    results = fed.fit(ToyClient([0.5, 0.6]), ToyScenario())
    assert results["rounds_run"] == 1 and fed.state.step == 2  # one batch per client
    assert list(tmp_path.iterdir()) == []


def test_the_monitored_metric_comes_from_the_model_unless_configured(tmp_path):
    fed = federation(tmp_path, rounds=2, monitor=None)
    results = fed.fit(ToyClient([0.5, 0.7]), ToyScenario())
    assert results["monitor"] == "score" and results["best_round"] == 2
    lower = federation(tmp_path / "min", rounds=2, monitor=None, monitor_mode="min")
    assert lower.fit(ToyClient([0.5, 0.7]), ToyScenario())["best_round"] == 1


def test_fraction_samples_that_share_of_the_clients_each_round(tmp_path):
    names = ("a", "b", "c", "d")
    runs = []
    for attempt in range(2):
        fed = federation(tmp_path / str(attempt), rounds=6, patience=None, fraction=0.5, sampling_seed=3)
        runs.append([r["participants"] for r in fed.fit(ToyClient([0.5]), ToyScenario(names))["validation"]])
    assert runs[0] == runs[1]  # seeded: the same clients in every run
    assert all(len(p) == 2 and set(p) <= set(names) for p in runs[0])
    assert len({tuple(p) for p in runs[0]}) > 1  # not always the same pair
    everyone = federation(tmp_path / "all", rounds=2, patience=None, fraction=1.0)
    assert all(
        r["participants"] == sorted(names) for r in everyone.fit(ToyClient([0.5]), ToyScenario(names))["validation"]
    )


def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path):
    scores = [0.1, 0.2, 0.3, 0.4]

    def client():
        torch.manual_seed(0)  # the same initial weights in both runs
        return ToyClient(scores)

    straight = federation(tmp_path / "straight", rounds=4, patience=None).fit(client(), ToyScenario())
    federation(tmp_path / "split", rounds=2, patience=None).fit(client(), ToyScenario())
    resumed = federation(tmp_path / "split", rounds=4, patience=None).fit(client(), ToyScenario(), ckpt_path="last")
    assert [r["round"] for r in resumed["validation"]] == [1, 2, 3, 4]
    assert [r["Avg"]["score"] for r in resumed["validation"]] == pytest.approx(scores)
    assert resumed["test"] == straight["test"]  # the same weights after round 4, trained in two sittings
    assert resumed["run_id"] != straight["run_id"]


def test_first_round_epochs_change_round_one_only(tmp_path):
    steps = {}
    for name, kwargs in (
        ("one", {"rounds": 1}),
        ("plain", {"rounds": 2}),
        ("first", {"rounds": 2, "first_round_epochs": 3}),
    ):
        fed = federation(tmp_path / name, **kwargs)
        fed.fit(ToyClient([0.5, 0.6]), ToyScenario())
        steps[name] = fed.state.step
    assert steps["plain"] == 2 * steps["one"]
    assert steps["first"] == (3 + 1) * steps["one"]  # 3 epochs in round 1, then local_epochs = 1
