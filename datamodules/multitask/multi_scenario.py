"""A multi-scenario multi-task dataset: one :class:`MultiTaskDataModule` per scenario, i.e. per federated client."""

from __future__ import annotations

from abc import abstractmethod

from lightning_fed.datamodules.base import ScenarioDataModule
from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskDataModule, MultiTaskTable
from lightning_fed.errors import ConfigurationError


class MultiScenarioMultiTask(ScenarioDataModule):
    """Scenarios that share a task list; each becomes one client that sees only its own rows.

    The dataset itself serves no batches: a federation asks it for :meth:`client_datamodules`. Subclasses
    implement :meth:`load_scenario` and, for data on disk, :meth:`prepare_data`.
    """

    #: Arguments that may differ from the trained federation's when it is tested or validated again.
    reconfigurable_arguments: tuple[str, ...] = ("root", "eval_batch_size", "num_workers")
    client_noun = "scenario"
    whole_noun = "dataset"
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
        super().__init__(scenarios, "data.init_args.scenarios")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigurationError(f"data.init_args.val_fraction must be in (0, 1), got {val_fraction}")
        self.check_loader_arguments(batch_size, eval_batch_size, num_workers)
        self.scenarios = list(scenarios)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.num_workers = num_workers

    @abstractmethod
    def load_scenario(self, name: str, index: int) -> tuple[dict[str, MultiTaskTable], list[int]]:
        """The ``train``/``valid``/``test`` tables of scenario ``name`` (the ``index``-th) and its vocab sizes."""

    def configure_client(self, name: str) -> MultiTaskDataModule:
        """The datamodule of scenario ``name``, loaded from that scenario's rows only."""
        splits, vocab_sizes = self.load_scenario(name, self.scenarios.index(name))
        return MultiTaskDataModule(
            name, splits, vocab_sizes, self.task_names, self.batch_size, self.eval_batch_size, self.num_workers
        )

    def configure_clients(self) -> dict[str, MultiTaskDataModule]:
        """One datamodule per scenario, loaded in the dataset's scenario order (every file checked first)."""
        self.prepare_data()
        return super().configure_clients()
