import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_fed.cli import main
from lightning_fed.datamodules import POOLED_CLIENT, AliExpress, SyntheticMSMT, Tenrec
from lightning_fed.datamodules.multitask.aliexpress import read_aliexpress_csv
from lightning_fed.datamodules.multitask.multi_scenario import pool_tables
from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskTable

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "aliexpress"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- AliExpress on the real sample --------------------------------------------------------------------------


def test_aliexpress_reads_the_real_sample_with_ctr_and_ctcvr():
    path = FIXTURE / "AliExpress_A" / "train.csv"
    rows = read_rows(path)
    table = read_aliexpress_csv(path)
    assert table.categorical.shape == (50, 16) and table.numerical.shape == (50, 63) and table.labels.shape == (50, 2)
    clicks = [float(r["click"]) for r in rows]
    ctcvr = [float(r["click"]) * float(r["conversion"]) for r in rows]
    assert table.labels[:, 0].tolist() == clicks and table.labels[:, 1].tolist() == ctcvr
    assert table.numerical[7, 2].item() == pytest.approx(float(rows[7]["numerical_3"]))
    assert table.categorical[:, 6].tolist() == [int(float(r["categorical_7"])) for r in rows]


def test_aliexpress_clients_carve_validation_from_train_by_seed():
    data = AliExpress(scenarios=["A", "B"], root=str(FIXTURE), val_fraction=0.2, split_seed=3)
    clients = data.client_datamodules()
    a = clients["A"]
    assert [len(a.splits[s]) for s in ("train", "valid", "test")] == [40, 10, 10]
    again = AliExpress(scenarios=["A", "B"], root=str(FIXTURE), val_fraction=0.2, split_seed=3).client_datamodules()
    assert torch.equal(again["A"].splits["valid"].labels, a.splits["valid"].labels)
    train_test = read_rows(FIXTURE / "AliExpress_A" / "train.csv") + read_rows(FIXTURE / "AliExpress_A" / "test.csv")
    assert a.vocab_sizes[6] == max(int(float(r["categorical_7"])) for r in train_test) + 1
    assert a.task_names == ["ctr", "ctcvr"] and a.num_numerical == 63


@pytest.mark.parametrize(
    ("line", "edit", "message"),
    [
        (5, lambda cells: cells.__setitem__(20, "n/a"), r"train.csv:5: numerical_4 is not a number: 'n/a'"),
        (7, lambda cells: cells.pop(), r"train.csv:7: expected 82 comma-separated fields, got 81"),
        (3, lambda cells: cells.__setitem__(81, "2"), r"train.csv:3: conversion must be 0 or 1"),
        (4, lambda cells: cells.__setitem__(2, "-1"), r"train.csv:4: categorical_2 must be a non-negative integer"),
    ],
)
def test_aliexpress_bad_rows_name_file_and_line(tmp_path, line, edit, message):
    lines = (FIXTURE / "AliExpress_A" / "train.csv").read_text().splitlines()
    cells = lines[line - 1].split(",")
    edit(cells)
    lines[line - 1] = ",".join(cells)
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        read_aliexpress_csv(tmp_path / "train.csv")


def test_aliexpress_wrong_header_and_missing_data(tmp_path):
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"train.csv:1: expected the header"):
        read_aliexpress_csv(tmp_path / "train.csv")
    with pytest.raises(FileNotFoundError) as info:
        AliExpress(root=str(tmp_path / "none")).prepare_data()
    text = str(info.value)
    assert "AliExpress_NL/{train.csv,test.csv}" in text and "74690" in text and "--data.init_args.root" in text


def test_aliexpress_config_without_data_fails_fast_with_the_layout(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "fit", f"--config={ROOT / 'configs' / 'aliexpress.yaml'}"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "AliExpress_US/{train.csv,test.csv}" in proc.stderr and "tianchi.aliyun.com/dataset/74690" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- Tenrec (no copy here: a hand-written file in the release's layout) -------------------------------------

TENREC_CSV = """user_id,item_id,click,follow,like,share,video_category,watching_times,gender,age
10,500,1,0,1,0,3,2,1,4
10,501,0,0,0,0,2,0,1,4
11,500,1,0,0,0,3,1,2,3
12,502,1,1,1,0,1,5,1,2
13,501,0,0,0,0,2,0,0,1
12,500,1,0,0,1,3,1,1,2
14,503,1,0,1,0,1,2,2,5
15,502,0,0,0,0,1,0,1,2
16,503,1,0,0,0,1,3,2,3
17,500,0,0,0,0,3,0,1,4
"""


def test_tenrec_reindexes_ids_per_scenario_and_splits_by_seed(tmp_path):
    (tmp_path / "QK-video.csv").write_text(TENREC_CSV)
    data = Tenrec(scenarios=["QK-video"], root=str(tmp_path), val_fraction=0.2, test_fraction=0.2, split_seed=1)
    client = data.client_datamodules()["QK-video"]
    assert client.task_names == ["click", "like"]
    assert client.vocab_sizes == [8, 4, 3, 5, 3]  # user_id, item_id, gender, age, video_category (distinct values)
    assert [len(client.splits[s]) for s in ("train", "valid", "test")] == [6, 2, 2]
    labels = torch.cat([client.splits[s].labels for s in ("train", "valid", "test")])
    assert labels.sum(0).tolist() == [6.0, 3.0]  # clicks and likes of the file
    assert client.num_numerical == 0


def test_tenrec_bad_rows_and_missing_data(tmp_path):
    (tmp_path / "QB-video.csv").write_text(TENREC_CSV.replace("11,500,1,0,0", "11,500,1,0,7"))
    with pytest.raises(ValueError, match=r"QB-video.csv:4: click and like must be 0 or 1"):
        Tenrec(scenarios=["QB-video"], root=str(tmp_path)).client_datamodules()
    (tmp_path / "QB-article.csv").write_text("user_id,item_id,click\n1,2,1\n")
    with pytest.raises(ValueError, match=r"QB-article.csv:1: the header lacks the column\(s\) like"):
        Tenrec(scenarios=["QB-article"], root=str(tmp_path)).client_datamodules()
    with pytest.raises(FileNotFoundError, match=r"QK-article.csv"):
        Tenrec(root=str(tmp_path / "none")).prepare_data()


# a second scenario: user 10 and items 500 again, new users 97-99 and items 600-602 (one row per line, header first)
TENREC_OTHER = TENREC_CSV.splitlines()[0] + "\n" + "".join(
    f"{row}\n"
    for row in ("10,600,1,0,0,0,3,1,1,4", "99,500,0,0,0,0,2,0,2,6", "98,601,1,0,1,0,1,2,1,2", "10,500,0,0,0,0,3,0,1,4",
                "97,602,1,0,0,0,4,1,2,3")
)  # fmt: skip


def test_tenrec_pools_scenarios_with_one_id_per_raw_value_and_their_own_splits(tmp_path):
    (tmp_path / "QK-video.csv").write_text(TENREC_CSV)
    (tmp_path / "QB-video.csv").write_text(TENREC_OTHER)
    kwargs = dict(scenarios=["QK-video", "QB-video"], root=str(tmp_path), val_fraction=0.2, test_fraction=0.2)
    apart = Tenrec(**kwargs).client_datamodules()
    data = Tenrec(**kwargs, centralized=True)
    assert data.client_names == [POOLED_CLIENT]
    pooled = data.client_datamodules()[POOLED_CLIENT]
    assert pooled.scenario_names == ["QK-video", "QB-video"]
    # user_id: 10..17 and 97, 98, 99; item_id: 500..503 and 600..602; gender 0..2; age 1..6; category 1..4
    assert pooled.vocab_sizes == [11, 7, 3, 6, 4, 2]
    for split in ("train", "valid", "test"):
        table, sizes = pooled.splits[split], [len(apart[s].splits[split]) for s in ("QK-video", "QB-video")]
        assert table.categorical[:, -1].tolist() == [0] * sizes[0] + [1] * sizes[1]
        assert torch.equal(table.labels, torch.cat([apart[s].splits[split].labels for s in ("QK-video", "QB-video")]))
    rows = torch.cat([pooled.splits[s].categorical for s in ("train", "valid", "test")])
    users = {tuple(r) for r in rows[:, [0, 1]].tolist()}  # (user, item) pairs, jointly encoded
    # user "10" with item "500" is in both files: one id pair, seen once per file
    ten_500 = [r for r in rows.tolist() if r[:2] == [0, 0]]
    assert sorted(r[-1] for r in ten_500) == [0, 1] and len(users) == 14


# --- two-round federations through main([...]) --------------------------------------------------------------

SMALL = [
    "--data.init_args.rows=[1500, 800, 400]",
    "--model.init_args.expert_dims=[16]",
    "--model.init_args.tower_dims=[8]",
    "--federation.rounds=2",
]


@pytest.mark.parametrize(
    "variant", [None, "local_mmoe", "fedavg_mmoe", "fedprox_mmoe", "fedbn_mmoe", "no_template", "no_conflict"]
)
def test_two_rounds_on_synthetic_data(tmp_path, variant):
    args = ["fit", f"--config={ROOT / 'configs' / 'msmt_synthetic.yaml'}"]
    if variant:
        args.append(f"--config={ROOT / 'configs' / 'variants' / 'msmt' / f'{variant}.yaml'}")
    main([*args, *SMALL, f"--trainer.default_root_dir={tmp_path}"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["clients"] == ["S0", "S1", "S2"] and results["rounds_run"] == 2
    avg = results["test"]["Avg"]
    assert set(avg) == {"AUC_task1", "AUC_task2", "logloss_task1", "logloss_task2", "AUC", "logloss"}
    assert 0.5 < avg["AUC"] <= 1.0  # the planted signal is learnable within two rounds
    assert avg["AUC"] == pytest.approx(sum(results["test"][s]["AUC"] for s in ("S0", "S1", "S2")) / 3)


@pytest.mark.parametrize("model", ["lightning_fed.models.SharedBottom", "lightning_fed.models.PLE"])
def test_shared_bottom_and_ple_also_train_locally_per_scenario(tmp_path, model):
    main(
        [
            "fit", f"--config={ROOT / 'configs' / 'msmt_synthetic.yaml'}",
            f"--config={ROOT / 'configs' / 'variants' / 'msmt' / 'local_mmoe.yaml'}",
            f"--model={model}", "--data.init_args.rows=[1500, 800]", "--federation.rounds=2",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )  # fmt: skip
    assert json.loads((tmp_path / "results.json").read_text())["test"]["Avg"]["AUC"] > 0.5


def test_pooled_splits_are_the_union_of_the_scenarios_own_splits():
    apart = SyntheticMSMT(rows=[300, 200], seed=3).client_datamodules()
    data = SyntheticMSMT(rows=[300, 200], seed=3, centralized=True)
    pooled = data.client_datamodules()[POOLED_CLIENT]
    assert list(data.client_datamodules()) == [POOLED_CLIENT] and pooled.scenario_names == ["S0", "S1"]
    assert pooled.vocab_sizes == [100, 100, 100, 100, 2]  # four fields of 100 ids, then the scenario
    for split in ("train", "valid", "test"):
        table, parts = pooled.splits[split], [apart[s].splits[split] for s in ("S0", "S1")]
        assert torch.equal(table.categorical[:, :-1], torch.cat([p.categorical for p in parts]))
        assert table.categorical[:, -1].tolist() == [0] * len(parts[0]) + [1] * len(parts[1])
        assert torch.equal(table.numerical, torch.cat([p.numerical for p in parts]))
        assert torch.equal(table.labels, torch.cat([p.labels for p in parts]))


def test_scenarios_with_different_fields_cannot_be_pooled():
    def splits(fields):
        table = MultiTaskTable(torch.zeros(2, fields, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2, 1))
        return {s: table for s in ("train", "valid", "test")}

    with pytest.raises(ValueError, match=r"their fields differ \(A: 2 categorical / 3 numerical, B: 4 categorical"):
        pool_tables(["A", "B"], [splits(2), splits(4)], [[5, 5], [5, 5, 5, 5]])


def test_pooled_aliexpress_checks_every_countrys_files_and_takes_the_largest_vocabulary(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)AliExpress_NL/.*AliExpress_US/"):
        AliExpress(root=str(tmp_path), centralized=True).client_datamodule(POOLED_CLIENT)
    apart = AliExpress(root=str(FIXTURE), scenarios=["A", "B"]).client_datamodules()
    pooled = AliExpress(root=str(FIXTURE), scenarios=["A", "B"], centralized=True).client_datamodules()[POOLED_CLIENT]
    largest = [max(a, b) for a, b in zip(apart["A"].vocab_sizes, apart["B"].vocab_sizes)]
    assert pooled.vocab_sizes == [*largest, 2] and len(pooled.splits["test"]) == 20  # 10 test rows per copy


@pytest.mark.parametrize("model", ["mmoe", "shared_bottom", "ple"])
def test_centralized_baselines_train_one_pooled_client_and_score_each_scenario(tmp_path, model):
    main(
        [
            "fit", f"--config={ROOT / 'configs' / 'msmt_synthetic.yaml'}",
            f"--config={ROOT / 'configs' / 'variants' / 'msmt' / f'centralized_{model}.yaml'}",
            "--data.init_args.rows=[1500, 800]", "--federation.rounds=2", f"--trainer.default_root_dir={tmp_path}",
        ]
    )  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["clients"] == [POOLED_CLIENT] and results["rounds_run"] == 2
    test = results["test"][POOLED_CLIENT]
    for task in ("task1", "task2"):
        for metric in ("AUC", "logloss"):
            per_scenario = [test[f"{metric}_{task}@{s}"] for s in ("S0", "S1")]
            assert test[f"{metric}_{task}"] == pytest.approx(sum(per_scenario) / 2)
    assert test["AUC"] > 0.5 and results["test"]["Avg"]["AUC"] == test["AUC"]


def test_two_rounds_of_pf_msmtrec_on_the_aliexpress_sample(tmp_path):
    main(
        [
            "fit", f"--config={ROOT / 'configs' / 'aliexpress.yaml'}",
            f"--data.init_args.root={FIXTURE}", "--data.init_args.scenarios=[A, B]",
            "--data.init_args.val_fraction=0.3", "--federation.rounds=2", "--model.init_args.expert_dims=[16]",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["clients"] == ["A", "B"] and results["rounds_run"] == 2
    assert set(results["test"]["A"]) >= {"AUC_ctr", "AUC_ctcvr", "logloss_ctr", "logloss_ctcvr"}
