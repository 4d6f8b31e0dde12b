"""One scenario of a multi-scenario multi-task (MSMT) dataset, as a LightningDataModule (one federated client)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from lightning_fed.datamodules.base import SPLITS, ClientDataModule, random_row_split
from lightning_fed.errors import DataFormatError


@dataclass(frozen=True)
class MultiTaskTable:
    """Rows of one split: categorical ids (N, F) int64, numerical features (N, P) float32, labels (N, T) float32."""

    categorical: torch.Tensor
    numerical: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> MultiTaskTable:
        """The rows at ``index``."""
        return MultiTaskTable(self.categorical[index], self.numerical[index], self.labels[index])


def carve_validation(train: MultiTaskTable, fraction: float, seed: int) -> tuple[MultiTaskTable, MultiTaskTable]:
    """Split ``train`` into (train, validation) rows at random: ``round(fraction * N)`` rows, drawn from ``seed``."""
    parts = random_row_split(len(train), [("valid", round(fraction * len(train))), ("train", None)], seed=seed)
    return train.subset(parts["train"]), train.subset(parts["valid"])


class MultiTaskDataModule(ClientDataModule):
    """One scenario's train/valid/test rows.

    Batches are ``(categorical, numerical, labels)``: (B, F) int64, (B, P) float32 and (B, T) float32 with one
    0/1 column per task in ``task_names``.

    Attributes:
        client: the scenario's name (the client holds one scenario), or ``"pooled"`` for a centralized dataset.
        vocab_sizes: number of ids of each categorical field (ids are 0..size-1).
        num_numerical: P.
        task_names: the tasks, in label-column order.
        scenario_names: the scenarios of a pooled client, whose last categorical field is the row's scenario
            index into this list (models report their metrics per scenario); None for a one-scenario client.
    """

    drop_single_row_batch = True

    def __init__(
        self,
        client: str,
        splits: dict[str, MultiTaskTable],
        vocab_sizes: list[int],
        task_names: list[str],
        batch_size: int = 2048,
        eval_batch_size: int = 8192,
        num_workers: int = 0,
        scenario_names: list[str] | None = None,
    ) -> None:
        """Wrap already-loaded splits (``train``, ``valid``, ``test``)."""
        super().__init__(client, batch_size, eval_batch_size, num_workers)
        for split in SPLITS:
            if split not in splits or len(splits[split]) == 0:
                raise DataFormatError(f"scenario {client!r}: the {split} split is empty")
        self.splits = splits
        self.vocab_sizes = list(vocab_sizes)
        self.num_numerical = splits["train"].numerical.shape[1]
        self.task_names = list(task_names)
        self.scenario_names = None if scenario_names is None else list(scenario_names)

    def setup(self, stage: str | None = None) -> None:
        """Wrap the splits (loaded by the scenario) as datasets."""
        if not self.datasets:
            for split in SPLITS:
                table = self.splits[split]
                self.datasets[split] = TensorDataset(table.categorical, table.numerical, table.labels)
