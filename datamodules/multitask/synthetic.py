"""A seeded synthetic multi-scenario multi-task dataset with planted structure (tests and the CPU demo).

What is planted, exactly (all draws from one ``torch.Generator`` seeded with ``seed``):

- **Features.** Each row has ``num_fields`` categorical ids, uniform over ``vocab_size`` values, and
  ``num_numerical`` numerical features. Every id ``v`` of field ``f`` has a latent vector ``E_f[v] ~
  N(0, I_k / num_fields)`` (k = ``latent_dim``), the same in every scenario; numerical features mix through
  ``A ~ N(0, I / num_numerical)`` (shape P x k). The latent of a row is ``h = sum_f E_f[c_f] + A^T z``, with
  ``z ~ N(0, I)``.
- **Feature shift** (what FedBN is for). Scenario s does not show ``z`` but ``x = mu_s + sigma_s * z``, with
  ``mu_s ~ feature_shift * N(0, I)`` and ``log sigma_s ~ feature_shift * U(-0.5, 0.5)`` per feature: the
  signal is a function of the scenario-standardized features.
- **Signals.** Unit directions in R^k: ``w0`` shared by all scenarios, ``w_s`` one per scenario, ``u_t`` one per
  task. The task directions conflict by ``task_conflict`` (rho): ``u_1 = u`` and
  ``u_t = cos(pi * rho) u + sin(pi * rho) u_perp_t`` for t >= 2, with ``u_perp_t`` orthogonal to ``u`` (rho = 0:
  the tasks agree, 0.5: orthogonal, 1: opposed).
- **Labels.** ``logit_{s,t} = shared_weight * w0.h + scenario_weight * w_s.h + task_weight * u_t.h + bias_t`` and
  ``y_t ~ Bernoulli(sigmoid(logit_{s,t}))``, independently per task given the logits.
- **Sizes.** Scenario s has ``rows[s]`` rows (unequal by default, so small scenarios gain from the others), cut
  at random into train/valid/test by ``val_fraction`` and ``test_fraction``.

The true logits are kept in :attr:`SyntheticMSMT.true_logits` (per scenario and split), so a test can check
what was planted and the Bayes AUC a model could reach.
"""

from __future__ import annotations

import math

import torch

from lightning_fed.datamodules.base import random_row_split
from lightning_fed.datamodules.multitask.multi_scenario import MultiScenarioMultiTask
from lightning_fed.datamodules.multitask.multitask_datamodule import MultiTaskTable
from lightning_fed.errors import ConfigurationError


class SyntheticMSMT(MultiScenarioMultiTask):
    """Synthetic scenarios ``S0..S{n-1}`` with tasks ``task1..taskT`` (see the module docstring)."""

    def __init__(
        self,
        rows: list[int] | None = None,
        num_tasks: int = 2,
        num_fields: int = 4,
        vocab_size: int = 100,
        num_numerical: int = 8,
        latent_dim: int = 8,
        shared_weight: float = 1.5,
        scenario_weight: float = 1.0,
        task_weight: float = 1.0,
        task_conflict: float = 0.25,
        feature_shift: float = 1.0,
        task_bias: list[float] | None = None,
        seed: int = 0,
        test_fraction: float = 0.2,
        **kwargs,
    ) -> None:
        """Generate the data (in memory, in a second or two).

        Args:
            rows: rows per scenario; its length is the number of scenarios.
            num_tasks: T.
            num_fields: categorical fields.
            vocab_size: ids per categorical field.
            num_numerical: numerical features P.
            latent_dim: k.
            shared_weight: weight of the signal shared by all scenarios.
            scenario_weight: weight of each scenario's own signal.
            task_weight: weight of each task's own signal.
            task_conflict: rho in [0, 1], how opposed the tasks' own signals are.
            feature_shift: scale of the per-scenario shift of the numerical features (0: none).
            task_bias: bias_t per task (default: -0.5 for task1, -1.5 for the others).
            seed: seed of everything.
            test_fraction: share of each scenario's rows for test (``val_fraction`` for validation).
            **kwargs: the base class's batch_size, eval_batch_size, val_fraction, split_seed, num_workers.
        """
        rows = rows or [20000, 10000, 5000, 2500]
        if not 0.0 <= task_conflict <= 1.0:
            raise ConfigurationError(f"data.init_args.task_conflict must be in [0, 1], got {task_conflict}")
        if num_tasks < 1 or latent_dim < num_tasks:
            raise ConfigurationError("data.init_args.num_tasks must be at least 1 and at most latent_dim")
        super().__init__([f"S{i}" for i in range(len(rows))], **kwargs)
        self.task_names = [f"task{t + 1}" for t in range(num_tasks)]
        self.rows = rows
        self.test_fraction = test_fraction
        self.vocab_size = vocab_size
        bias = task_bias or [-0.5] + [-1.5] * (num_tasks - 1)
        if len(bias) != num_tasks:
            raise ConfigurationError(f"data.init_args.task_bias needs {num_tasks} values, got {len(bias)}")
        g = torch.Generator().manual_seed(seed)
        k = latent_dim

        def unit(n: int) -> torch.Tensor:
            v = torch.randn(n, k, generator=g)
            return v / v.norm(dim=1, keepdim=True)

        field_latents = torch.randn(num_fields, vocab_size, k, generator=g) / math.sqrt(num_fields)
        mixing = torch.randn(num_numerical, k, generator=g) / math.sqrt(max(num_numerical, 1))
        w0, w_scenario = unit(1)[0], unit(len(rows))
        basis, _ = torch.linalg.qr(torch.randn(k, k, generator=g))  # orthonormal columns
        u, angle = basis[:, 0], math.pi * task_conflict
        task_dirs = torch.stack(
            [u] + [math.cos(angle) * u + math.sin(angle) * basis[:, t] for t in range(1, num_tasks)]
        )
        self.planted = {"w0": w0, "w_scenario": w_scenario, "task_directions": task_dirs}
        self.true_logits: dict[str, dict[str, torch.Tensor]] = {}
        self._tables: dict[str, dict[str, MultiTaskTable]] = {}
        for s, n in enumerate(rows):
            categorical = torch.randint(vocab_size, (n, num_fields), generator=g)
            z = torch.randn(n, num_numerical, generator=g)
            mu = feature_shift * torch.randn(num_numerical, generator=g)
            sigma = torch.exp(feature_shift * (torch.rand(num_numerical, generator=g) - 0.5))
            h = field_latents[torch.arange(num_fields), categorical].sum(1) + z @ mixing
            logits = (
                shared_weight * (h @ w0)[:, None]
                + scenario_weight * (h @ w_scenario[s])[:, None]
                + task_weight * h @ task_dirs.T
                + torch.tensor(bias)
            )
            labels = torch.bernoulli(torch.sigmoid(logits), generator=g)
            table = MultiTaskTable(categorical, mu + sigma * z, labels)
            n_test, n_valid = round(test_fraction * n), round(self.val_fraction * n)
            parts = random_row_split(
                n, [("test", n_test), ("valid", n_valid), ("train", None)], generator=g, sort=False
            )
            name = self.scenarios[s]
            self._tables[name] = {split: table.subset(index) for split, index in parts.items()}
            self.true_logits[name] = {split: logits[index] for split, index in parts.items()}

    def prepare_data(self) -> None:  # noqa: D102 - generated in memory
        return None

    def load_scenario(self, name: str, index: int) -> tuple[dict[str, MultiTaskTable], list[int]]:  # noqa: D102
        return self._tables[name], [self.vocab_size] * self._tables[name]["train"].categorical.shape[1]
