"""FedDCSR: disentangled shared and exclusive sequence representations, federated (a FMoE-CDSR baseline).

Zhang et al., "FedDCSR: Federated Cross-domain Sequential Recommendation via Disentangled Representation
Learning", SDM 2024 (its code ran the FMoE-CDSR paper's baselines); written out in docs/specs/baselines.md,
"FedDCSR" (the code's DisenVGSAN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_fed.errors import ConfigurationError, check_integer
from lightning_fed.models.layers.item_head import ItemHead
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.models.sequential.augmentations import AugmentedViews
from lightning_fed.models.sequential.averaged_modules import AveragedModulesTask
from lightning_fed.models.sequential.contrastive import nt_xent, shuffle_items
from lightning_fed.models.sequential.expert import Expert, head_candidate_scores
from lightning_fed.models.sequential.pair_discriminator import PairDiscriminator, similarity_hinge_loss
from lightning_fed.models.sequential.sequence_encoder import BlockForm, SequenceEncoder
from lightning_fed.strategies.base import GLOBAL

#: The key of the shared representation in the upload and in the server's average.
GLOBAL_REPRESENTATION = "z_g"


class FedDCSR(AveragedModulesTask):
    """FedDCSR client: a shared and an exclusive variational branch, one head, a discriminator.

    Each branch has its own local item table, positions, input LayerNorm and one-layer item graph
    (``G = (E + A_hat drop(E) + b) / 2``, input ``(G + E)[s_t] sqrt(d) + P[t]``) and a variational SA(2) encoder
    (mu and logvar stacks; ``z = mu + sigma * eps`` in training, mu at evaluation). With y = head(z_s + z_e) and
    y_e = head(z_e) at every position, the loss is::

        L_rec(y) + w_KL (KL_s + KL_e) + beta L_sim + L_rec(y_e) + lambda NCE(z_e,T, z_e,T^aug)

    where ``w_KL = min(anneal_cap, step / total_annealing_step)`` (this client's optimizer steps, never reset),
    z_e^aug encodes the sequence with its items shuffled, and
    ``L_sim = mean_i relu(margin - sigmoid(D(z_s, z_g)) + sigmoid(D(z~_e, z_g)))`` with z~_e the exclusive
    branch's encoding of a copy of the sequence (:func:`similarity_hinge_loss`; 0 until a z_g has arrived).
    Scores: head(mu_s + mu_e) at the last position.

    **What FedDCSR shares.** The shared branch's encoder (both stacks) is averaged by FedAvg, and so is a
    representation computed from data: after each round the client uploads ``z_g``, the shared branch's output
    z_s on its last training batch (B x T x d, padding zeroed, detached); the server's weighted average becomes
    every client's z_g for the next round. Its rows line up by batch row, not by user. This is a property of
    FedDCSR: FMoE-CDSR shares parameters only. Everything else (both item tables, positions, norms, graphs' biases,
    the exclusive encoder, the head, the discriminator) stays local.

    With ``training_order: reshuffle`` the last batch of an epoch may be short; the uploaded batch is then the
    last full one (B rows; a client with fewer than B training sequences uploads its batch padded with zero
    rows). FedDCSR's unused decoder is not built.
    """

    def __init__(
        self,
        hidden_dim: int = 256,
        num_blocks: int = 2,
        num_heads: int = 4,
        dropout: float = 0.3,
        block_form: BlockForm = "pre_norm",
        anneal_cap: float | None = None,
        total_annealing_step: int = 10000,
        similarity_weight: float | None = None,
        exclusive_contrastive_weight: float | None = None,
        margin: float = 0.3,
        temperature: float = 1.0,
        global_mask: Literal["per_batch", "accumulated"] = "per_batch",
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
            num_blocks: blocks per stack (2).
            num_heads: attention heads (4).
            dropout: dropout of the inputs, the blocks and the graph's propagated copy (0.3).
            block_form: ``"pre_norm"``: the project's block (the default choice); ``"sasrec"``: FedDCSR's, whose
                attention residual is added to LN(x) and whose padding keys are unmasked (docs/specs/baselines.md).
            anneal_cap: maximum KL weight; None takes the data's ``model_defaults`` (1.0 FKCB, 0.01 MBG, SGH).
            total_annealing_step: steps over which the KL weight grows to ``anneal_cap`` (10000).
            similarity_weight: beta of L_sim; None takes the data's ``model_defaults`` (2.0 FKCB, 0.5 MBG, SGH).
            exclusive_contrastive_weight: lambda of the exclusive contrast; None takes the data's
                ``model_defaults`` (1.0 FKCB, MBG, 0.1 SGH).
            margin: the hinge margin of L_sim (0.3).
            temperature: tau of the NCE (1.0).
            global_mask: ``"per_batch"``: z_g is masked with each batch's padding mask on a copy (the default
                choice); ``"accumulated"``: as the code, in place, so the received z_g collects every batch's
                mask over the round.
            aug_refresh: ``"step"``: a new shuffled view at every step (the default choice); ``"once"``: each
                training sequence's view drawn once, at build (FedDCSR's code). With ``data.training_order:
                fixed`` the datamodule's views (drawn once) are used either way.
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
        if not margin >= 0:
            raise ConfigurationError(f"model.init_args.margin must be >= 0, got {margin}")
        self.save_hyperparameters()
        self.shared: Expert | None = None
        self.exclusive: Expert | None = None
        self.head: ItemHead | None = None
        self.discriminator: PairDiscriminator | None = None
        self.batch_rows: int | None = None
        self._last_shared_batch: Tensor | None = None
        self.augmented_views: AugmentedViews | None = None
        self.register_buffer("annealing_step", torch.zeros((), dtype=torch.long))

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        for name in ("anneal_cap", "similarity_weight", "exclusive_contrastive_weight"):
            self.scenario_value(name, datamodule)
        hp = self.hparams

        def branch() -> Expert:
            encoder = SequenceEncoder(
                hp.hidden_dim,
                hp.num_blocks,
                hp.num_heads,
                hp.dropout,
                hp.block_form,
                kl_regularizer=True,
                sample_latent=True,
            )
            return Expert(
                datamodule.num_items, encoder, hp.hidden_dim, datamodule.max_seq_len, hp.dropout, gnn_layers=1,
                embedding_init="standard_normal", graph_form="dropout_bias", input_norm_eps=1e-12, with_head=False,
            )  # fmt: skip

        self.shared, self.exclusive = branch(), branch()
        self.head = ItemHead(hp.hidden_dim, datamodule.num_items + 1)
        self.discriminator = PairDiscriminator(datamodule.max_seq_len, hp.hidden_dim)
        self.batch_rows = datamodule.batch_size
        self.register_buffer("item_graph", datamodule.item_graph, persistent=False)
        shape = (datamodule.batch_size, datamodule.max_seq_len, hp.hidden_dim)
        self.register_buffer("global_representation", torch.zeros(shape))
        self.register_buffer("has_global_representation", torch.zeros((), dtype=torch.bool))
        self.augmented_views = AugmentedViews(self.draw_views, hp.aug_refresh, datamodule)

    def draw_views(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One view (B, 1, T) per sequence: its real items shuffled."""
        return shuffle_items(inputs, self.pad_id, generator).unsqueeze(1)

    def shared_modules(self) -> dict[str, nn.Module]:
        """The shared branch's encoder, both stacks (FedAvg); z_g is added by :meth:`shared_state`."""
        return {"encoder_s": self.shared.encoder}

    def shared_state(self) -> dict[str, Tensor]:
        """The shared encoder's weights and, once a batch has been trained, ``z_g``: z_s of the last batch."""
        state = super().shared_state()
        if self._last_shared_batch is not None:
            state[GLOBAL_REPRESENTATION] = self._last_shared_batch.cpu().clone()
        return state

    def load_shared_state(self, payload: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Load the averaged shared encoder and, when the average has one, the federation's z_g."""
        received = payload.get(GLOBAL, {}).get(GLOBAL_REPRESENTATION)
        if received is not None and received.shape != self.global_representation.shape:
            raise ValueError(
                f"FedDCSR: the received z_g has shape {tuple(received.shape)}, expected "
                f"{tuple(self.global_representation.shape)} (batch_size x max_seq_len x hidden_dim must be the same "
                "at every client)"
            )
        super().load_shared_state(payload)
        if received is not None:
            self.global_representation.copy_(received)
            self.has_global_representation.fill_(True)

    def _remember_shared_batch(self, z_s: Tensor) -> None:
        """Keep z_s of the latest full batch (B rows) for the upload; a short batch only if no full one exists."""
        z = z_s.detach().float()
        if len(z) == self.batch_rows:
            self._last_shared_batch = z
        elif self._last_shared_batch is None:
            self._last_shared_batch = torch.cat([z, z.new_zeros(self.batch_rows - len(z), *z.shape[1:])])

    def _global_for(self, valid: Tensor) -> Tensor:
        """z_g's first B rows, masked with the batch's padding mask (on a copy, or in place: ``global_mask``)."""
        rows = self.global_representation[: len(valid)]
        mask = valid.unsqueeze(-1).to(rows.dtype)
        if self.hparams.global_mask == "accumulated":
            rows.mul_(mask)
            return rows.clone()
        return rows * mask

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:  # noqa: D102
        inputs, targets = batch[0], batch[1]
        hp = self.hparams
        b = len(inputs)
        valid = inputs != self.pad_id
        if len(batch) > 2:
            views = batch[2]
        else:
            views = self.augmented_views(inputs)[:, 0]
        rows = targets != self.ignore_target
        denominator = self.loss_denominator(targets)

        z_s = self.shared(inputs, self.item_graph)
        kl_s = self.shared.encoder.last_kl.sum()
        # the sequences, an exact copy of them (z~_e, for L_sim) and their shuffled view, in one pass
        z_e, z_e_copy, z_e_view = self.exclusive(torch.cat([inputs, inputs, views]), self.item_graph).split(b)
        kl_e = self.exclusive.encoder.last_kl[:b].sum()

        (rec, rec_exclusive), _ = mixture_cross_entropy(
            [(z_s + z_e)[rows], z_e[rows]], [self.head.weight] * 2, [self.head.bias] * 2, targets[rows],
            chunk_size=hp.loss_chunk_size, denominator=denominator,
        )  # fmt: skip
        kl = (kl_s + kl_e) / denominator
        kl_weight = min(hp.anneal_cap, float(self.annealing_step) / hp.total_annealing_step)
        if bool(self.has_global_representation):
            similarity = similarity_hinge_loss(
                self.discriminator, z_s, z_e_copy, self._global_for(valid), valid, hp.margin
            )
        else:
            similarity = z_s.new_zeros((), dtype=torch.float32)
        contrast = nt_xent(z_e[:, -1], z_e_view[:, -1], hp.temperature)
        loss = (
            rec
            + kl_weight * kl
            + hp.similarity_weight * similarity
            + rec_exclusive
            + hp.exclusive_contrastive_weight * contrast
        )
        self._remember_shared_batch(z_s)
        self.annealing_step += 1
        self.log_dict(
            {
                "train/loss": loss,
                "train/next_item": rec,
                "train/next_item_exclusive": rec_exclusive,
                "train/kl": kl,
                "train/similarity": similarity,
                "train/contrast": contrast,
            },
            batch_size=b,
        )
        return loss

    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:  # noqa: D102
        z = self.shared(inputs, self.item_graph) + self.exclusive(inputs, self.item_graph)
        return head_candidate_scores(self.head, self.pad_id, z[:, -1], candidates)
