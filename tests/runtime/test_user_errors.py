"""What a new user gets wrong, run as they would run it: ``python main.py ...`` as a subprocess.

Every case must end with exit status 2, one line naming the config key or the file, and no traceback.
"""

import os
import subprocess
import sys

import pytest
import torch
from conftest import CONFIG, ROOT, TINY

from lightning_fed.cli import main


def run_main(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def assert_user_error(proc, *expected):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


# --- configuration values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("--federation.rounds=-1", ["federation.rounds", "-1"]),
        ("--federation.local_epochs=0", ["federation.local_epochs"]),
        ("--federation.fraction=0", ["federation.fraction"]),
        ("--federation.fraction=1.5", ["federation.fraction", "1.5"]),
        ("--federation.patience=-2", ["federation.patience"]),
        ("--federation.monitor=AUC", ["federation.monitor", "'AUC'", "MRR"]),
        ("--model.init_args.num_heads=3", ["model.init_args.num_heads (3)", "hidden_dim (64)"]),
        ("--data.init_args.batch_size=0", ["data.init_args.batch_size"]),
        ("--data.init_args.domains=[Food, Food]", ["data.init_args.domains", "distinct"]),
        ("--model.init_args.gate=xx", ["model.init_args.gate", "xx"]),
        ("--model.init_args.expert_chunk_size=0", ["model.init_args.expert_chunk_size", "at least 1", "0"]),
        ("--model.init_args.foo=1", ["model", "'foo'"]),
        ("--federation.rounds=abc", ["federation.rounds", "abc"]),
        ("--trainer.max_epochs=3", ["trainer.max_epochs", "federation.local_epochs"]),
        ("--trainer.max_steps=10", ["trainer.max_steps", "federation.local_epochs"]),
        ("--trainer.min_epochs=2", ["trainer.min_epochs", "federation.local_epochs"]),
        ("--trainer.enable_checkpointing=true", ["trainer.enable_checkpointing", "federation/last.pt"]),
        ("--trainer.num_sanity_val_steps=2", ["trainer.num_sanity_val_steps"]),
        ("--trainer.devices=3", ["trainer.devices: '3'", "one device: give 1", "federation.runtime: flower"]),
        ("--trainer.strategy=ddp", ["trainer.strategy: 'ddp'", "several processes"]),
        ("--model=lightning_fed.models.FedSASRec", ["ExpertExchange", "FedSASRec", "lightning_fed.strategies.FedAvg"]),
    ],
)
def test_bad_configuration_values(tmp_path, override, expected):
    proc = run_main("fit", CONFIG, override, f"--trainer.default_root_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_user_error(proc, *expected)
    assert not (tmp_path / "run" / "federation").exists()


def test_aliexpress_val_fraction_out_of_range(tmp_path):
    config = f"--config={ROOT / 'configs' / 'aliexpress.yaml'}"
    proc = run_main("fit", config, "--data.init_args.val_fraction=1.5", cwd=tmp_path)
    assert_user_error(proc, "data.init_args.val_fraction", "1.5")


def test_config_files_that_cannot_be_read_are_named(tmp_path):
    (tmp_path / "broken.yaml").write_text("model:\n  init_args:\n    hidden_dim: [16\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    proc = run_main("fit", CONFIG, "--config", "broken.yaml", cwd=tmp_path)
    assert_user_error(proc, "broken.yaml:4:1: YAML syntax error")
    assert_user_error(run_main("fit", CONFIG, "--config=empty.yaml", cwd=tmp_path), "empty.yaml", "empty")
    assert_user_error(run_main("fit", "--config=list.yaml", cwd=tmp_path), "list.yaml", "mapping")
    assert_user_error(run_main("fit", "--config=missing.yaml", cwd=tmp_path), "missing.yaml", "no such file")


# --- devices -------------------------------------------------------------------------------------------------------
def _missing_accelerator():
    """An accelerator Lightning knows and this machine lacks (None if it has them all)."""
    if not torch.cuda.is_available():
        return "gpu"
    return None if torch.backends.mps.is_available() else "mps"


@pytest.mark.skipif(_missing_accelerator() is None, reason="this machine has every accelerator")
def test_an_accelerator_this_machine_lacks_is_refused_before_the_data_is_read(tmp_path, saved_run):
    missing = _missing_accelerator()
    accelerator = f"--trainer.accelerator={missing}"
    # the data root does not exist either: the Trainer is checked first, so its error is the one reported
    no_data = "--data.init_args.root=/nonexistent/fkcb"
    proc = run_main("fit", CONFIG, accelerator, no_data, f"--trainer.default_root_dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_user_error(proc, f"trainer (accelerator='{missing}'")
    assert not (tmp_path / "run").exists()
    proc = run_main("test", CONFIG, accelerator, no_data, f"--trainer.default_root_dir={saved_run}", cwd=tmp_path)
    assert_user_error(proc, f"trainer (accelerator='{missing}'")


# --- checkpoints ---------------------------------------------------------------------------------------------------
def test_checkpoint_paths_that_cannot_be_used(tmp_path, saved_run):
    best = saved_run / "federation" / "best.pt"
    (tmp_path / "truncated.pt").write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 64)
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6.0", "epoch": 3}, tmp_path / "module.ckpt")
    cases = {
        "missing.pt": ["ckpt_path", "missing.pt", "does not exist"],
        "truncated.pt": ["ckpt_path", "truncated.pt", "cannot be read"],
        "garbage.pt": ["ckpt_path", "garbage.pt", "cannot be read"],
        "module.ckpt": ["ckpt_path", "module.ckpt", "Lightning checkpoint of a single LightningModule"],
    }
    for name, expected in cases.items():
        proc = run_main("test", CONFIG, f"--ckpt_path={tmp_path / name}", cwd=tmp_path)
        assert_user_error(proc, *expected)


def test_last_keyword_and_test_without_a_saved_run(tmp_path):
    run_dir = f"--trainer.default_root_dir={tmp_path / 'none'}"
    assert_user_error(run_main("fit", CONFIG, run_dir, "--ckpt_path=last", cwd=tmp_path), "last.pt", "does not exist")
    assert_user_error(run_main("test", CONFIG, run_dir, cwd=tmp_path), "test: no saved federation", "run `fit` first")


def test_an_older_checkpoint_of_other_clients_or_another_model_is_refused(tmp_path, saved_run):
    checkpoint = torch.load(saved_run / "federation" / "best.pt", weights_only=True)
    del checkpoint["model_config"], checkpoint["data_config"]  # as written before configurations were recorded
    torch.save(checkpoint, tmp_path / "old.pt")
    ckpt = f"--ckpt_path={tmp_path / 'old.pt'}"
    proc = run_main("test", CONFIG, *TINY, "--data.init_args.domains=[Food, Kitchen]", ckpt, cwd=tmp_path)
    assert_user_error(proc, "old.pt", "clients ['Beauty', 'Food']", "['Food', 'Kitchen']")
    proc = run_main("test", CONFIG, *TINY, "--model.init_args.hidden_dim=32", ckpt, cwd=tmp_path)
    line = assert_user_error(proc, "old.pt", "does not fit the configured model FMoECDSR", "in the file")
    assert len(line) < 400


def test_test_and_resume_restore_the_saved_configuration(tmp_path, saved_run):
    """`test` needs none of fit's overrides: model and data come from the checkpoint, as with Lightning."""
    main(["test", CONFIG, f"--trainer.default_root_dir={saved_run}"])
    import json

    fit = json.loads((saved_run / "results.json").read_text())
    retested = json.loads((saved_run / "results_test.json").read_text())
    assert retested["config"]["model"]["init_args"]["hidden_dim"] == 16
    assert retested["config"]["data"]["init_args"]["domains"] == ["Food", "Beauty"]
    for row, values in fit["test"].items():
        for name, value in values.items():
            assert retested["test"][row][name] == pytest.approx(value, rel=1e-6)


def test_a_checkpoint_older_than_a_model_argument_is_tested_with_its_default(tmp_path, saved_run, capsys):
    """An argument added after the checkpoint was written takes its default, which is the behaviour it trained with."""
    checkpoint = torch.load(saved_run / "federation" / "best.pt", weights_only=True)
    init_args = checkpoint["model_config"]["init_args"]
    assert init_args["block_form"] == "pre_norm"
    del init_args["block_form"], init_args["graph_form"]  # as written before the two flags existed
    torch.save(checkpoint, tmp_path / "old.pt")
    main(["test", CONFIG, f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={tmp_path / 'old.pt'}"])
    assert "model arguments newer than" in capsys.readouterr().err
    import json

    fit = json.loads((saved_run / "results.json").read_text())
    retested = json.loads((tmp_path / "results_test.json").read_text())
    assert retested["config"]["model"]["init_args"]["block_form"] == "pre_norm"
    assert retested["config"]["model"]["init_args"]["graph_form"] == fit["config"]["model"]["init_args"]["graph_form"]
    for row, values in fit["test"].items():
        for name, value in values.items():
            assert retested["test"][row][name] == pytest.approx(value, rel=1e-6)


# --- data ------------------------------------------------------------------------------------------------------------
def test_a_non_utf8_byte_in_a_data_file_is_named_with_its_line(tmp_path):
    from lightning_fed.datamodules.sequential.sequence_source import ArchiveSource, embedded_archive

    source = ArchiveSource(embedded_archive("fkcb"))
    for domain in ("Food", "Beauty"):
        (tmp_path / "data" / domain).mkdir(parents=True)
        for name in ("num_items.txt", "train_data.txt", "valid_data.txt", "test_data.txt"):
            text = source.read_text(f"{domain}/{name}")
            if name != "num_items.txt":
                text = "\n".join(text.splitlines()[:40]) + "\n"
            (tmp_path / "data" / domain / name).write_text(text)
    path = tmp_path / "data" / "Beauty" / "valid_data.txt"
    lines = path.read_bytes().split(b"\n")
    lines[6] = lines[6][:3] + b"\xff" + lines[6][3:]
    path.write_bytes(b"\n".join(lines))
    proc = run_main("fit", CONFIG, *TINY, f"--data.init_args.root={tmp_path / 'data'}", cwd=tmp_path)
    assert_user_error(proc, f"{path}:7:", "0xff", "column 4", "not UTF-8")


# --- fast_dev_run, help ------------------------------------------------------------------------------------------
def test_fast_dev_run_is_lightnings_smoke_test(tmp_path):
    proc = run_main("fit", CONFIG, *TINY, "--federation.rounds=3", "--trainer.fast_dev_run=true",
                    f"--trainer.default_root_dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[round 1/1]" in proc.stdout and "fast dev run: nothing written" in proc.stdout
    assert not (tmp_path / "run").exists()


def test_help_says_what_fit_does_and_lists_the_zoo(tmp_path):
    top = run_main("--help", cwd=tmp_path).stdout
    for name in ("FMoECDSR", "FedSASRec", "PFMSMTrec", "FKCB", "SGH5Core", "AliExpress", "ExpertExchange", "FedAvg"):
        assert name in top
    assert "MultiScenarioMultiTask" not in top  # a base class, not a scenario
    fit = " ".join(run_main("fit", "--help", cwd=tmp_path).stdout.split())
    assert "then restore the best round (federation/best.pt) and test every client" in fit
    assert (
        "--trainer.max_epochs MAX_EPOCHS MANAGED BY THE FEDERATION (refused if set): use federation.local_epochs" in fit
    )
