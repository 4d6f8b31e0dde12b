"""One scenario of a multi-scenario multi-task (MSMT) dataset, as a LightningDataModule (one federated client)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_fed.datamodules.batch_loader import batch_slicing_loader
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
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)
    size = round(fraction * len(train))
    return train.subset(order[size:].sort().values), train.subset(order[:size].sort().values)


class MultiTaskDataModule(LightningDataModule):
    """One scenario's train/valid/test rows.

    Batches are ``(categorical, numerical, labels)``: (B, F) int64, (B, P) float32 and (B, T) float32 with one
    0/1 column per task in ``task_names``.

    Attributes:
        domain: the scenario's name (also the client's name).
        vocab_sizes: number of ids of each categorical field (ids are 0..size-1).
        num_numerical: P.
        task_names: the tasks, in label-column order.
    """

    def __init__(
        self,
        domain: str,
        splits: dict[str, MultiTaskTable],
        vocab_sizes: list[int],
        task_names: list[str],
        batch_size: int = 2048,
        eval_batch_size: int = 8192,
        num_workers: int = 0,
    ) -> None:
        """Wrap already-loaded splits (``train``, ``valid``, ``test``)."""
        super().__init__()
        for split in ("train", "valid", "test"):
            if split not in splits or len(splits[split]) == 0:
                raise DataFormatError(f"scenario {domain!r}: the {split} split is empty")
        self.domain = domain
        self.splits = splits
        self.vocab_sizes = list(vocab_sizes)
        self.num_numerical = splits["train"].numerical.shape[1]
        self.task_names = list(task_names)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers

    @property
    def num_train_examples(self) -> int:
        """Training rows of this scenario."""
        return len(self.splits["train"])

    def setup(self, stage: str | None = None) -> None:  # noqa: D102 - the splits are loaded by the scenario
        return None

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        table = self.splits[split]
        dataset = TensorDataset(table.categorical, table.numerical, table.labels)
        # A last training batch of one row would break BatchNorm; it is dropped (only then).
        drop_last = shuffle and len(dataset) % batch_size == 1
        return batch_slicing_loader(dataset, batch_size, shuffle, self.num_workers, drop_last)

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader("valid", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader("test", self.eval_batch_size, shuffle=False)
