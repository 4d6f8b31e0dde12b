"""FedContrastVAE: ContrastVAE trained with FedAvg over its encoder and decoder (a FedDCSR / FMoE-CDSR baseline).

ContrastVAE: Wang et al., "ContrastVAE: Contrastive Variational AutoEncoder for Sequential Recommendation",
CIKM 2022 (its variational-and-data-augmentation variant). Federated as in FedDCSR (Zhang et al., SDM 2024),
whose code ran the FMoE-CDSR paper's baselines; docs/specs/baselines.md, "FedContrastVAE".
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_fed.errors import check_integer
from lightning_fed.models.layers.mixture_cross_entropy import mixture_cross_entropy
from lightning_fed.models.sequential.augmentations import AUGMENTATIONS, AugmentedViews, augment
from lightning_fed.models.sequential.averaged_modules import AveragedModulesTask
from lightning_fed.models.sequential.contrastive import nt_xent
from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.sequence_encoder import BlockForm, SequenceEncoder, gaussian_kl


def variational_dropout_prior_kl(a: Tensor) -> Tensor:
    """The prior term of ContrastVAE's learnable noise a (Molchanov et al.'s variational-dropout approximation).

    ``-1/2 log a + 1.16145124 a - 1.50204118 a^2 + 0.58629921 a^3``.
    """
    return -0.5 * a.log() + 1.16145124 * a - 1.50204118 * a**2 + 0.58629921 * a**3


class FedContrastVAE(AveragedModulesTask):
    """ContrastVAE client: FedVSAN's encoder (mu, logvar) and decoder, two branches and a contrast.

    - Branch 1 on the sequence s: ``z = mu + exp(logvar / 2)`` (no noise; ``main_reparam="sample"`` adds it).
    - Branch 2 on a view s' (crop, mask or reorder, one per sequence, uniformly): ``z' = mu' + a * exp(logvar' / 2)
      * eps``, with a = sigmoid(theta) a learnable local scalar (theta starts at 0).
    - One decoder with s's padding mask reconstructs s[1:] from both; the KLs use s's mask.
    - Loss: ``L_rec(y) + L_rec(y') + w_KL (KL + KL') + NCE(u, u') + priorKL(a)``, u and u' the sums of z and z'
      over s's real positions; ``w_KL = min(anneal_cap, step / total_annealing_step)``.
    - Evaluation: ``head(decoder(mu + sigma))`` at the last position.

    Positions that are padding in the view but real in s have mu' = logvar' = 0 here (the encoder zeroes its
    padding outputs); the FedDCSR code has its final LayerNorm's bias there.
    """

    def __init__(
        self,
        hidden_dim: int = 256,
        num_blocks: int = 1,
        num_heads: int = 4,
        dropout: float = 0.3,
        block_form: BlockForm = "pre_norm",
        contrastive_weight: float = 1.0,
        temperature: float = 1.0,
        main_reparam: Literal["mu_plus_sigma", "sample"] = "mu_plus_sigma",
        aug_refresh: Literal["step", "once"] = "step",
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
            num_blocks: blocks per stack (1).
            num_heads: attention heads (4).
            dropout: dropout (0.3).
            block_form: ``"pre_norm"``: the project's block (the default choice); ``"sasrec"``: FedDCSR's, whose
                attention residual is added to LN(x) and whose padding keys are unmasked (docs/specs/baselines.md).
            contrastive_weight: weight of NCE(u, u') (1.0).
            temperature: tau of the NCE (1.0).
            main_reparam: branch 1's latent: ``"mu_plus_sigma"`` (the code: mu + sigma, no noise) or
                ``"sample"`` (mu + sigma * eps in training).
            aug_refresh: ``"step"``: new views at every step (the default choice); ``"once"``: each training
                sequence's views drawn once, at build, and reused every epoch (FedDCSR's code).
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
        self.augmented_views: AugmentedViews | None = None
        self.expert: Expert | None = None
        self.decoder: SequenceEncoder | None = None
        self.noise_logit = nn.Parameter(torch.zeros(()))  # theta: a = sigmoid(theta) starts at 0.5
        self.register_buffer("annealing_step", torch.zeros((), dtype=torch.long))

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        self.scenario_value("anneal_cap", datamodule)
        hp = self.hparams
        encoder = SequenceEncoder(
            hp.hidden_dim, hp.num_blocks, hp.num_heads, hp.dropout, hp.block_form, kl_regularizer=True
        )
        self.expert = Expert(
            datamodule.num_items, encoder, hp.hidden_dim, datamodule.max_seq_len, hp.dropout, gnn_layers=0,
            embedding_init="standard_normal", input_norm_eps=1e-12,
        )  # fmt: skip
        self.decoder = SequenceEncoder(hp.hidden_dim, hp.num_blocks, hp.num_heads, hp.dropout, block_form=hp.block_form)
        self.augmented_views = AugmentedViews(self.draw_views, hp.aug_refresh, datamodule)

    def draw_views(self, inputs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One view (B, 1, T) per sequence by one operator among crop, mask and reorder, chosen uniformly."""
        operators = torch.randint(len(AUGMENTATIONS), (len(inputs),), device=inputs.device, generator=generator)
        return augment(inputs, self.pad_id, operators, generator).unsqueeze(1)

    def shared_modules(self) -> dict[str, nn.Module]:
        """The encoder (both stacks) and the decoder (FedAvg): no item embedding, no head, not theta."""
        return {"encoder": self.expert.encoder, "decoder": self.decoder}

    def _gaussian(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        return self.expert.encoder.gaussian(*self.expert.embed(inputs, None))

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:  # noqa: D102
        inputs, targets = batch[0], batch[1]
        hp = self.hparams
        valid = inputs != self.pad_id
        rows = targets != self.ignore_target
        denominator = self.loss_denominator(targets)
        view = self.augmented_views(inputs)[:, 0]
        mu, logvar = self._gaussian(inputs)
        mu_view, logvar_view = self._gaussian(view)
        sigma = (0.5 * logvar).exp()
        z = mu + sigma * (torch.randn_like(mu) if hp.main_reparam == "sample" else 1.0)
        a = torch.sigmoid(self.noise_logit)
        z_view = mu_view + a * (0.5 * logvar_view).exp() * torch.randn_like(mu_view)
        mask = valid.unsqueeze(-1)
        z, z_view = z * mask, z_view * mask  # s's mask for both branches
        decoded = self.decoder(torch.cat([z, z_view]), torch.cat([valid, valid]))
        head = self.expert.head
        losses, _ = mixture_cross_entropy(
            [decoded[: len(inputs)][rows], decoded[len(inputs) :][rows]], [head.weight, head.weight],
            [head.bias, head.bias], targets[rows], chunk_size=hp.loss_chunk_size, denominator=denominator,
        )  # fmt: skip
        rec = losses.sum()
        kl = (gaussian_kl(mu.float(), logvar.float()) * valid).sum() / denominator
        kl_view = (gaussian_kl(mu_view.float(), logvar_view.float()) * valid).sum() / denominator
        kl_weight = min(hp.anneal_cap, float(self.annealing_step) / hp.total_annealing_step)
        contrast = nt_xent(z.sum(1), z_view.sum(1), hp.temperature)
        prior = variational_dropout_prior_kl(a)
        loss = rec + kl_weight * (kl + kl_view) + hp.contrastive_weight * contrast + prior
        self.annealing_step += 1
        self.log_dict(
            {"train/loss": loss, "train/next_item": rec, "train/kl": kl + kl_view, "train/contrast": contrast},
            batch_size=len(inputs),
        )
        return loss

    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:  # noqa: D102
        mu, logvar = self._gaussian(inputs)
        valid = inputs != self.pad_id
        decoded = self.decoder((mu + (0.5 * logvar).exp()) * valid.unsqueeze(-1), valid)
        return self.expert.candidate_scores(decoded[:, -1], candidates)
