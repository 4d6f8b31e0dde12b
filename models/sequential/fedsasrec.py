"""FedSASRec: SASRec trained with FedAvg over its sequence encoder (the FedDCSR/FMoE-CDSR baseline).

SASRec: Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. Federated as in FedDCSR
(Zhang et al., SDM 2024): item embeddings and the prediction head stay local, the encoder is averaged.
For one protocol across the zoo, it is trained with the same full-softmax next-item cross-entropy as
FMoE-CDSR's experts.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.models.sequential.averaged_modules import AveragedModulesTask
from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.sequence_encoder import BlockForm, SequenceEncoder


class FedSASRec(AveragedModulesTask):
    """SASRec client: local item embeddings, positions and head around a FedAvg-shared encoder."""

    def __init__(
        self,
        hidden_dim: int = 256,
        num_blocks: int = 2,
        num_heads: int = 4,
        dropout: float = 0.3,
        block_form: BlockForm = "pre_norm",
        loss_chunk_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ranking: Literal["sampled", "full"] = "sampled",
    ) -> None:
        """Create the model (built per client from its datamodule).

        Args:
            hidden_dim: d.
            num_blocks: self-attention blocks.
            num_heads: attention heads.
            dropout: dropout.
            block_form: ``"pre_norm"``: the project's block (the default choice); ``"sasrec"``: FedDCSR's, whose
                attention residual is added to LN(x) and whose padding keys are unmasked (docs/specs/baselines.md).
            loss_chunk_size: rows per chunk of the full-softmax cross-entropy.
            lr: Adam learning rate.
            weight_decay: Adam weight decay.
            ranking: ``"sampled"`` or ``"full"`` ranking at evaluation.
        """
        super().__init__(lr=lr, weight_decay=weight_decay, ranking=ranking)
        self.check_encoder_arguments(hidden_dim, num_blocks, num_heads, dropout)
        self.save_hyperparameters()
        self.expert: Expert | None = None

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        encoder = SequenceEncoder(hp.hidden_dim, hp.num_blocks, hp.num_heads, hp.dropout, block_form=hp.block_form)
        self.expert = Expert(
            datamodule.num_items, encoder, hp.hidden_dim, datamodule.max_seq_len, hp.dropout, gnn_layers=0
        )

    def shared_modules(self) -> dict[str, nn.Module]:
        """The encoder (FedAvg): no item embedding, no head."""
        return {"encoder": self.expert.encoder}

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:  # noqa: D102
        inputs, targets = batch[0], batch[1]  # a fixed-order datamodule adds views, which SASRec does not use
        rows = targets != self.ignore_target
        z = self.expert(inputs, None)
        (loss,), _ = mixture_cross_entropy(
            [z[rows]], [self.expert.head.weight], [self.expert.head.bias], targets[rows],
            chunk_size=self.hparams.loss_chunk_size,
        )  # fmt: skip
        self.log("train/loss", loss, batch_size=len(inputs))
        return loss

    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:  # noqa: D102
        return self.expert.candidate_scores(self.expert(inputs, None, last_only=True), candidates)
