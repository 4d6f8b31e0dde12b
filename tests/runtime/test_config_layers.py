"""Config layers: ``config: [...]`` in a config file means one --config per layer, before the file itself."""

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from lightning_fed.cli import expand_config_layers, main
from lightning_fed.errors import ConfigurationError


def _printed(capsys, args):
    with pytest.raises(SystemExit):
        main(["fit", *args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def layered(tmp_path):
    _write(tmp_path / "layers" / "model.yaml", "model:\n  class_path: lightning_fed.models.FedSASRec\n"
           "federation:\n  strategy: lightning_fed.strategies.FedAvg\n  rounds: 5\n")  # fmt: skip
    _write(tmp_path / "layers" / "budget.yaml", "config: [base.yaml]\nfederation:\n  rounds: 7\n  patience: 4\n")
    _write(tmp_path / "layers" / "base.yaml", "trainer:\n  precision: bf16-mixed\nfederation:\n  local_epochs: 2\n")
    return _write(
        tmp_path / "run.yaml",
        "config: [layers/model.yaml, layers/budget.yaml]\ndata:\n  class_path: lightning_fed.datamodules.FKCB\n"
        "federation:\n  patience: 1\n",
    )


def test_later_layers_win_and_the_file_wins_over_its_layers(capsys, layered):
    config = _printed(capsys, [f"--config={layered}"])
    assert config["model"]["class_path"] == "lightning_fed.models.FedSASRec"  # paths relative to the file
    assert config["federation"]["rounds"] == 7  # budget.yaml after model.yaml
    assert config["federation"]["local_epochs"] == 2  # a layer's own layer
    assert config["federation"]["patience"] == 1  # the file over its layers
    assert config["trainer"]["precision"] == "bf16-mixed"
    assert _printed(capsys, ["--config", str(layered), "--federation.rounds=9"])["federation"]["rounds"] == 9


def test_a_file_with_layers_equals_the_layers_given_one_by_one(capsys, layered):
    layers = layered.parent / "layers"
    explicit = [f"--config={layers / 'model.yaml'}", f"--config={layers / 'base.yaml'}"]
    explicit += [f"--config={layers / 'budget.yaml'}", f"--config={layered}"]
    assert _printed(capsys, [f"--config={layered}"]) == _printed(capsys, explicit)


def test_expansion_keeps_other_arguments_and_files_without_layers(tmp_path, layered):
    plain = _write(tmp_path / "plain.yaml", "federation:\n  rounds: 2\n")
    args = ["fit", "--config", str(plain), "--config", str(layered), "--x=1"]
    expanded = expand_config_layers(args)
    assert expanded[:3] == ["fit", "--config", str(plain)] and expanded[-1] == "--x=1"
    assert expanded.count("--config") == 5  # plain, model, base, budget, and run.yaml's own content


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("config: [missing.yaml]\n", "missing.yaml: no such file"),
        ("config: [{a: 1}]\n", "config: must list config files"),
        ("config: [loop.yaml]\n", "include each other in a cycle"),
    ],
)
def test_bad_layers_are_refused_naming_the_file(tmp_path, text, message):
    loop = _write(tmp_path / "loop.yaml", text)
    with pytest.raises(ConfigurationError, match=message):
        main(["fit", f"--config={loop}"])


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_top_level_config_resolves(capsys, name):
    config = _printed(capsys, [f"--config={ROOT / 'configs' / name}"])
    assert config["model"]["class_path"].startswith("lightning_fed.models.")
    assert config["data"]["class_path"].startswith("lightning_fed.datamodules.")
    assert config["federation"]["strategy"]["class_path"].startswith("lightning_fed.strategies.")


def test_a_config_without_a_strategy_is_one_line_with_exit_status_2(tmp_path):
    config = _write(
        tmp_path / "c.yaml",
        "model:\n  class_path: lightning_fed.models.FedSASRec\ndata:\n  class_path: lightning_fed.datamodules.FKCB\n",
    )
    done = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "fit", f"--config={config}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "federation.strategy" in lines[0]
