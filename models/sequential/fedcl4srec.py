"""FedCL4SRec: CL4SRec trained with FedAvg over its sequence encoder (a FedDCSR / FMoE-CDSR baseline).

CL4SRec: Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022. Federated as in FedDCSR
(Zhang et al., SDM 2024), whose code ran the FMoE-CDSR paper's baselines; docs/specs/baselines.md, "FedCL4SRec".
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_fed.errors import check_integer
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.models.sequential.augmentations import AugmentedViews, augment, two_distinct_operators
from lightning_fed.models.sequential.averaged_modules import AveragedModulesTask
from lightning_fed.models.sequential.contrastive import nt_xent
from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.sequence_encoder import BlockForm, SequenceEncoder


class FedCL4SRec(AveragedModulesTask):
    """CL4SRec client: local embeddings, positions, input norm and head around a FedAvg-shared SA(2) encoder.

    Loss: ``L_rec + lambda * NCE(h'_T, h''_T)``: the next-item cross-entropy at every position, plus the
    contrast of two views of each sequence made by two different operators among crop, mask and reorder
    (drawn without replacement, every step), both encoded with dropout on, compared at the last position (the
    sequence itself is not in the contrast). Only the encoder is averaged.
    """

    def __init__(
        self,
        hidden_dim: int = 256,
        num_blocks: int = 2,
        num_heads: int = 4,
        dropout: float = 0.3,
        block_form: BlockForm = "pre_norm",
        contrastive_weight: float = 0.1,
        temperature: float = 1.0,
        aug_refresh: Literal["step", "once"] = "step",
        loss_normalization: Literal["all_positions", "valid_positions"] = "all_positions",
        loss_chunk_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        adam_betas: tuple[float, float] = (0.9, 0.98),
        ranking: Literal["sampled", "full"] = "sampled",
    ) -> None:
        """Create the model (built per client from its datamodule); defaults are FedDCSR's.

        Args:
            hidden_dim: d (256).
            num_blocks: self-attention blocks (2).
            num_heads: attention heads (4).
            dropout: dropout (0.3).
            block_form: ``"pre_norm"``: the project's block (the default choice); ``"sasrec"``: FedDCSR's, whose
                attention residual is added to LN(x) and whose padding keys are unmasked (docs/specs/baselines.md).
            contrastive_weight: lambda (0.1, hard-coded in FedDCSR's trainer).
            temperature: tau of the NCE (1.0).
            aug_refresh: ``"step"``: new views at every step (the default choice); ``"once"``: each training
                sequence's views drawn once, at build, and reused every epoch (FedDCSR's code).
            loss_normalization: ``"all_positions"``: the cross-entropy's masked sum divided by B * T, padding
                counted (the code); ``"valid_positions"``: a mean over the positions with a target.
            loss_chunk_size: rows per chunk of the full-softmax cross-entropy.
            lr: Adam learning rate (1e-3).
            weight_decay: Adam weight decay (0: FedDCSR's 5e-4 never reaches its optimizer).
            adam_betas: Adam's betas ((0.9, 0.98)).
            ranking: ``"sampled"`` or ``"full"`` ranking at evaluation.
        """
        super().__init__(lr=lr, weight_decay=weight_decay, ranking=ranking, adam_betas=adam_betas)
        self.check_encoder_arguments(hidden_dim, num_blocks, num_heads, dropout)
        check_integer("model.init_args.loss_chunk_size", loss_chunk_size)
        self.save_hyperparameters()
        self.expert: Expert | None = None
        self.augmented_views: AugmentedViews | None = None

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        encoder = SequenceEncoder(hp.hidden_dim, hp.num_blocks, hp.num_heads, hp.dropout, block_form=hp.block_form)
        self.expert = Expert(
            datamodule.num_items, encoder, hp.hidden_dim, datamodule.max_seq_len, hp.dropout, gnn_layers=0,
            embedding_init="standard_normal", input_norm_eps=1e-12,
        )  # fmt: skip
        # FedDuoRec (a subclass) draws no views and has no aug_refresh
        self.augmented_views = AugmentedViews(self.draw_views, hp.get("aug_refresh", "step"), datamodule)

    def draw_views(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Two views (B, 2, T) per sequence by two different operators, drawn without replacement."""
        first, second = two_distinct_operators(len(inputs), inputs.device, generator)
        return torch.stack(
            [augment(inputs, self.pad_id, first, generator), augment(inputs, self.pad_id, second, generator)], 1
        )

    def shared_modules(self) -> dict[str, nn.Module]:
        """The encoder (FedAvg): no item embedding, no head."""
        return {"encoder": self.expert.encoder}

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:  # noqa: D102
        inputs, targets = batch[0], batch[1]
        hp = self.hparams
        rows = targets != self.ignore_target
        denominator = self.loss_denominator(targets)
        drawn = self.augmented_views(inputs)
        views = torch.cat([drawn[:, 0], drawn[:, 1]])
        encoded = self.expert(torch.cat([inputs, views]), None)
        z, view_last = encoded[: len(inputs)], encoded[len(inputs) :, -1]
        (rec,), _ = mixture_cross_entropy(
            [z[rows]], [self.expert.head.weight], [self.expert.head.bias], targets[rows],
            chunk_size=hp.loss_chunk_size, denominator=denominator,
        )  # fmt: skip
        contrast = nt_xent(view_last[: len(inputs)], view_last[len(inputs) :], hp.temperature)
        loss = rec + hp.contrastive_weight * contrast
        self.log_dict({"train/loss": loss, "train/next_item": rec, "train/contrast": contrast}, batch_size=len(inputs))
        return loss

    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:  # noqa: D102
        return self.expert.candidate_scores(self.expert(inputs, None, last_only=True), candidates)
