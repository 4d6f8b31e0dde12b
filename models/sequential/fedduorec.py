"""FedDuoRec: DuoRec trained with FedAvg over its sequence encoder (a FedDCSR / FMoE-CDSR baseline).

DuoRec: Qiu et al., "Contrastive Learning for Representation Degeneration Problem in Sequential Recommendation",
WSDM 2022. Federated as in FedDCSR (Zhang et al., SDM 2024), whose code ran the FMoE-CDSR paper's baselines;
docs/specs/baselines.md, "FedDuoRec".
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.models.sequential.augmentations import unique_rows
from lightning_fed.models.sequential.contrastive import nt_xent
from lightning_fed.models.sequential.fedcl4srec import FedCL4SRec
from lightning_fed.models.sequential.sequence_encoder import BlockForm


def same_target_positives(inputs: Tensor, targets: Tensor, generator: torch.Generator) -> Tensor:
    """For each training sequence, another one with the same final target, drawn uniformly once.

    A sequence is its inputs plus its final target; identical sequences are never each other's positive. A
    sequence without such a partner is its own positive (the two passes then differ only by dropout).

    Args:
        inputs: (n, T) training inputs.
        targets: (n, T) training targets (the final target is the last column).
        generator: the draw's RNG.

    Returns:
        (n,) the index of each sequence's positive.
    """
    final = targets[:, -1]
    positives = torch.arange(len(inputs))
    for target in final.unique().tolist():
        group = (final == target).nonzero().squeeze(1)
        if len(group) < 2:
            continue
        rows = inputs[group]
        for i, row in zip(group.tolist(), rows):
            candidates = group[(rows != row).any(1)]  # the group's sequences other than identical ones
            if len(candidates):
                positives[i] = candidates[torch.randint(len(candidates), (1,), generator=generator)].item()
    return positives


class FedDuoRec(FedCL4SRec):
    """DuoRec client: the SA(2) next-item model plus a contrast of each sequence with a same-target positive.

    Loss: ``L_rec + lambda * NCE(h_T(s), h_T(s+))``, both passes in training mode; s+ is another training
    sequence of the client with the same final target, drawn once per client (at build) from
    ``positive_seed``. As in the FedDCSR code there is no separate unsupervised term and no false-negative
    removal. Only the encoder is averaged.
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
        positive_seed: int = 42,
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
            positive_seed: seed of the one draw of the same-target positives.
            loss_normalization: ``"all_positions"`` (B * T, the code) or ``"valid_positions"``.
            loss_chunk_size: rows per chunk of the full-softmax cross-entropy.
            lr: Adam learning rate (1e-3).
            weight_decay: Adam weight decay (0).
            adam_betas: Adam's betas ((0.9, 0.98)).
            ranking: ``"sampled"`` or ``"full"`` ranking at evaluation.
        """
        super().__init__(
            hidden_dim=hidden_dim, num_blocks=num_blocks, num_heads=num_heads, dropout=dropout, block_form=block_form,
            contrastive_weight=contrastive_weight, temperature=temperature, loss_normalization=loss_normalization,
            loss_chunk_size=loss_chunk_size, lr=lr, weight_decay=weight_decay, adam_betas=adam_betas,
            ranking=ranking,
        )  # fmt: skip
        self.save_hyperparameters()
        self._positive_of: dict[bytes, int] = {}
        self._positive_inputs: Tensor | None = None

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        super().configure_models(datamodule)
        rows = [batch[:2] for batch in datamodule.train_dataloader()]
        inputs = torch.cat([r[0] for r in rows])
        targets = torch.cat([r[1] for r in rows])
        sequences = torch.cat([inputs, targets[:, -1:]], 1)
        sequences, first = unique_rows(sequences)
        inputs, targets = inputs[first], targets[first]
        generator = torch.Generator().manual_seed(self.hparams.positive_seed)
        positives = same_target_positives(inputs, targets, generator)
        self._positive_inputs = inputs[positives]
        self._positive_of = {row.numpy().tobytes(): i for i, row in enumerate(sequences)}

    def positives(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """The drawn positive's inputs for every training row of a batch."""
        keys = torch.cat([inputs, targets[:, -1:]], 1).cpu()
        try:
            index = [self._positive_of[row.numpy().tobytes()] for row in keys]
        except KeyError:
            raise ValueError("FedDuoRec: a training batch holds a sequence that was not in the training set") from None
        return self._positive_inputs[index].to(inputs.device)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:  # noqa: D102
        inputs, targets = batch[0], batch[1]
        hp = self.hparams
        rows = targets != self.ignore_target
        denominator = self.loss_denominator(targets)
        encoded = self.expert(torch.cat([inputs, self.positives(inputs, targets)]), None)
        z, positive_last = encoded[: len(inputs)], encoded[len(inputs) :, -1]
        (rec,), _ = mixture_cross_entropy(
            [z[rows]], [self.expert.head.weight], [self.expert.head.bias], targets[rows],
            chunk_size=hp.loss_chunk_size, denominator=denominator,
        )  # fmt: skip
        contrast = nt_xent(z[:, -1], positive_last, hp.temperature)
        loss = rec + hp.contrastive_weight * contrast
        self.log_dict({"train/loss": loss, "train/next_item": rec, "train/contrast": contrast}, batch_size=len(inputs))
        return loss
