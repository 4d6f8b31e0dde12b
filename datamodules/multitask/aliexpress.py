"""AliExpress multi-task data, one scenario (client) per country, tasks CTR and CTCVR.

Source: the public Tianchi release "AliExpress Dataset" (https://tianchi.aliyun.com/dataset/74690), in the
processed per-country layout of MTReclib and torch-rechub::

    <root>/AliExpress_<CC>/train.csv, test.csv      CC in NL, ES, FR, US (and RU)

Each CSV has a header and 82 columns: ``search_id, categorical_1..categorical_16, numerical_1..numerical_63,
click, conversion``. Categorical values are non-negative integer ids; numerical values are floats; click and
conversion are 0/1. Tasks: CTR = click; CTCVR = click and conversion. ``search_id`` is not a feature.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from lightning_fed.datamodules.multitask.multi_scenario import MultiScenarioMultiTask
from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskTable, carve_validation
from lightning_fed.errors import DataFormatError, MissingDataError
from lightning_fed.text_files import read_utf8

CATEGORICAL = [f"categorical_{i}" for i in range(1, 17)]
NUMERICAL = [f"numerical_{i}" for i in range(1, 64)]
COLUMNS = ["search_id", *CATEGORICAL, *NUMERICAL, "click", "conversion"]
TIANCHI = "https://tianchi.aliyun.com/dataset/74690 (AliExpress Dataset; processed per-country CSVs as in MTReclib)"


def read_aliexpress_csv(path: Path) -> MultiTaskTable:
    """Read one AliExpress CSV into a table with labels (CTR, CTCVR).

    Raises:
        DataFormatError: (a ValueError) naming file and line: a wrong header, a row with the wrong number of
            fields, a non-numeric value, a negative or fractional categorical id, or a label other than 0/1.
    """
    text = read_utf8(path)
    header = next(csv.reader(io.StringIO(text, newline="")), None)
    if header != COLUMNS:
        got = "nothing (empty file)" if header is None else f"{len(header)} columns starting {header[:3]}"
        raise DataFormatError(
            f"{path}:1: expected the header search_id,categorical_1..16,numerical_1..63,click,conversion "
            f"(82 columns), got {got}"
        )
    try:
        values = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError:
        raise DataFormatError(_first_bad_row(path, text)) from None
    if values.shape[0] == 0:
        raise DataFormatError(f"{path}: no rows after the header")
    categorical = values[:, 1:17]
    numerical = values[:, 17:80]
    labels = values[:, -2:]
    for columns, block, check, what in (
        (CATEGORICAL, categorical, lambda b: (b >= 0) & (b == np.floor(b)), "a non-negative integer id"),
        (NUMERICAL, numerical, lambda b: np.abs(b) <= np.finfo(np.float32).max, "a finite float32 number"),
        (["click", "conversion"], labels, lambda b: (b == 0) | (b == 1), "0 or 1"),
    ):
        bad = np.argwhere(~check(block))
        if len(bad):
            row, col = bad[0]
            raise DataFormatError(f"{path}:{row + 2}: {columns[col]} must be {what}, got {block[row, col]!r}")
    click, conversion = labels[:, 0], labels[:, 1]
    return MultiTaskTable(
        categorical=torch.from_numpy(categorical.astype(np.int64)),
        numerical=torch.from_numpy(numerical.astype(np.float32)),
        labels=torch.from_numpy(np.stack([click, click * conversion], axis=1).astype(np.float32)),
    )


def _first_bad_row(path: Path, text: str) -> str:
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    for line_no, row in enumerate(reader, start=2):
        if len(row) != len(COLUMNS):
            return f"{path}:{line_no}: expected {len(COLUMNS)} comma-separated fields, got {len(row)}"
        for column, value in zip(COLUMNS, row):
            try:
                float(value)
            except ValueError:
                return f"{path}:{line_no}: {column} is not a number: {value[:40]!r}"
    return f"{path}: cannot be parsed as numbers"


class AliExpress(MultiScenarioMultiTask):
    """AliExpress (Tianchi 74690), one client per country; tasks ``ctr`` and ``ctcvr``.

    Validation rows are carved from each country's train.csv (``val_fraction``, ``split_seed``); test.csv is
    the test split. Each country keeps its own embedding vocabulary: a field's size is the largest id seen in
    that country's train and test files plus one (as in MTReclib). Pooled (``centralized=True``), the ids are
    taken as the files write them, in one vocabulary per field: the countries' files must share one id space.
    """

    task_names = ["ctr", "ctcvr"]

    def __init__(self, scenarios: list[str] | None = None, root: str = "data/aliexpress", **kwargs) -> None:
        """AliExpress from ``root`` with countries NL, ES, FR, US by default (see the base class for the rest)."""
        super().__init__(scenarios or ["NL", "ES", "FR", "US"], **kwargs)
        self.root = root

    def _path(self, country: str, split: str) -> Path:
        return Path(self.root).expanduser() / f"AliExpress_{country}" / f"{split}.csv"

    def prepare_data(self) -> None:
        """Fail at once, with the expected layout and where to get the data, if any file is missing."""
        self._check_files(self.scenarios)

    def prepare_client_data(self, name: str) -> None:
        """Check only country ``name``'s files (what that country's own machine holds); every file when pooled."""
        self._check_files(self.scenarios_of(name))

    def _check_files(self, countries: list[str]) -> None:
        missing = [
            str(self._path(c, s)) for c in countries for s in ("train", "test") if not self._path(c, s).is_file()
        ]
        if missing:
            layout = "\n".join(f"    AliExpress_{c}/{{train.csv,test.csv}}" for c in countries)
            raise MissingDataError(
                f"AliExpress: the data is missing: {', '.join(missing[:2])}{' ...' if len(missing) > 2 else ''}.\n"
                f"Expected layout:\n  <root>/\n{layout}\n"
                "each CSV with the header search_id,categorical_1..16,numerical_1..63,click,conversion.\n"
                f"Get it from {TIANCHI}, and pass the directory as --data.init_args.root."
            )

    def load_scenario(self, name: str, index: int) -> tuple[dict[str, MultiTaskTable], list[int]]:  # noqa: D102
        train = read_aliexpress_csv(self._path(name, "train"))
        test = read_aliexpress_csv(self._path(name, "test"))
        vocab = torch.maximum(train.categorical.max(0).values, test.categorical.max(0).values) + 1
        train, valid = carve_validation(train, self.val_fraction, self.split_seed + index)
        return {"train": train, "valid": valid, "test": test}, vocab.tolist()
