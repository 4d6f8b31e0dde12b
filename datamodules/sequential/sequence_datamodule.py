"""One domain of a cross-domain sequential recommendation scenario, as a LightningDataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_fed.datamodules.base import ClientDataModule
from lightning_fed.datamodules.sequential.candidates import cached_negatives, default_cache_dir
from lightning_fed.datamodules.sequential.item_graph import item_transition_graph
from lightning_fed.datamodules.sequential.sequence_format import SequenceSplit, read_num_items, read_split
from lightning_fed.datamodules.sequential.sequence_source import SequenceSource

#: Target value at positions without a next item (left padding); ignored by the losses.
IGNORE_TARGET = -100


class SequenceDataModule(ClientDataModule):
    """One domain in the FedDCSR text format (see :mod:`lightning_fed.datamodules.sequential.sequence_format`).

    Batches:
        train: ``(inputs, targets)``, both (B, T) int64, left-padded with the padding id N; ``inputs`` are
            ``items[:-1]`` and ``targets`` are ``items[1:]`` (IGNORE_TARGET at padded positions).
        valid/test: ``(inputs, candidates)``: inputs (B, T) are ``items[:-1]``, and candidates (B, 1 + n) hold
            the target first, then its n sampled negatives.

    Sequences longer than ``max_seq_len + 1`` items keep their most recent items. The client holds the domain:
    its name is the domain's.
    """

    #: The target at positions without a next item; losses skip it (a model reads it here, at build).
    ignore_target: int = IGNORE_TARGET

    def __init__(
        self,
        source: SequenceSource,
        domain: str,
        scenario_domains: list[str] | None = None,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        max_seq_len: int = 16,
        num_negatives: int = 999,
        candidate_seed: int = 0,
        max_sequences: int | None = None,
        num_workers: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        """Create the datamodule; files are read in :meth:`setup`.

        Args:
            source: where the domain's files are.
            domain: the domain's directory name (also the client's name).
            scenario_domains: all domains of the scenario, in a fixed order (models with one expert per domain
                use it); defaults to ``[domain]``.
            batch_size: training batch size (256 in the papers).
            eval_batch_size: validation/test batch size.
            max_seq_len: T, the input length (16 in the papers).
            num_negatives: sampled negatives per evaluation sequence (999 in the papers).
            candidate_seed: seed of the negative draw; keep it fixed to compare models on the same candidates.
            max_sequences: keep only the first n lines of each split (for quick runs and tests).
            num_workers: DataLoader workers.
            cache_dir: where to cache the candidates (default :func:`default_cache_dir`).
        """
        super().__init__(domain, batch_size, eval_batch_size, num_workers)
        self.source = source
        self.domain = domain
        self.scenario_domains = list(scenario_domains or [domain])
        self.max_seq_len = max_seq_len
        self.num_negatives = num_negatives
        self.candidate_seed = candidate_seed
        self.max_sequences = max_sequences
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.num_items: int | None = None
        self.splits: dict[str, SequenceSplit] = {}
        self.item_graph: torch.Tensor | None = None

    @property
    def pad_id(self) -> int:
        """The padding item id N."""
        self.setup()
        return self.num_items

    def setup(self, stage: str | None = None) -> None:
        """Read and validate the three splits, build the item graph and the evaluation candidates (once)."""
        if self.num_items is not None:
            return
        num_items = read_num_items(self.source, self.domain)
        splits = {}
        for split in ("train", "valid", "test"):
            data = read_split(self.source, self.domain, split, num_items)
            if self.max_sequences is not None:
                data = SequenceSplit(data.users[: self.max_sequences], data.sequences[: self.max_sequences])
            splits[split] = data
        self.splits = splits
        self.item_graph = item_transition_graph(splits["train"].sequences, num_items)
        self.datasets["train"] = TensorDataset(*self._train_tensors(splits["train"].sequences, num_items))
        for split in ("valid", "test"):
            self.datasets[split] = TensorDataset(*self._eval_tensors(split, splits[split], num_items))
        self.num_items = num_items

    def _left_pad(self, rows: list[list[int]], value: int) -> torch.Tensor:
        out = torch.full((len(rows), self.max_seq_len), value, dtype=torch.long)
        for i, row in enumerate(rows):
            row = row[-self.max_seq_len :]
            out[i, self.max_seq_len - len(row) :] = torch.tensor(row, dtype=torch.long)
        return out

    def _train_tensors(self, sequences: list[list[int]], num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self._left_pad([seq[:-1] for seq in sequences], num_items)
        targets = self._left_pad([seq[1:] for seq in sequences], IGNORE_TARGET)
        return inputs, targets

    def _eval_tensors(self, split: str, data: SequenceSplit, num_items: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self._left_pad([seq[:-1] for seq in data.sequences], num_items)
        targets = np.array([seq[-1] for seq in data.sequences], dtype=np.int64)
        content_key = f"{self.source.fingerprint()}|{self.domain}|{self.max_seq_len}"
        negatives = cached_negatives(
            targets, num_items, self.num_negatives, self.candidate_seed, self.domain, split, content_key,
            self.cache_dir,
        )  # fmt: skip
        candidates = torch.from_numpy(np.concatenate([targets[:, None], negatives], axis=1))
        return inputs, candidates
