"""The runtime's contract: what lightning_fed/ may name, what models may import, and the seams between them."""

import ast
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from lightning_fed.callbacks import FederatedRound
from lightning_fed.errors import ConfigurationError
from lightning_fed.federation import Federation
from lightning_fed.results import markdown_table
from lightning_fed.rounds import RoundClock
from lightning_fed.server import Server
from lightning_fed.strategies import FedAvg, PersonalizedAggregation, Upload

MODEL_OR_METRIC = re.compile(r"FMoE|FedSASRec|PFMSMTrec|MMoE|\bPLE\b|SharedBottom|MRR|NDCG|HR@|AUC|logloss")


def _code_words(path: Path):
    """Identifiers, imported names and string constants of a module, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node.lineno, " ".join([getattr(node, "module", None) or "", *(a.name for a in node.names)])


def test_the_runtime_names_no_model_and_no_metric_of_one_family():
    runtime = [p for p in (ROOT / "lightning_fed").rglob("*.py") if "strategies" not in p.parts]
    found = [
        f"{p.name}:{line}: {word}" for p in runtime for line, word in _code_words(p) if MODEL_OR_METRIC.search(word)
    ]
    assert found == []


def test_the_federation_has_no_default_strategy_and_no_default_metric():
    import inspect

    parameters = inspect.signature(Federation.__init__).parameters
    assert parameters["strategy"].default is inspect.Parameter.empty
    assert parameters["monitor"].default is None and parameters["monitor_mode"].default is None


def test_no_model_imports_a_datamodule():
    offending = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in (ROOT / "models").rglob("*.py")
        for line, word in _code_words(p)
        if "lightning_fed.datamodules" in word
    ]
    assert offending == []


def test_the_round_view_is_read_only_and_follows_the_clock():
    clock = RoundClock(total_rounds=5)
    sync = FederatedRound("a", server=None, rounds=clock.view)
    clock.start(3)
    assert (sync.rounds.round, sync.rounds.total_rounds) == (3, 5)
    assert sync.state_dict()["round"] == 3
    with pytest.raises(AttributeError):
        sync.rounds.round = 4


def test_a_client_may_not_take_the_name_of_a_payload_origin():
    with pytest.raises(ConfigurationError, match="'global'"):
        Server(FedAvg(), ["Food", "global"])


def test_results_print_fractions_in_percent_and_other_metrics_as_they_are():
    table = {"a": {"AUC": 0.75, "logloss": 0.5}, "Avg": {"AUC": 0.5, "logloss": 0.25}}
    text = markdown_table(table, is_fraction=lambda name: name != "logloss")
    assert text.splitlines()[2:] == ["| a | 75.00 | 0.5000 |", "| Avg | 50.00 | 0.2500 |"]
    assert markdown_table(table).splitlines()[2] == "| a | 75.00 | 50.00 |"


def test_personalized_aggregation_takes_its_group_policy_as_arguments():
    states = {
        "a": {"scenario/e": torch.tensor([0.0]), "custom/w": torch.tensor([1.0]), "tower0/t": torch.tensor([1.0])},
        "b": {"scenario/e": torch.tensor([2.0]), "custom/w": torch.tensor([3.0]), "tower0/t": torch.tensor([5.0])},
    }
    uploads = {k: Upload(v, num_examples=1) for k, v in states.items()}
    with pytest.raises(ValueError, match="'custom' is in no policy"):
        PersonalizedAggregation().aggregate({}, uploads)
    strategy = PersonalizedAggregation(averaged_groups=("custom",), tower_groups=(), coordinated_groups=("tower*",))
    store = {}
    strategy.aggregate(store, uploads)
    torch.testing.assert_close(store["global"]["custom/w"], torch.tensor([2.0]))  # plain mean
    torch.testing.assert_close(store["global"]["tower0/t"], torch.tensor([3.0]))  # coordinated, one group: the mean
    assert "tower0/t" not in store["a"] and "scenario/e" in store["a"]  # towers no longer personalized
    kept = PersonalizedAggregation(local_groups=("custom", "tower*"))
    store = {}
    kept.initialize(store, states["a"])
    kept.aggregate(store, uploads)
    assert all(not k.startswith(("custom/", "tower0/")) for state in store.values() for k in state)
