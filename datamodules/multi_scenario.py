"""A multi-scenario multi-task dataset: one :class:`MultiTaskDataModule` per scenario, i.e. per federated client."""

from __future__ import annotations

from abc import abstractmethod

from lightning import LightningDataModule

from lightning_fed.datamodules.multitask_datamodule import MultiTaskDataModule, MultiTaskTable
from lightning_fed.errors import ConfigurationError, check_integer


class MultiScenarioMultiTask(LightningDataModule):
    """Scenarios that share a task list; each becomes one client that sees only its own rows.

    The dataset itself serves no batches: a federation asks it for :meth:`client_datamodules`. Subclasses
    implement :meth:`load_scenario` and, for data on disk, :meth:`prepare_data`.
    """

    #: Arguments that may differ from the trained federation's when it is tested or validated again.
    reconfigurable_arguments: tuple[str, ...] = ("root", "eval_batch_size", "num_workers")
    #: The tasks, in label-column order.
    task_names: list[str] = []

    def __init__(
        self,
        scenarios: list[str],
        batch_size: int = 2048,
        eval_batch_size: int = 8192,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        """Describe the dataset.

        Args:
            scenarios: the scenarios (clients), in a fixed order.
            batch_size: training batch size.
            eval_batch_size: validation/test batch size.
            val_fraction: share of each scenario's training rows carved out for validation (early stopping).
            split_seed: seed of that carving (and of any other random split).
            num_workers: DataLoader workers per client.
        """
        super().__init__()
        if not scenarios:
            raise ConfigurationError("data.init_args.scenarios: a dataset needs at least one scenario")
        if len(set(scenarios)) != len(scenarios):
            raise ConfigurationError(f"data.init_args.scenarios: scenarios must be distinct, got {scenarios}")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigurationError(f"data.init_args.val_fraction must be in (0, 1), got {val_fraction}")
        for option, value, minimum in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                       ("num_workers", num_workers, 0)):  # fmt: skip
            check_integer(f"data.init_args.{option}", value, minimum)
        self.scenarios = list(scenarios)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.num_workers = num_workers
        self._clients: dict[str, MultiTaskDataModule] | None = None

    @abstractmethod
    def load_scenario(self, name: str, index: int) -> tuple[dict[str, MultiTaskTable], list[int]]:
        """The ``train``/``valid``/``test`` tables of scenario ``name`` (the ``index``-th) and its vocab sizes."""

    def client_datamodules(self) -> dict[str, MultiTaskDataModule]:
        """One datamodule per scenario, loaded once and in the dataset's scenario order."""
        if self._clients is None:
            self.prepare_data()
            clients = {}
            for index, name in enumerate(self.scenarios):
                splits, vocab_sizes = self.load_scenario(name, index)
                clients[name] = MultiTaskDataModule(
                    name, splits, vocab_sizes, self.task_names, self.batch_size, self.eval_batch_size, self.num_workers
                )
            self._clients = clients
        return self._clients
