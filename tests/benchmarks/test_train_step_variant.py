"""benchmarks/train_step.py --variant: a config layer's settings, with the layers it includes, as main.py reads them."""

import importlib.util
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

REFERENCE = ROOT / "configs" / "variants" / "reference.yaml"


def _script():
    spec = importlib.util.spec_from_file_location("train_step", ROOT / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_reference_layer_gives_its_own_init_args_and_fp32():
    layer = yaml.safe_load(REFERENCE.read_text())
    model, data, precision = _script().variant_settings(str(REFERENCE))
    assert model == layer["model"]["init_args"]
    assert data == layer["data"]["init_args"]
    assert precision == "32"


def test_included_layers_come_first_and_the_including_file_overrides_them(tmp_path):
    sgh = tmp_path / "sgh_reference.yaml"
    sgh.write_text(
        f"config: [{REFERENCE}, {ROOT / 'configs' / 'variants' / 'reference_sgh.yaml'}]\n"
        "model:\n  init_args:\n    anneal_cap: 0.5\n"
        "trainer:\n  precision: bf16-mixed\n"
    )
    model, data, precision = _script().variant_settings(str(sgh))
    assert model["kl_regularizer"] is True  # from reference.yaml
    assert model["contrastive_weight"] == 0.1  # reference_sgh.yaml overrides reference.yaml's 1.0
    assert model["anneal_cap"] == 0.5  # the including file overrides both (0.01 in reference_sgh.yaml)
    assert data["candidate_seed"] == 42
    assert precision == "bf16"


def test_a_layer_without_precision_keeps_the_command_line_one(tmp_path):
    layer = tmp_path / "no_gate.yaml"
    layer.write_text("model:\n  init_args:\n    gate: uniform\n")
    assert _script().variant_settings(str(layer)) == ({"gate": "uniform"}, {}, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("trainer:\n  precision: 16-mixed\n", "trainer.precision '16-mixed': this benchmark runs 32, 32-true, bf16"),
        ("model:\n  class_path: lightning_fed.models.FedSASRec\n", "class_path is lightning_fed.models.FedSASRec;"),
    ],
)
def test_a_layer_the_benchmark_cannot_run_is_one_line_and_status_2(tmp_path, content, message):
    layer = tmp_path / "layer.yaml"
    layer.write_text(content)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--variant", str(layer)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --variant {layer}: "), result.stderr
    assert message in lines[0]
