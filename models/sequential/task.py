"""The sequential family's task: next-item recommendation over one domain, evaluated by ranking."""

from __future__ import annotations

from abc import abstractmethod
from functools import partial
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from lightning_fed.errors import ConfigurationError, check_integer
from lightning_fed.models.base import FederatedTask
from lightning_fed.models.layers.item_head import ItemHead, adopt_linear_head_optimizer_states
from lightning_fed.models.layers.workspace import WORKSPACE
from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.ranking_metrics import METRIC_NAMES, RankingMetrics, target_ranks


class SequentialRecommendationTask(FederatedTask):
    """Next-item recommendation over one domain's items, evaluated by ranking (sampled or full).

    A client holds one domain. Subclasses implement :meth:`configure_models` (the networks, from the domain's
    datamodule: ``num_items``, ``max_seq_len``, ``ignore_target``, ``item_graph``, ``scenario_domains``),
    :meth:`training_step` and :meth:`score_candidates`, and declare what they share (see
    :class:`~lightning_fed.models.base.FederatedTask`). The datamodule's values a step needs are kept by
    :meth:`build`: ``pad_id`` and ``ignore_target``.
    """

    monitor = "MRR"
    monitor_mode = "max"
    reconfigurable_arguments: ClassVar[tuple[str, ...]] = ("ranking",)

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ranking: Literal["sampled", "full"] = "sampled",
        adam_betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        """Create the task.

        Args:
            lr: Adam learning rate.
            weight_decay: Adam weight decay.
            adam_betas: Adam's (beta1, beta2).
            ranking: ``"sampled"`` ranks the target among the datamodule's fixed candidates (the papers'
                protocol); ``"full"`` ranks it among all of the domain's items.
        """
        super().__init__()
        if not lr > 0:
            raise ConfigurationError(f"model.init_args.lr must be positive, got {lr}")
        if len(adam_betas) != 2 or not all(0.0 <= beta < 1.0 for beta in adam_betas):
            raise ConfigurationError(f"model.init_args.adam_betas must be two numbers in [0, 1), got {adam_betas}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.adam_betas = tuple(adam_betas)
        self.ranking = ranking
        self.pad_id: int | None = None
        self.ignore_target: int | None = None

    @staticmethod
    def check_encoder_arguments(hidden_dim: int, num_blocks: int, num_heads: int, dropout: float) -> None:
        """Refuse encoder sizes that cannot work, naming the setting (before any network is built)."""
        for name, value in (("hidden_dim", hidden_dim), ("num_blocks", num_blocks), ("num_heads", num_heads)):
            check_integer(f"model.init_args.{name}", value)
        if hidden_dim % num_heads:
            raise ConfigurationError(
                f"model.init_args.num_heads ({num_heads}) must divide model.init_args.hidden_dim ({hidden_dim})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigurationError(f"model.init_args.dropout must be in [0, 1), got {dropout}")

    def loss_denominator(self, targets: Tensor) -> int:
        """What a step's summed losses are divided by, from ``hparams.loss_normalization``.

        ``"all_positions"``: B * T, padding positions counted (the reference code); ``"valid_positions"``: the
        number of positions with a target (a mean; at least 1).
        """
        if self.hparams.loss_normalization == "all_positions":
            return targets.numel()
        return max(1, int((targets != self.ignore_target).sum()))

    def scenario_value(self, name: str, datamodule: Any) -> float:
        """``hparams[name]``, or the data's ``model_defaults[name]`` when it is None (kept in ``hparams``).

        Values the baselines' papers set per scenario (the KL anneal cap, FedDCSR's beta and lambda) live in the
        data layer (``data.init_args.model_defaults`` in ``configs/data/*.yaml``), so one model config serves every
        scenario; a value given to the model wins.
        """
        value = self.hparams[name]
        if value is None:
            defaults = getattr(datamodule, "model_defaults", None) or {}
            if name not in defaults:
                raise ConfigurationError(
                    f"{type(self).__name__} needs {name}: set model.init_args.{name}, or data.init_args.model_defaults"
                    f" with a '{name}' entry (configs/data/fkcb.yaml shows the per-scenario values)"
                )
            value = float(defaults[name])
            self.hparams[name] = value
        return value

    # Template hooks -----------------------------------------------------------------------------------------
    def configure_metrics(self) -> None:
        """Ranking metrics for validation and test."""
        self.val_metrics = RankingMetrics()
        self.test_metrics = RankingMetrics()

    @property
    def validation_metrics(self) -> tuple[str, ...]:
        """The names this model logs under ``val/`` (what a federation may monitor)."""
        return METRIC_NAMES

    @abstractmethod
    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:
        """Scores (B, C) of candidate items (B, C) after ``inputs`` (B, T); (B, N) for all items if None.

        Encoders may run in the training precision; the scores themselves (and any fusion of them) are
        computed in fp32 outside autocast (:func:`~lightning_fed.models.layers.precision.full_precision`).
        """

    # Lightning ----------------------------------------------------------------------------------------------
    @property
    def domain(self) -> str | None:
        """The domain this client holds (its client name)."""
        return self.client

    def build(self, datamodule: Any) -> None:
        """Keep the padding id and the ignored-target value of the domain's data, then build (once)."""
        if not self._built:
            self.pad_id = datamodule.num_items
            self.ignore_target = datamodule.ignore_target
        super().build(datamodule)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the trainable parameters (frozen downloaded encoders are not in it)."""
        params = [p for p in self.parameters() if p.requires_grad]
        # fused: one kernel per parameter, no foreach temporaries the size of all parameters
        optimizer = torch.optim.Adam(
            params, lr=self.lr, betas=self.adam_betas, weight_decay=self.weight_decay, fused=True
        )
        heads = [m for m in self.modules() if isinstance(m, ItemHead)]
        optimizer.register_load_state_dict_post_hook(partial(adopt_linear_head_optimizer_states, heads=heads))
        return optimizer

    def _eval_step(self, batch: tuple[Tensor, Tensor], metrics: RankingMetrics) -> None:
        inputs, candidates = batch
        # score_candidates scores (and fuses) in fp32 outside autocast; see models/layers/precision.py
        if self.ranking == "full":
            ranks = target_ranks(self.score_candidates(inputs, None), candidates[:, 0])
        else:
            ranks = target_ranks(self.score_candidates(inputs, candidates), 0)
        metrics.update(ranks)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:  # noqa: D102
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:  # noqa: D102
        self._eval_step(batch, self.test_metrics)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self.log_dict({f"val/{k}": v.float() for k, v in self.val_metrics.compute().items()})
        self.val_metrics.reset()
        self._release_evaluation_caches()

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self.log_dict({f"test/{k}": v.float() for k, v in self.test_metrics.compute().items()})
        self.test_metrics.reset()
        self._release_evaluation_caches()

    def on_train_end(self) -> None:  # noqa: D102
        # the head loss's reused buffers are sized for this client (FMoE-CDSR's kept logits: K x M x C): a
        # federation trains the next client, or keeps this one idle until the next round
        WORKSPACE.clear()

    def _release_evaluation_caches(self) -> None:
        """Free the experts' cached item tables and the scoring buffer: a federation keeps every client's model."""
        for module in self.modules():
            if isinstance(module, Expert):
                module.release_cached_items()
        WORKSPACE.release("scores")
