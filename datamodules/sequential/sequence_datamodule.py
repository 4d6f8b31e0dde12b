"""One domain of a cross-domain sequential recommendation scenario, as a LightningDataModule."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_fed.datamodules.base import ClientDataModule
from lightning_fed.datamodules.sequential.candidates import cached_negatives, default_cache_dir, reference_negatives
from lightning_fed.datamodules.sequential.item_graph import item_transition_graph
from lightning_fed.datamodules.sequential.sequence_format import SequenceSplit, read_num_items, read_split
from lightning_fed.datamodules.sequential.sequence_source import SequenceSource
from lightning_fed.models.sequential.contrastive import shuffle_items

#: Target value at positions without a next item (left padding); ignored by the losses.
IGNORE_TARGET = -100


class SequenceDataModule(ClientDataModule):
    """One domain in the FedDCSR text format (see :mod:`lightning_fed.datamodules.sequential.sequence_format`).

    Batches:
        train: ``(inputs, targets)``, both (B, T) int64, left-padded with the padding id N; ``inputs`` are
            ``items[:-1]`` and ``targets`` are ``items[1:]`` (IGNORE_TARGET at padded positions). With
            ``training_order="fixed"``: ``(inputs, targets, views)``, views being each sequence's contrastive view
            (its items shuffled), drawn once.
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
        training_order: Literal["reshuffle", "fixed"] = "reshuffle",
        candidate_draws: Literal["independent", "reference"] = "independent",
        model_defaults: dict[str, float] | None = None,
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
            training_order: ``"reshuffle"`` the training set every epoch (the views are drawn by the model at
                every step); ``"fixed"``: the reference code's order (docs/specs/fmoe-cdsr.md, point 8): shuffled
                once, the same order every epoch, the last batch filled up with the first sequences of that order,
                and each sequence's contrastive view drawn once. Both draws are seeded by
                (``candidate_seed``, domain).
            candidate_draws: ``"independent"``: distinct negatives per (seed, domain, split) (see
                :func:`~lightning_fed.datamodules.sequential.candidates.draw_negatives`); ``"reference"``: the
                reference code's draws (point 9): one legacy NumPy stream seeded with ``candidate_seed`` (42 in
                the reference) through every domain of the scenario in order, valid then test, with replacement.
                The draws of a domain then depend on the earlier domains' validation and test targets, which are
                read for it.
            model_defaults: per-scenario values of model arguments left None (see
                :meth:`~lightning_fed.models.sequential.task.SequentialRecommendationTask.scenario_value`), e.g.
                the baselines' KL ``anneal_cap``.
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
        self.training_order = training_order
        self.candidate_draws = candidate_draws
        self.model_defaults = dict(model_defaults or {})
        self._num_train_sequences: int | None = None
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
        train = self._train_tensors(splits["train"].sequences, num_items)
        self._num_train_sequences = len(train[0])
        if self.training_order == "fixed":
            train = self._fixed_order(*train, num_items)
        self.datasets["train"] = TensorDataset(*train)
        negatives = self._reference_negatives(num_items) if self.candidate_draws == "reference" else {}
        for split in ("valid", "test"):
            self.datasets[split] = TensorDataset(*self._eval_tensors(split, splits[split], num_items, negatives))
        self.num_items = num_items

    @property
    def num_train_examples(self) -> int:
        """Training sequences of this client (its weight in FedAvg); a fixed order's filler is not counted."""
        self.setup()
        return self._num_train_sequences

    def train_dataloader(self):  # noqa: D102
        if self.training_order == "fixed":
            return self._loader("train", self.batch_size, shuffle=False)
        return super().train_dataloader()

    def _seed(self, purpose: str) -> list[int]:
        return [self.candidate_seed, zlib.crc32(self.domain.encode()), zlib.crc32(purpose.encode())]

    def _fixed_order(self, inputs: torch.Tensor, targets: torch.Tensor, num_items: int) -> tuple[torch.Tensor, ...]:
        """One shuffled order, padded to whole batches with its first sequences, and views drawn once."""
        count = len(inputs)
        order = np.random.Generator(np.random.PCG64(np.random.SeedSequence(self._seed("order")))).permutation(count)
        filler = (-count) % self.batch_size
        order = torch.from_numpy(np.concatenate([order, np.resize(order, filler)]))
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence(self._seed("views")).generate_state(1)[0]))
        views = shuffle_items(inputs, num_items, generator)
        return inputs[order], targets[order], views[order]

    def _reference_negatives(self, num_items: int) -> dict[tuple[str, str], np.ndarray]:
        """The reference stream up to this domain: every earlier domain's validation and test targets first."""
        draws = []
        for domain in self.scenario_domains[: self.scenario_domains.index(self.domain) + 1]:
            domain_items = num_items if domain == self.domain else read_num_items(self.source, domain)
            for split in ("valid", "test"):
                data = (
                    self.splits[split]
                    if domain == self.domain
                    else read_split(self.source, domain, split, domain_items)
                )
                sequences = data.sequences[: self.max_sequences] if self.max_sequences is not None else data.sequences
                draws.append((domain, split, np.array([seq[-1] for seq in sequences], dtype=np.int64), domain_items))
        return reference_negatives(draws, self.num_negatives, self.candidate_seed)

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

    def _eval_tensors(
        self, split: str, data: SequenceSplit, num_items: int, reference: dict[tuple[str, str], np.ndarray]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self._left_pad([seq[:-1] for seq in data.sequences], num_items)
        targets = np.array([seq[-1] for seq in data.sequences], dtype=np.int64)
        content_key = f"{self.source.fingerprint()}|{self.domain}|{self.max_seq_len}"
        if reference:
            negatives = reference[(self.domain, split)]
        else:
            negatives = cached_negatives(
                targets, num_items, self.num_negatives, self.candidate_seed, self.domain, split, content_key,
                self.cache_dir,
            )  # fmt: skip
        candidates = torch.from_numpy(np.concatenate([targets[:, None], negatives], axis=1))
        return inputs, candidates
