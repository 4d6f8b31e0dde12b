"""A multi-scenario multi-task dataset: one :class:`MultiTaskDataModule` per scenario, i.e. per federated client.

Or, for the spec's centralized baselines (docs/specs/pf-msmtrec.md, "Baselines to provide"), every scenario's rows
pooled into one client with the scenario as a feature.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from lightning_fed.datamodules.base import SPLITS, ScenarioDataModule
from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskDataModule, MultiTaskTable
from lightning_fed.errors import ConfigurationError, DataFormatError

#: The one client of a centralized dataset (``centralized=True``): every scenario's rows.
POOLED_CLIENT = "pooled"


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
        centralized: bool = False,
    ) -> None:
        """Describe the dataset.

        Args:
            scenarios: the scenarios (clients), in a fixed order.
            batch_size: training batch size.
            eval_batch_size: validation/test batch size.
            val_fraction: share of each scenario's training rows carved out for validation (early stopping).
            split_seed: seed of that carving (and of any other random split).
            num_workers: DataLoader workers per client.
            centralized: pool every scenario's rows into one client, ``"pooled"``, with the scenario index as one
                more categorical field (the last): the spec's centralized baselines (all scenarios pooled,
                scenario as a feature). Each split is the union of the scenarios' own splits (the same rows a
                federation of the scenarios trains, validates and tests on), and the model reports its metrics
                per scenario and their mean over scenarios, as a federation does.
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
        self.centralized = centralized
        if centralized:
            self.client_names = [POOLED_CLIENT]

    def scenarios_of(self, client: str) -> list[str]:
        """The scenarios whose rows client ``client`` holds: every one for the pooled client, else its own."""
        return list(self.scenarios) if self.centralized and client == POOLED_CLIENT else [client]

    @abstractmethod
    def load_scenario(self, name: str, index: int) -> tuple[dict[str, MultiTaskTable], list[int]]:
        """The ``train``/``valid``/``test`` tables of scenario ``name`` (the ``index``-th) and its vocab sizes."""

    def pooled_scenarios(self) -> tuple[dict[str, MultiTaskTable], list[int]]:
        """Every scenario's splits concatenated (in scenario order) with the scenario index as a last field.

        A field's vocabulary is the largest of the scenarios' (ids are taken as the scenarios' tables hold them,
        so this assumes the scenarios share one id space per field; a dataset that encodes ids per scenario
        overrides this method to encode them jointly). The scenario field's vocabulary is the number of scenarios.
        """
        loaded = [self.load_scenario(name, index) for index, name in enumerate(self.scenarios)]
        return pool_tables(self.scenarios, [splits for splits, _ in loaded], [vocab for _, vocab in loaded])

    def configure_client(self, name: str) -> MultiTaskDataModule:
        """The datamodule of scenario ``name`` (that scenario's rows only), or of the pooled client."""
        if self.centralized:
            splits, vocab_sizes = self.pooled_scenarios()
            scenario_names = list(self.scenarios)
        else:
            splits, vocab_sizes = self.load_scenario(name, self.scenarios.index(name))
            scenario_names = None
        return MultiTaskDataModule(
            name,
            splits,
            vocab_sizes,
            self.task_names,
            self.batch_size,
            self.eval_batch_size,
            self.num_workers,
            scenario_names=scenario_names,
        )

    def configure_clients(self) -> dict[str, MultiTaskDataModule]:
        """One datamodule per scenario, loaded in the dataset's scenario order (every file checked first)."""
        self.prepare_data()
        return super().configure_clients()


def pool_tables(
    scenarios: list[str], splits: list[dict[str, MultiTaskTable]], vocab_sizes: list[list[int]]
) -> tuple[dict[str, MultiTaskTable], list[int]]:
    """The scenarios' splits concatenated in order, each row's scenario index appended as its last categorical id.

    Returns the pooled splits and the vocabularies: the largest of the scenarios' per field, then the number of
    scenarios (the scenario field's).

    Raises:
        DataFormatError: the scenarios disagree on the number of categorical fields or of numerical features.
    """
    widths = {(len(v), splits[i]["train"].numerical.shape[1]) for i, v in enumerate(vocab_sizes)}
    if len(widths) != 1:
        shapes = ", ".join(
            f"{name}: {len(v)} categorical / {splits[i]['train'].numerical.shape[1]} numerical"
            for i, (name, v) in enumerate(zip(scenarios, vocab_sizes))
        )
        raise DataFormatError(f"the scenarios cannot be pooled into one table: their fields differ ({shapes})")
    pooled = {}
    for split in SPLITS:
        tables = [scenario_splits[split] for scenario_splits in splits]
        scenario_ids = torch.cat([torch.full((len(t), 1), i, dtype=torch.int64) for i, t in enumerate(tables)])
        pooled[split] = MultiTaskTable(
            categorical=torch.cat([torch.cat([t.categorical for t in tables]), scenario_ids], dim=1),
            numerical=torch.cat([t.numerical for t in tables]),
            labels=torch.cat([t.labels for t in tables]),
        )
    vocab = [max(sizes) for sizes in zip(*vocab_sizes)]
    return pooled, [*vocab, len(scenarios)]
