"""Tenrec (Yuan et al., NeurIPS 2022 Datasets and Benchmarks), one scenario (client) per app and content type.

Source: the Tenrec release (https://static.qblv.qq.com/qblv/h5/algo-frontend/tenrec_dataset.html, also linked
from github.com/yuangh-x/2022-NIPS-Tenrec). Expected layout, one CSV per scenario, with a header::

    <root>/QK-video.csv, QK-article.csv, QB-video.csv, QB-article.csv   (or ctr_data_1M.csv, see below)

Columns read (the release's names; others are ignored):
    - ``user_id``, ``item_id``: required, categorical;
    - ``click``, ``like``: required 0/1 labels (the tasks, in this order);
    - ``gender``, ``age``, ``video_category``, ``category_first``, ``category_second``: optional categorical
      features, used when present in the header.

Raw ids are re-indexed per scenario (0..V-1 in sorted order of the raw values), so each client keeps its own
embedding tables. Tenrec has no official split: each scenario's rows are shuffled with ``split_seed`` and cut
into train/valid/test by ``val_fraction`` and ``test_fraction``. There are no numerical features.
``ctr_data_1M.csv`` (QK-video's 1M-row CTR sample) is used as a scenario by naming it ``ctr_data_1M``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch

from lightning_fed.datamodules.base import random_row_split
from lightning_fed.datamodules.multitask.multi_scenario import MultiScenarioMultiTask, pool_tables
from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskTable
from lightning_fed.errors import ConfigurationError, DataFormatError, MissingDataError
from lightning_fed.text_files import read_utf8

REQUIRED = ["user_id", "item_id", "click", "like"]
OPTIONAL_CATEGORICAL = ["gender", "age", "video_category", "category_first", "category_second"]
TENREC = (
    "the Tenrec release (static.qblv.qq.com/qblv/h5/algo-frontend/tenrec_dataset.html; "
    "github.com/yuangh-x/2022-NIPS-Tenrec)"
)


def read_tenrec_csv(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw categorical values (N, F) as strings, labels (N, 2) as float32, and the categorical column names.

    Raises:
        DataFormatError: naming file and line: a missing required column, a row with the wrong number of
            fields, an empty id, or a label other than 0/1; or an empty file.
    """
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""))
    header = next(reader, None)
    if header is None:
        raise DataFormatError(f"{path}: empty file (expected a header with {', '.join(REQUIRED)})")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataFormatError(f"{path}:1: the header lacks the column(s) {', '.join(missing)}")
    features = ["user_id", "item_id", *(c for c in OPTIONAL_CATEGORICAL if c in header)]
    feature_at = [header.index(c) for c in features]
    label_at = [header.index("click"), header.index("like")]
    rows, labels = [], []
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataFormatError(f"{path}:{line_no}: expected {len(header)} fields, got {len(row)}")
        values = [row[i].strip() for i in feature_at]
        if not values[0] or not values[1]:
            raise DataFormatError(f"{path}:{line_no}: empty user_id or item_id")
        try:
            flags = [float(row[i]) for i in label_at]
        except ValueError:
            raise DataFormatError(f"{path}:{line_no}: click and like must be 0 or 1") from None
        if any(f not in (0.0, 1.0) for f in flags):
            raise DataFormatError(f"{path}:{line_no}: click and like must be 0 or 1, got {flags}")
        rows.append(values)
        labels.append(flags)
    if not rows:
        raise DataFormatError(f"{path}: no rows after the header")
    return np.array(rows, dtype=object), np.array(labels, dtype=np.float32), features


class Tenrec(MultiScenarioMultiTask):
    """Tenrec scenarios as clients; tasks ``click`` and ``like`` (the spec's (docs/specs/pf-msmtrec.md) choice)."""

    task_names = ["click", "like"]

    def __init__(
        self, scenarios: list[str] | None = None, root: str = "data/tenrec", test_fraction: float = 0.1, **kwargs
    ) -> None:
        """Tenrec from ``root`` (``<root>/<scenario>.csv``); see the base class for the other arguments."""
        super().__init__(scenarios or ["QK-video", "QK-article", "QB-video", "QB-article"], **kwargs)
        if not 0.0 < test_fraction < 1.0 or test_fraction + self.val_fraction >= 1.0:
            raise ConfigurationError("data.init_args.test_fraction must be in (0, 1) and leave rows for training")
        self.root = root
        self.test_fraction = test_fraction

    def _path(self, scenario: str) -> Path:
        return Path(self.root).expanduser() / f"{scenario}.csv"

    def prepare_data(self) -> None:
        """Fail at once, with the expected layout and where to get the data, if any file is missing."""
        self._check_files(self.scenarios)

    def prepare_client_data(self, name: str) -> None:
        """Check only scenario ``name``'s file (what that scenario's own machine holds); every file when pooled."""
        self._check_files(self.scenarios_of(name))

    def _check_files(self, scenarios: list[str]) -> None:
        missing = [str(self._path(s)) for s in scenarios if not self._path(s).is_file()]
        if missing:
            raise MissingDataError(
                f"Tenrec: the data is missing: {', '.join(missing)}.\nExpected layout:\n  <root>/\n"
                + "\n".join(f"    {s}.csv" for s in scenarios)
                + f"\neach with a header holding {', '.join(REQUIRED)} (see lightning_fed.datamodules.Tenrec).\n"
                f"Get it from {TENREC}, and pass the directory as --data.init_args.root."
            )

    def load_scenario(self, name: str, index: int) -> tuple[dict[str, MultiTaskTable], list[int]]:  # noqa: D102
        raw, labels, _ = read_tenrec_csv(self._path(name))
        vocabularies = [np.unique(raw[:, field].astype(str)) for field in range(raw.shape[1])]
        return self._split(raw, labels, index, vocabularies), [len(v) for v in vocabularies]

    def pooled_scenarios(self) -> tuple[dict[str, MultiTaskTable], list[int]]:
        """The scenarios pooled, with ids encoded jointly: one raw id is one id in every scenario.

        Each scenario encodes its ids on its own (:meth:`load_scenario`), so scenario-local ids of different
        users would collide in a pooled table: here every field's vocabulary is the union of the scenarios' raw
        values. The rows of each split are the scenario's own split (the same seeds).
        """
        files = [read_tenrec_csv(self._path(name)) for name in self.scenarios]
        fields = {raw.shape[1] for raw, _, _ in files}
        if len(fields) != 1:
            raise DataFormatError(f"Tenrec: the scenarios' files hold different feature columns: {self.scenarios}")
        vocabularies = [
            np.unique(np.concatenate([raw[:, field].astype(str) for raw, _, _ in files]))
            for field in range(fields.pop())
        ]
        splits = [self._split(raw, labels, index, vocabularies) for index, (raw, labels, _) in enumerate(files)]
        return pool_tables(self.scenarios, splits, [[len(v) for v in vocabularies]] * len(files))

    def _split(
        self, raw: np.ndarray, labels: np.ndarray, index: int, vocabularies: list[np.ndarray]
    ) -> dict[str, MultiTaskTable]:
        """Encode the raw ids by ``vocabularies`` (sorted unique values per field) and cut the scenario's splits."""
        columns = [np.searchsorted(vocab, raw[:, field].astype(str)) for field, vocab in enumerate(vocabularies)]
        table = MultiTaskTable(
            categorical=torch.from_numpy(np.stack(columns, axis=1).astype(np.int64)),
            numerical=torch.zeros(len(labels), 0),
            labels=torch.from_numpy(labels),
        )
        n_test, n_valid = round(self.test_fraction * len(table)), round(self.val_fraction * len(table))
        parts = random_row_split(
            len(table), [("test", n_test), ("valid", n_valid), ("train", None)], self.split_seed + index
        )
        return {split: table.subset(parts[split]) for split in ("train", "valid", "test")}
