"""The two bases of the zoo's data: a scenario of clients, and one client's datamodule.

:class:`ScenarioDataModule` implements the runtime's :class:`~lightning_fed.protocols.FederatedScenario`
once for every scenario (ordered, distinct, cached clients); :class:`ClientDataModule` turns a client's
datasets per split into loaders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from lightning import LightningDataModule
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from lightning_fed.errors import ConfigurationError, check_integer

SPLITS = ("train", "valid", "test")


def batch_slicing_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int = 0, drop_last: bool = False
) -> DataLoader:
    """Batches indexed at once (``dataset[list_of_indices]``) instead of collating single rows."""
    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last),
        batch_size=None,
        num_workers=num_workers,
    )


def random_row_split(
    size: int,
    parts: Sequence[tuple[str, int | None]],
    seed: int | None = None,
    generator: torch.Generator | None = None,
    sort: bool = True,
) -> dict[str, torch.Tensor]:
    """Row indices of ``size`` rows cut at random into named parts (every random split of the zoo's data).

    One permutation of ``range(size)`` is drawn, from ``seed`` alone or from ``generator``; the parts take
    consecutive runs of it in the order given, and a count of None takes the rest.

    Args:
        size: number of rows.
        parts: ``(name, count)`` pairs.
        seed: seed of a fresh generator (the split then depends on nothing else).
        generator: a generator to draw from instead (a dataset that draws everything from one generator).
        sort: give each part's indices in increasing order (rows keep their file order).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
    order = torch.randperm(size, generator=generator)
    result, start = {}, 0
    for name, count in parts:
        stop = size if count is None else start + count
        result[name] = order[start:stop].sort().values if sort else order[start:stop]
        start = stop
    return result


class ClientDataModule(LightningDataModule, ABC):
    """One client's data: :meth:`setup` fills :attr:`datasets` (``train``, ``valid``, ``test``), loaders follow.

    Batches are sliced out of in-memory tensors (:func:`batch_slicing_loader`); training batches are shuffled.

    Args:
        client: the client's name (a domain, a scenario: what this client holds).
        batch_size: training batch size.
        eval_batch_size: validation/test batch size.
        num_workers: DataLoader workers.
    """

    #: Drop a last training batch of a single row (it would break BatchNorm); other batches are all kept.
    drop_single_row_batch: bool = False

    def __init__(self, client: str, batch_size: int, eval_batch_size: int, num_workers: int = 0) -> None:
        super().__init__()
        self.client = client
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, Dataset] = {}

    @abstractmethod
    def setup(self, stage: str | None = None) -> None:
        """Fill :attr:`datasets` (once; later calls do nothing)."""

    @property
    def num_train_examples(self) -> int:
        """Training examples of this client (its weight in FedAvg)."""
        self.setup()
        return len(self.datasets["train"])

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        self.setup()
        dataset = self.datasets[split]
        drop_last = shuffle and self.drop_single_row_batch and len(dataset) % batch_size == 1
        return batch_slicing_loader(dataset, batch_size, shuffle, self.num_workers, drop_last)

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader("valid", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader("test", self.eval_batch_size, shuffle=False)


class ScenarioDataModule(LightningDataModule, ABC):
    """A federation's data: one :class:`ClientDataModule` per client, in a fixed order.

    It serves no batches itself: a federation asks it for :meth:`client_datamodules`, and each client trains on
    its own data only. Subclasses implement :meth:`configure_clients`, and :meth:`prepare_data` for data on disk.

    Args:
        clients: the clients' names, in order; they must be distinct.
        option: the configuration key that lists them (for error messages).
    """

    #: What a client holds and what the whole is called, in this family's words (for error messages).
    client_noun: str = "client"
    whole_noun: str = "federation"

    def __init__(self, clients: list[str], option: str) -> None:
        super().__init__()
        if not clients:
            raise ConfigurationError(f"{option}: a {self.whole_noun} needs at least one {self.client_noun}")
        if len(set(clients)) != len(clients):
            raise ConfigurationError(f"{option}: {self.client_noun}s must be distinct, got {clients}")
        self.client_names = list(clients)
        self._clients: dict[str, ClientDataModule] | None = None

    @staticmethod
    def check_loader_arguments(batch_size: int, eval_batch_size: int, num_workers: int) -> None:
        """Refuse batch sizes below 1 and negative worker counts, naming the ``data.init_args`` key."""
        for option, value, minimum in (
            ("batch_size", batch_size, 1),
            ("eval_batch_size", eval_batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            check_integer(f"data.init_args.{option}", value, minimum)

    @abstractmethod
    def configure_client(self, name: str) -> ClientDataModule:
        """The datamodule of client ``name`` (one of :attr:`client_names`), built from that client's data only."""

    def configure_clients(self) -> dict[str, ClientDataModule]:
        """One datamodule per client name of :attr:`client_names`, in that order."""
        return {name: self.configure_client(name) for name in self.client_names}

    def prepare_client_data(self, name: str) -> None:
        """Check (or fetch) what client ``name`` needs on disk; by default, everything (:meth:`prepare_data`)."""
        self.prepare_data()

    def client_datamodule(self, name: str) -> ClientDataModule:
        """The datamodule of one client, needing only that client's files (what a client's own machine builds)."""
        if name not in self.client_names:
            raise ConfigurationError(f"{self.client_noun} {name!r} is not one of {self.client_names}")
        if self._clients is not None:
            return self._clients[name]
        self.prepare_client_data(name)
        return self.configure_client(name)

    def forget_clients(self) -> None:
        """Drop the cached client datamodules (after the data's location changed)."""
        self._clients = None

    def client_datamodules(self) -> dict[str, ClientDataModule]:
        """One datamodule per client, created once and in :attr:`client_names` order."""
        if self._clients is None:
            clients = self.configure_clients()
            if list(clients) != self.client_names:
                raise RuntimeError(
                    f"{type(self).__name__}.configure_clients gave {list(clients)}, not the clients {self.client_names}"
                )
            self._clients = clients
        return self._clients
