import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIG, TINY
from conftest import SLICE as CONFTEST_SLICE

from lightning_fed.cli import main

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"MRR", "HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10"}
SLICE = [*CONFTEST_SLICE, "--trainer.accelerator=cpu"]


def run(config, tmp_path, *extra):
    main(["fit", f"--config={ROOT / 'configs' / config}", *SLICE, f"--trainer.default_root_dir={tmp_path}", *extra])
    return json.loads((tmp_path / "results.json").read_text())


def check_results(results):
    assert set(results["test"]) == {"Food", "Beauty", "Avg"}
    for row in results["test"].values():
        assert set(row) == METRICS and all(0.0 <= v <= 1.0 for v in row.values())
    avg = results["test"]["Avg"]
    assert math.isclose(avg["MRR"], (results["test"]["Food"]["MRR"] + results["test"]["Beauty"]["MRR"]) / 2)
    assert [r["round"] for r in results["validation"]] == [1, 2]
    assert results["best_round"] in (1, 2)
    assert results["config"]["federation"]["rounds"] == 2
    assert avg["MRR"] > 0.03  # chance with 1000 candidates is about 0.0075


def test_fmoe_cdsr_two_rounds_on_real_fkcb(tmp_path, capsys):
    results = run("fkcb_cpu.yaml", tmp_path, "--model.init_args.hidden_dim=32", "--model.init_args.lr=0.005")
    check_results(results)
    assert results["strategy"] == "ExpertExchange"
    assert "| Avg |" in capsys.readouterr().out
    fit_log = tmp_path / "csv" / "version_0" / "metrics.csv"
    assert fit_log.is_file()
    fit_log_text = fit_log.read_text()
    # `test` from the saved federation reproduces the test metrics of `fit`
    main(["test", f"--config={ROOT / 'configs' / 'fkcb_cpu.yaml'}", *SLICE, "--model.init_args.hidden_dim=32",
          f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={tmp_path / 'federation' / 'best.pt'}"])  # fmt: skip
    retested = json.loads((tmp_path / "results_test.json").read_text())
    assert json.loads((tmp_path / "results.json").read_text()) == results  # fit's results are kept
    assert fit_log.read_text() == fit_log_text  # and so are its logs (test logs to csv/version_1)
    assert (tmp_path / "csv" / "version_1" / "metrics.csv").is_file()
    for row, values in results["test"].items():
        for k, v in values.items():
            assert math.isclose(retested["test"][row][k], v, rel_tol=1e-6)


def test_fedsasrec_two_rounds_with_fedavg(tmp_path):
    results = run("fedsasrec_fkcb_cpu.yaml", tmp_path, "--model.init_args.hidden_dim=32", "--model.init_args.lr=0.005")
    check_results(results)
    assert results["strategy"] == "FedAvg"


def test_print_config_shows_every_hyperparameter(capsys):
    with pytest.raises(SystemExit):
        main(["fit", f"--config={ROOT / 'configs' / 'fkcb.yaml'}", "--print_config"])
    out = capsys.readouterr().out
    for key in ("gate_pooling", "freeze_global_experts", "contrastive_weight", "local_epochs", "patience"):
        assert key in out


def test_missing_mbg_data_fails_fast_with_the_layout(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "fit", f"--config={ROOT / 'configs' / 'mbg.yaml'}",
         f"--data.init_args.root={tmp_path / 'mbg'}"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Expected layout" in proc.stderr and "1NnZN3LhzdpxwaHiOW8GAUS8noTbdLlQt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_one_client_of_a_saved_federation_loads_in_one_line(saved_run):
    from lightning import Trainer

    from lightning_fed.models import FedSASRec, FMoECDSR, SequentialRecommendationTask

    food = FMoECDSR.from_federation(saved_run / "federation" / "best.pt", "Food")
    assert food.domain == "Food" and not food.training and food.hparams.hidden_dim == 16
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, precision="bf16-mixed")
    (metrics,) = trainer.test(food, datamodule=food.client_datamodule, verbose=False)
    fit_results = json.loads((saved_run / "results.json").read_text())
    for name, value in fit_results["test"]["Food"].items():
        assert math.isclose(metrics[f"test/{name}"], value, rel_tol=1e-6)
    assert isinstance(SequentialRecommendationTask.from_federation(saved_run / "federation" / "best.pt", "Beauty"),
                      FMoECDSR)  # fmt: skip
    with pytest.raises(ValueError, match="holds lightning_fed.models.FMoECDSR clients, not FedSASRec"):
        FedSASRec.from_federation(saved_run / "federation" / "best.pt", "Food")
    with pytest.raises(ValueError, match="no client 'Kitchen'; it has \\['Beauty', 'Food'\\]"):
        FMoECDSR.from_federation(saved_run / "federation" / "best.pt", "Kitchen")


@pytest.mark.parametrize(
    ("model", "fits"),
    [
        ("FMoECDSR", {"ExpertExchange"}),
        ("FMoECDSR(experts='local')", {"LocalOnly"}),
        ("FedSASRec", {"FedAvg", "LocalOnly"}),
        ("MMoE", {"FedAvg", "LocalOnly", "PersonalizedAggregation"}),
        ("PFMSMTrec", {"FedAvg", "LocalOnly", "PersonalizedAggregation"}),
    ],
)
def test_each_model_declares_the_strategies_it_can_receive_from(model, fits):
    import lightning_fed.models as models
    import lightning_fed.strategies as strategies
    from lightning_fed.errors import ConfigurationError
    from lightning_fed.strategies.compatibility import check_compatible

    name, _, args = model.partition("(")
    instance = getattr(models, name)(**({"experts": "local"} if args else {}))
    for strategy in ("ExpertExchange", "FedAvg", "LocalOnly", "PersonalizedAggregation"):
        if strategy in fits:
            check_compatible(instance, getattr(strategies, strategy)())
        else:
            with pytest.raises(ConfigurationError, match=f"{strategy} sends .* but model {name} receives"):
                check_compatible(instance, getattr(strategies, strategy)())


def test_test_reads_the_checkpoints_tensors_once(saved_run, tmp_path, monkeypatch):
    import shutil

    import torch

    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    loads = []
    real_load = torch.load

    def counting_load(*args, **kwargs):
        loads.append(bool(kwargs.get("mmap")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    main(["test", f"--config={ROOT / 'configs' / 'fkcb_cpu.yaml'}", f"--trainer.default_root_dir={run_dir}"])
    # the saved configuration, then the states, both through a memory map: only the weights evaluation copies are
    # read (once), never the optimizer states
    assert loads == [True, True]
    assert json.loads((run_dir / "results_test.json").read_text())["test"]["Avg"]["MRR"] > 0


def test_fit_tests_its_best_round_from_a_mapped_checkpoint(tmp_path, monkeypatch):
    """The final test maps best.pt: read whole, it held a second federation beside the live one."""
    import torch

    loads = []
    real_load = torch.load

    def recording_load(path, *args, **kwargs):
        loads.append((Path(path).name, bool(kwargs.get("mmap"))))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    main(["fit", CONFIG, *TINY, f"--trainer.default_root_dir={tmp_path}"])
    assert loads == [("best.pt", True)]  # a one-round fit reads nothing else
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["best_round"] == 1 and results["test"]["Avg"]["MRR"] > 0
