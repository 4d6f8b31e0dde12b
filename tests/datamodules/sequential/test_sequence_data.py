import numpy as np
import pytest
from conftest import SHARED, write_domain

from lightning_fed.datamodules import FKCB, IGNORE_TARGET, MBG, SequenceDataModule
from lightning_fed.datamodules.sequential.candidates import cached_negatives, draw_negatives
from lightning_fed.datamodules.sequential.sequence_source import DirectorySource

# user<TAB>items...: train lines give inputs items[:-1] and targets items[1:]
GOOD = {"train": "0\t1\t2\t3\n1\t2\t3\n", "valid": "0\t1\t2\n", "test": "1\t3\t4\n"}


def test_embedded_fkcb_matches_table_1_of_the_paper():
    expected = {
        "Food": (13564, 4977, 1307, 1332),
        "Kitchen": (32918, 11100, 2172, 2254),
        "Clothing": (34909, 5720, 818, 866),
        "Beauty": (17780, 4668, 836, 855),
    }
    clients = FKCB(num_negatives=9).client_datamodules()
    assert list(clients) == list(expected)
    for domain, (items, train, valid, test) in expected.items():
        dm = clients[domain]
        dm.setup()
        counts = (dm.num_items, len(dm.splits["train"]), len(dm.splits["valid"]), len(dm.splits["test"]))
        assert counts == (items, train, valid, test)


@pytest.mark.skipif(not (SHARED / "fkcb").is_dir(), reason="the shared data release is not beside this checkout")
def test_embedded_copy_is_byte_identical_to_the_shared_release():
    source = FKCB().source()
    for domain in ("Food", "Beauty"):
        for name in ("num_items.txt", "train_data.txt", "valid_data.txt", "test_data.txt"):
            assert source.read_text(f"{domain}/{name}") == (SHARED / "fkcb" / domain / name).read_text()


def test_batches_are_left_padded_with_shifted_targets(tmp_path):
    write_domain(tmp_path, "D", 5, GOOD)
    dm = SequenceDataModule(DirectorySource(tmp_path), "D", max_seq_len=4, num_negatives=3)
    dm.setup()
    inputs, targets = dm.datasets["train"].tensors
    assert inputs.tolist() == [[5, 5, 1, 2], [5, 5, 5, 2]]
    assert targets.tolist() == [[IGNORE_TARGET, IGNORE_TARGET, 2, 3], [IGNORE_TARGET] * 3 + [3]]
    valid_inputs, candidates = dm.datasets["valid"].tensors
    assert valid_inputs.tolist() == [[5, 5, 5, 1]]
    assert candidates[0, 0].item() == 2
    assert set(candidates[0, 1:].tolist()) <= {0, 1, 3, 4}
    assert 2 not in candidates[0, 1:].tolist() and len(set(candidates[0, 1:].tolist())) == 3
    assert dm.num_train_examples == 2 and dm.pad_id == 5


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"num_items": None}, r"D/num_items.txt: missing num_items.txt"),
        ({"num_items": "many"}, r"D/num_items.txt:1: expected one integer"),
        ({"train": "0\t1\t2\n0\t1\tx\t3\n"}, r"D/train_data.txt:2: non-integer token 'x'"),
        ({"valid": "0\t1\t5\n"}, r"D/valid_data.txt:1: item id 5 is outside 0..4"),
        ({"test": "1\t2\t3\n7\t-1\t2\n"}, r"D/test_data.txt:2: item id -1 is outside 0..4"),
        ({"train": "0\t1\t2\n3\t4\n"}, r"D/train_data.txt:2: a sequence needs at least 2 items"),
        ({"valid": "\n"}, r"D/valid_data.txt: the valid split is empty"),
    ],
)
def test_bad_input_names_file_line_and_problem(tmp_path, files, message):
    splits = {**GOOD, **{k: v for k, v in files.items() if k != "num_items"}}
    write_domain(tmp_path, "D", files.get("num_items", 5), splits)
    dm = SequenceDataModule(DirectorySource(tmp_path), "D", num_negatives=3)
    with pytest.raises(ValueError, match=message):
        dm.setup()


def test_missing_split_file(tmp_path):
    write_domain(tmp_path, "D", 5, {"train": GOOD["train"], "valid": GOOD["valid"]})
    with pytest.raises(ValueError, match=r"D/test_data.txt: missing test split"):
        SequenceDataModule(DirectorySource(tmp_path), "D", num_negatives=3).setup()


def test_negatives_exclude_the_target_are_distinct_and_reproducible():
    targets = np.array([0, 5, 9, 3])
    first = draw_negatives(targets, num_items=10, num_negatives=9, seed=7, domain="Food", split="valid")
    for target, row in zip(targets, first):
        assert sorted(row.tolist()) == [i for i in range(10) if i != target]  # all 9 others, each once
    again = draw_negatives(targets, 10, 9, seed=7, domain="Food", split="valid")
    np.testing.assert_array_equal(first, again)
    small = draw_negatives(np.arange(50) % 20, num_items=1000, num_negatives=30, seed=7, domain="A", split="test")
    other_split = draw_negatives(np.arange(50) % 20, 1000, 30, seed=7, domain="A", split="valid")
    assert not np.array_equal(small, other_split)
    with pytest.raises(ValueError, match="cannot draw 10 distinct negatives"):
        draw_negatives(targets, 10, 10, seed=0, domain="D", split="test")


def test_candidates_are_cached_and_identical(tmp_path):
    targets = np.array([1, 2, 3])
    first = cached_negatives(targets, 100, 20, 0, "Food", "test", "key", tmp_path)
    files = list((tmp_path / "candidates").iterdir())
    assert len(files) == 1
    with np.load(files[0]) as cached:  # the negatives and their checksum
        np.testing.assert_array_equal(cached["negatives"], first)
    np.testing.assert_array_equal(cached_negatives(targets, 100, 20, 0, "Food", "test", "key", tmp_path), first)


def test_fkcb_candidates_are_the_same_for_every_datamodule_instance():
    a = FKCB().client_datamodules()["Beauty"]
    b = FKCB().client_datamodules()["Beauty"]
    a.setup()
    b.setup()
    assert a.datasets["test"].tensors[1].shape == (855, 1000)
    assert (a.datasets["test"].tensors[1] == b.datasets["test"].tensors[1]).all()


def test_missing_scenario_data_fails_fast_with_layout_and_source(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        MBG(root=str(tmp_path / "nowhere")).prepare_data()
    text = str(info.value)
    assert "Movie/{num_items.txt,train_data.txt,valid_data.txt,test_data.txt}" in text
    assert "1NnZN3LhzdpxwaHiOW8GAUS8noTbdLlQt" in text and "pass the directory as --data.init_args.root." in text
