"""FedVSAN: VSAN trained with FedAvg over its encoder and decoder (a FedDCSR / FMoE-CDSR baseline).

VSAN: Zhao et al., "Variational Self-attention Network for Sequential Recommendation", ICDE 2021. Federated as
in FedDCSR (Zhang et al., SDM 2024), whose code ran the FMoE-CDSR paper's baselines; docs/specs/baselines.md,
"FedVSAN" (one block per stack "for fairness").
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_fed.errors import check_integer
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.models.sequential.averaged_modules import AveragedModulesTask
from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.sequence_encoder import BlockForm, SequenceEncoder


class FedVSAN(AveragedModulesTask):
    """VSAN client: a variational SA encoder (mu and logvar stacks) and an SA decoder on z, both averaged.

    ``z = mu + exp(logvar / 2) * eps`` in training, ``mu`` at evaluation; logits ``head(decoder(z))`` at every
    position. Loss: ``L_rec + w_KL * KL`` with ``w_KL = min(anneal_cap, step / total_annealing_step)``, step
    this client's optimizer steps (never reset); both terms are masked sums divided alike
    (``loss_normalization``). Item and position embeddings, the input LayerNorm and the head stay local.
    """

    def __init__(
        self,
        hidden_dim: int = 256,
        num_blocks: int = 1,
        num_heads: int = 4,
        dropout: float = 0.3,
        block_form: BlockForm = "pre_norm",
        anneal_cap: float | None = None,
        total_annealing_step: int = 10000,
        loss_normalization: Literal["all_positions", "valid_positions"] = "all_positions",
        loss_chunk_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        adam_betas: tuple[float, float] = (0.9, 0.98),
        ranking: Literal["sampled", "full"] = "sampled",
    ) -> None:
        """Create the model (built per client from its datamodule); defaults are FedDCSR's for FKCB.

        Args:
            hidden_dim: d (256).
            num_blocks: blocks per stack (1 in FedDCSR, "for fairness").
            num_heads: attention heads (4).
            dropout: dropout (0.3).
            block_form: ``"pre_norm"``: the project's block (the default choice); ``"sasrec"``: FedDCSR's, whose
                attention residual is added to LN(x) and whose padding keys are unmasked (docs/specs/baselines.md).
            anneal_cap: maximum KL weight; None takes the data's ``model_defaults`` (1.0 for FKCB, 0.01 for
                MBG and SGH).
            total_annealing_step: steps over which the KL weight grows to ``anneal_cap`` (10000).
            loss_normalization: ``"all_positions"`` (B * T, the code) or ``"valid_positions"``.
            loss_chunk_size: rows per chunk of the full-softmax cross-entropy.
            lr: Adam learning rate (1e-3).
            weight_decay: Adam weight decay (0).
            adam_betas: Adam's betas ((0.9, 0.98)).
            ranking: ``"sampled"`` or ``"full"`` ranking at evaluation.
        """
        super().__init__(lr=lr, weight_decay=weight_decay, ranking=ranking, adam_betas=adam_betas)
        self.check_encoder_arguments(hidden_dim, num_blocks, num_heads, dropout)
        check_integer("model.init_args.loss_chunk_size", loss_chunk_size)
        check_integer("model.init_args.total_annealing_step", total_annealing_step)
        self.save_hyperparameters()
        self.expert: Expert | None = None
        self.decoder: SequenceEncoder | None = None
        self.register_buffer("annealing_step", torch.zeros((), dtype=torch.long))

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        self.scenario_value("anneal_cap", datamodule)
        hp = self.hparams
        encoder = SequenceEncoder(
            hp.hidden_dim,
            hp.num_blocks,
            hp.num_heads,
            hp.dropout,
            hp.block_form,
            kl_regularizer=True,
            sample_latent=True,
        )
        self.expert = Expert(
            datamodule.num_items, encoder, hp.hidden_dim, datamodule.max_seq_len, hp.dropout, gnn_layers=0,
            embedding_init="standard_normal", input_norm_eps=1e-12,
        )  # fmt: skip
        self.decoder = SequenceEncoder(hp.hidden_dim, hp.num_blocks, hp.num_heads, hp.dropout, block_form=hp.block_form)

    def shared_modules(self) -> dict[str, nn.Module]:
        """The encoder (both stacks) and the decoder (FedAvg): no item embedding, no head."""
        return {"encoder": self.expert.encoder, "decoder": self.decoder}

    def decode(self, inputs: Tensor) -> Tensor:
        """Decoder outputs (B, T, d) from the (sampled in training) latent z of the encoder."""
        return self.decoder(self.expert(inputs, None), inputs != self.pad_id)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:  # noqa: D102
        inputs, targets = batch[0], batch[1]
        hp = self.hparams
        rows = targets != self.ignore_target
        denominator = self.loss_denominator(targets)
        h = self.decode(inputs)
        (rec,), _ = mixture_cross_entropy(
            [h[rows]], [self.expert.head.weight], [self.expert.head.bias], targets[rows],
            chunk_size=hp.loss_chunk_size, denominator=denominator,
        )  # fmt: skip
        kl = self.expert.encoder.last_kl.sum() / denominator
        kl_weight = min(hp.anneal_cap, float(self.annealing_step) / hp.total_annealing_step)
        loss = rec + kl_weight * kl
        self.annealing_step += 1
        self.log_dict({"train/loss": loss, "train/next_item": rec, "train/kl": kl}, batch_size=len(inputs))
        return loss

    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:  # noqa: D102
        return self.expert.candidate_scores(self.decode(inputs)[:, -1], candidates)
