"""Malformed data files and damaged caches: a clear error naming file and line, or a repaired cache."""

import numpy as np
import pytest
from test_msmt_data_and_runs import FIXTURE

from lightning_fed.datamodules.builder.amazon_interactions import read_interactions
from lightning_fed.datamodules.multitask.aliexpress import read_aliexpress_csv
from lightning_fed.datamodules.multitask.tenrec import read_tenrec_csv
from lightning_fed.datamodules.sequential.candidates import cached_negatives, draw_negatives
from lightning_fed.datamodules.sequential.sequence_source import DirectorySource
from lightning_fed.errors import DataFormatError
from lightning_fed.text_files import decode_utf8


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e39"])
def test_aliexpress_refuses_a_numerical_value_that_is_not_a_finite_float32(tmp_path, value):
    lines = (FIXTURE / "AliExpress_A" / "train.csv").read_text().splitlines()
    cells = lines[5].split(",")
    cells[17 + 9] = value  # numerical_10
    lines[5] = ",".join(cells)
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"train.csv:6: numerical_10 must be a finite float32 number"):
        read_aliexpress_csv(tmp_path / "train.csv")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_tenrec_refuses_a_label_that_is_not_0_or_1(tmp_path, value):
    (tmp_path / "QK-video.csv").write_text(f"user_id,item_id,click,like\n1,10,1,0\n2,11,{value},0\n")
    with pytest.raises(DataFormatError, match=r"QK-video.csv:3: click and like must be 0 or 1"):
        read_tenrec_csv(tmp_path / "QK-video.csv")


def test_decode_utf8_names_line_and_column_by_hand():
    assert decode_utf8("é\n".encode(), "f") == "é\n"
    with pytest.raises(DataFormatError, match=r"^f:3: byte 0xe9 at column 2 is not UTF-8"):
        decode_utf8(b"ab\ncd\nx\xe9y\n", "f")
    with pytest.raises(DataFormatError, match=r"^f:12: byte 0xff at column 1"):
        decode_utf8(b"\xff", "f", first_line=12)


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("Food/train_data.txt", b"0\t1\t2\n1\t2\xfe3\n", "train_data.txt:2: byte 0xfe at column 4"),
        ("Food/num_items.txt", b"\xff5\n", "num_items.txt:1: byte 0xff at column 1"),
    ],
)
def test_non_utf8_sequence_files_name_file_and_line(tmp_path, name, content, where):
    (tmp_path / "Food").mkdir()
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataFormatError, match=where):
        DirectorySource(tmp_path).read_text(name)


def test_non_utf8_raw_amazon_file_names_its_line(tmp_path):
    path = tmp_path / "ratings_Books.csv"
    path.write_bytes(b"u1,i1,5.0,100\nu2,i\xc32,4.0,101\n")
    with pytest.raises(DataFormatError, match=r"ratings_Books.csv:2: byte 0xc3 at column 5"):
        read_interactions(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"not a numpy archive",
        lambda data: data[:-300] + bytes(b ^ 0x01 for b in data[-300:-200]) + data[-200:],  # flipped bits
    ],
)
def test_a_damaged_candidate_cache_file_is_detected_and_rebuilt(tmp_path, damage):
    targets = np.array([3, 7, 0, 42, 99], dtype=np.int64)
    args = (targets, 100, 20, 0, "Food", "valid", "key", tmp_path)
    expected = draw_negatives(targets, 100, 20, 0, "Food", "valid")
    assert np.array_equal(cached_negatives(*args), expected)
    (path,) = (tmp_path / "candidates").glob("*.npz")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(UserWarning, match="is damaged"):
        assert np.array_equal(cached_negatives(*args), expected)
    assert np.array_equal(cached_negatives(*args), expected)  # repaired: no warning now
    with np.load(path) as archive:
        assert np.array_equal(archive["negatives"], expected)
