"""FMoE-CDSR: federated mixture of experts for non-overlapped cross-domain sequential recommendation.

Liu et al., "Federated Mixture-of-Expert for Non-Overlapped Cross-Domain Sequential Recommendation",
arXiv:2503.13254 (2025). The method as implemented is written out in docs/specs/fmoe-cdsr.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lightning_fed.errors import ConfigurationError, check_integer
from lightning_fed.models.layers.mixture_cross_entropy import (
    kept_logit_buffers,
    mixture_cross_entropy,
    mixture_loss_from_logits,
)
from lightning_fed.models.layers.precision import full_precision
from lightning_fed.models.sequential.contrastive import nt_xent, shuffle_items
from lightning_fed.models.sequential.expert import Expert
from lightning_fed.models.sequential.gate_router import GateRouter
from lightning_fed.models.sequential.sequence_encoder import SequenceEncoder
from lightning_fed.models.sequential.task import SequentialRecommendationTask


class FMoECDSRNet(nn.Module):
    """The K experts of one client (local one at ``local_index``) and the gate router.

    Args:
        num_items: N of the client's domain.
        num_experts: K.
        local_index: position of the local expert.
        freeze_global_experts: keep downloaded encoders frozen (paper); False is the "w/o Freeze" variant.
        gate: ``"learned"`` router (Eqs. 7-8) or ``"uniform"`` weights 1/K ("w/o Gate Router").
    """

    def __init__(
        self,
        num_items: int,
        num_experts: int,
        local_index: int,
        hidden_dim: int,
        num_blocks: int,
        num_heads: int,
        max_seq_len: int,
        dropout: float,
        gnn_layers: int,
        freeze_global_experts: bool,
        gate: Literal["learned", "uniform"],
        gate_pooling: Literal["sample", "batch"],
        kl_regularizer: bool = False,
        block_form: Literal["pre_norm", "sasrec"] = "pre_norm",
        embedding_init: Literal["scaled", "standard_normal"] = "scaled",
        graph_form: Literal["mean", "dropout_bias"] = "mean",
        input_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.local_index = local_index
        self.experts = nn.ModuleList(
            Expert(
                num_items,
                SequenceEncoder(hidden_dim, num_blocks, num_heads, dropout, block_form, kl_regularizer),
                hidden_dim,
                max_seq_len,
                dropout,
                gnn_layers,
                embedding_init,
                graph_form,
                input_norm_eps,
            )
            for _ in range(num_experts)
        )
        if freeze_global_experts:
            for j, expert in enumerate(self.experts):
                if j != local_index:
                    expert.encoder.requires_grad_(False)
        self.gate = (
            GateRouter(hidden_dim, num_experts, dropout, gate_pooling)
            if gate == "learned" and num_experts > 1
            else None
        )

    @property
    def local_expert(self) -> Expert:
        """The expert whose encoder this client trains and uploads."""
        return self.experts[self.local_index]

    def gate_weights(self, outputs: list[Tensor], rows: Tensor | None = None, padding: Tensor | None = None) -> Tensor:
        """Gate weights (..., K): learned router, or 1/K without it.

        Args:
            outputs: the K experts' outputs (B, T, d) or (B, d).
            rows: optional boolean (B, T) mask selecting the positions to route (sample pooling only).
            padding: optional boolean (B, T) mask of the padding positions of (B, T, d) outputs. The batch-pooled
                gate counts them as what each encoder outputs there in the reference code
                (:meth:`SequenceEncoder.padding_output`: the final LayerNorm's bias in the ``"sasrec"`` form), not
                as the zeros of ``outputs``.
        """
        k = len(outputs)
        if self.gate is None:
            shape = outputs[0].shape[:-1] if rows is None else (int(rows.sum()),)
            return torch.full((*shape, k), 1.0 / k, device=outputs[0].device)
        if rows is not None and self.gate.pooling == "sample":
            return self.gate([z[rows] for z in outputs])
        if padding is not None and self.gate.pooling == "batch":
            fills = [expert.encoder.padding_output() for expert in self.experts]
            outputs = [
                z if fill is None else torch.where(padding.unsqueeze(-1), fill.detach().to(z.dtype), z)
                for z, fill in zip(outputs, fills, strict=True)
            ]
        weights = self.gate(outputs)
        return weights if rows is None else weights[rows]


class FMoECDSR(SequentialRecommendationTask):
    """FMoE-CDSR client model (Liu et al., arXiv:2503.13254, 2025).

    Each client holds one expert per domain of the scenario: its own (local) expert, trained and uploaded, and
    the other domains' downloaded encoders, frozen and adapted through local isolation parameters (Eq. 6). A
    gate router fuses the experts' detached scores (Eqs. 7-9). Loss at the client:
    ``sum_j (L_next^j + beta * L_cl^j) + L_fuse`` (Eqs. 3, 4, 6, 9).

    The paper's variants are configurations: Local Expert is ``experts="local"`` (with the LocalOnly strategy),
    w/o Gate Router is ``gate="uniform"``, w/o Freeze is ``freeze_global_experts=False``.

    The authors' code differs from the paper in ten places (docs/specs/fmoe-cdsr.md, "The reference code, point by
    point"); each is a flag whose default is the paper's method, and ``configs/variants/reference.yaml`` sets them
    all: ``kl_regularizer`` (1), ``embedding_init`` and ``input_norm_eps`` (2), ``block_form`` (3, with its
    LayerNorms' eps), ``loss_normalization`` (4), ``graph_form`` (5), ``adam_betas`` (6), ``gate_pooling`` (7);
    points 8-9 are the datamodule's ``training_order`` and ``candidate_draws``, point 10 the Trainer's precision.
    """

    reconfigurable_arguments = ("ranking", "eval_experts")

    def __init__(
        self,
        hidden_dim: int = 256,
        num_blocks: int = 2,
        num_heads: int = 4,
        dropout: float = 0.3,
        gnn_layers: int = 1,
        contrastive_weight: float = 1.0,
        temperature: float = 1.0,
        experts: Literal["all", "local"] = "all",
        freeze_global_experts: bool = True,
        gate: Literal["learned", "uniform"] = "learned",
        gate_pooling: Literal["sample", "batch"] = "sample",
        kl_regularizer: bool = False,
        anneal_cap: float = 1.0,
        total_annealing_step: int = 10000,
        block_form: Literal["pre_norm", "sasrec"] = "pre_norm",
        embedding_init: Literal["scaled", "standard_normal"] = "scaled",
        graph_form: Literal["mean", "dropout_bias"] = "mean",
        input_norm_eps: float = 1e-5,
        loss_normalization: Literal["valid_positions", "all_positions"] = "valid_positions",
        loss_chunk_size: int = 512,
        expert_chunk_size: int = 2048,
        backward: Literal["per_expert", "joint"] = "per_expert",
        fusion_logits: Literal["keep", "recompute"] = "keep",
        eval_experts: list[str] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        ranking: Literal["sampled", "full"] = "sampled",
    ) -> None:
        """Create the model (networks are built per client from its datamodule).

        Args:
            hidden_dim: d (256 in the paper).
            num_blocks: self-attention blocks per encoder (2).
            num_heads: attention heads (4).
            dropout: dropout everywhere (0.3).
            gnn_layers: L of the item graph (1).
            contrastive_weight: beta of the augmentation contrast (1); 0 disables it.
            temperature: tau of NT-Xent (1).
            experts: ``"all"``: one expert per scenario domain; ``"local"``: the Local Expert variant (K = 1).
            freeze_global_experts: freeze downloaded encoders (paper); False is "w/o Freeze".
            gate: ``"learned"`` router or ``"uniform"`` fusion ("w/o Gate Router").
            gate_pooling: ``"sample"`` (paper) or ``"batch"``: one gate input per batch, the mean over the batch and
                all positions (reference code, point 7).
            kl_regularizer: the reference code's KL regulariser (point 1): a second (logvar) attention stack,
                z = mu, and ``w_KL * KL`` added to each expert's loss with
                ``w_KL = min(anneal_cap, step / total_annealing_step)``, step = this client's optimizer steps
                (never reset). The KL is summed over the non-padding positions of the original sequences and
                divided like the cross-entropies (``loss_normalization``). Off: the paper does not describe it.
            anneal_cap: maximum KL weight (1.0 for FKCB, 0.01 for MBG and SGH in the reference code).
            total_annealing_step: steps over which the KL weight grows linearly to ``anneal_cap`` (10000).
            block_form: ``"pre_norm"`` (GPT-style blocks, as written) or ``"sasrec"`` (reference code, point 3).
            embedding_init: ``"scaled"`` N(0, 1/d) item embeddings, or ``"standard_normal"`` N(0, 1) (reference
                code, point 2).
            graph_form: ``"mean"`` (Eq. 1, LightGCN-style mean) or ``"dropout_bias"``:
                G = (E + A_hat drop(E) + b) / 2 (reference code, point 5).
            input_norm_eps: eps of the LayerNorm over an expert's input (Eq. 2): PyTorch's default 1e-5, or the
                reference code's 1e-12. (The ``"sasrec"`` block form brings that code's 1e-8 in the encoder.)
            loss_normalization: ``"valid_positions"``: each cross-entropy (and KL) is a mean over the positions
                that have a target; ``"all_positions"``: a masked sum divided by B * T, padding counted (reference
                code, point 4; the contrast, a mean over the batch, then weighs about twice as much).
            loss_chunk_size: rows per chunk of the full-softmax cross-entropies that mix the experts' logits: L_fuse,
                and every loss of ``backward="joint"`` (memory knob, same math).
            expert_chunk_size: rows per chunk of each expert's own full-softmax cross-entropy with
                ``backward="per_expert"`` (memory knob, same math up to rounding). Its gradient ``softmax - one-hot``
                (chunk x C in the matmul dtype) is alive for one expert at a time. With 2048 rows the head gradient of
                a batch is one product (two for FKCB's larger batches of 256, which hold up to 2,432 rows) instead of
                a sum over 512-row chunks: faster under bf16 autocast. In fp32 it is not, and its buffers are fp32:
                ``configs/variants/reference.yaml`` sets 512.
            backward: ``"per_expert"`` backpropagates one expert at a time (only one expert's activations alive:
                least memory); ``"joint"`` computes all experts' losses and the fusion loss in one pass over
                the logits (faster, about 4x the activation memory). Same gradients either way.
            fusion_logits: with ``backward="per_expert"``, where the fusion loss L_fuse gets the experts' logits:
                ``"keep"``: each expert's loss leaves its logits (M x C in the matmul dtype) in a reused buffer and
                L_fuse and its gate gradient are one pass over them each way; ``"recompute"``: L_fuse computes
                them again, as two matmuls over K d columns, and K M C values less memory. The same loss and
                gradients up to rounding (bf16 logits summed in bf16 for ``"keep"``).
            eval_experts: the domains whose experts are fused at evaluation (None: all). The paper's RQ4
                (remove a domain): test a saved federation with one domain left out, or with only one expert;
                the gate weights of the kept experts are renormalized to sum to 1.
            lr: Adam learning rate (1e-3).
            weight_decay: Adam weight decay.
            adam_betas: Adam's (beta1, beta2): PyTorch's (0.9, 0.999), or the reference code's (0.9, 0.98) (point 6).
            ranking: ``"sampled"`` (papers) or ``"full"`` ranking at evaluation.
        """
        super().__init__(lr=lr, weight_decay=weight_decay, ranking=ranking, adam_betas=adam_betas)
        self.check_encoder_arguments(hidden_dim, num_blocks, num_heads, dropout)
        check_integer("model.init_args.loss_chunk_size", loss_chunk_size)
        check_integer("model.init_args.expert_chunk_size", expert_chunk_size)
        if not input_norm_eps > 0:
            raise ConfigurationError(f"model.init_args.input_norm_eps must be positive, got {input_norm_eps!r}")
        self.save_hyperparameters()
        self.net: FMoECDSRNet | None = None
        self.expert_domains: list[str] = []
        self.register_buffer("annealing_step", torch.zeros((), dtype=torch.long))
        # One backward per expert (see backward_step): Lightning's manual optimization. Trainer options of
        # automatic optimization (gradient clipping, accumulation) do not apply.
        self.automatic_optimization = False

    def configure_models(self, datamodule: Any) -> None:  # noqa: D102
        hp = self.hparams
        domains = list(datamodule.scenario_domains) if hp.experts == "all" else [datamodule.domain]
        if datamodule.domain not in domains:
            raise ValueError(f"domain {datamodule.domain!r} is not among the scenario's domains {domains}")
        self.expert_domains = domains
        unknown = set(hp.eval_experts or []) - set(domains)
        if unknown or hp.eval_experts == []:
            raise ConfigurationError(
                f"model.init_args.eval_experts: {sorted(unknown) or 'an empty list'} is not a non-empty subset of this "
                f"client's experts {domains}"
            )
        self.net = FMoECDSRNet(
            num_items=datamodule.num_items,
            num_experts=len(domains),
            local_index=domains.index(datamodule.domain),
            hidden_dim=hp.hidden_dim,
            num_blocks=hp.num_blocks,
            num_heads=hp.num_heads,
            max_seq_len=datamodule.max_seq_len,
            dropout=hp.dropout,
            gnn_layers=hp.gnn_layers,
            freeze_global_experts=hp.freeze_global_experts,
            gate=hp.gate,
            gate_pooling=hp.gate_pooling,
            kl_regularizer=hp.kl_regularizer,
            block_form=hp.block_form,
            embedding_init=hp.embedding_init,
            graph_form=hp.graph_form,
            input_norm_eps=hp.input_norm_eps,
        )
        self.register_buffer("item_graph", datamodule.item_graph, persistent=False)

    # Federation ---------------------------------------------------------------------------------------------
    @property
    def receives(self) -> frozenset[str]:
        """The other domains' encoders keyed by domain (ExpertExchange); nothing for the Local Expert variant."""
        return frozenset({"nothing"} if self.hparams.experts == "local" else {"peer_states"})

    def shared_state(self) -> dict[str, Tensor]:
        """The local expert's encoder weights: no embedding, no head, no gate, no data."""
        return {f"encoder.{k}": v.detach().cpu().clone() for k, v in self.net.local_expert.encoder.state_dict().items()}

    def load_shared_state(self, payload: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Overwrite the global experts' encoders with the other domains' uploads (paper Eq. 5)."""
        for origin, state in payload.items():
            if origin == self.domain:
                continue
            if origin not in self.expert_domains:
                if self.hparams.experts == "local":
                    continue  # the Local Expert variant holds no global experts
                raise ValueError(
                    f"{self.domain}: received encoder {origin!r}, which is not a domain of this scenario "
                    f"{self.expert_domains}; FMoE-CDSR exchanges per-domain encoders (strategy ExpertExchange)"
                )
            encoder_state = {k.removeprefix("encoder."): v for k, v in state.items()}
            self.net.experts[self.expert_domains.index(origin)].encoder.load_state_dict(encoder_state)

    # Training -----------------------------------------------------------------------------------------------
    def _encode(self, expert: Expert, inputs: Tensor, augmented: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Encoder outputs z of the sequences (and of their views, in the same pass) for one expert."""
        if augmented is None:
            return expert(inputs, self.item_graph), None
        # the views' z_T only (nt_xent reads nothing else): their other positions stop before the last block
        both = expert(torch.cat([inputs, augmented]), self.item_graph, full_rows=len(inputs))
        return both[: len(inputs)], both[len(inputs) :]

    def _encode_all(self, inputs: Tensor, last_only: bool = False) -> list[Tensor]:
        """Every expert's outputs (B, T, d), or (B, d) at the last position only (scoring: no KL term)."""
        if last_only:
            return [expert(inputs, self.item_graph, last_only=True) for expert in self.net.experts]
        return [expert(inputs, self.item_graph, kl=False) for expert in self.net.experts]

    def _gate_padding(self, inputs: Tensor) -> Tensor | None:
        """The padding mask the batch-pooled gate fills (:meth:`FMoECDSRNet.gate_weights`); None for any other gate."""
        gate = self.net.gate
        return inputs == self.pad_id if gate is not None and gate.pooling == "batch" else None

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:  # noqa: D102
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = self.backward_step(batch, self.manual_backward)
        optimizer.step()
        return loss

    def backward_step(self, batch: tuple[Tensor, ...], backward: Callable[[Tensor], None] = Tensor.backward) -> Tensor:
        """Compute the client loss and its gradients, one expert at a time; return the (detached) loss.

        The experts' gradients are independent (gradient isolation, Eq. 6) and the gate sees only detached
        expert outputs (Eqs. 7-9), so expert j's forward and backward run before expert j+1's forward: only one
        expert's activations are alive at a time. The gradients equal those of one backward pass through
        ``sum_j (L_next^j + beta * L_cl^j + w_KL * KL_j) + L_fuse``.

        Args:
            batch: ``(inputs, targets)``, or ``(inputs, targets, views)`` when the datamodule draws the
                contrastive views once (``training_order="fixed"``); otherwise the views are drawn here.
            backward: how to backpropagate a loss (``self.manual_backward`` inside a Trainer).
        """
        inputs, targets = batch[0], batch[1]
        hp = self.hparams
        rows = targets != self.ignore_target
        row_targets = targets[rows]
        augmented = None
        if hp.contrastive_weight > 0:
            augmented = batch[2] if len(batch) > 2 else shuffle_items(inputs, self.pad_id)
        # reference code (point 4): masked sums over B * T positions, padding counted; else means over the rows
        denominator = self.loss_denominator(targets)
        kl_weight = min(hp.anneal_cap, float(self.annealing_step) / max(1, hp.total_annealing_step))
        if hp.backward == "joint":
            return self._joint_backward_step(inputs, rows, row_targets, augmented, denominator, kl_weight, backward)
        totals = {"next_item": 0.0, "contrast": 0.0, "kl": 0.0}
        outputs = []
        kept = None
        if self.net.gate is not None and hp.fusion_logits == "keep":
            head = self.net.experts[0].head.weight
            kept = kept_logit_buffers(len(self.net.experts), len(row_targets), head.size(0), hp.expert_chunk_size, head)
        for j, expert in enumerate(self.net.experts):
            z, view = self._encode(expert, inputs, augmented)
            (next_item,), _ = mixture_cross_entropy(
                [z[rows]], [expert.head.weight], [expert.head.bias], row_targets, chunk_size=hp.expert_chunk_size,
                denominator=denominator, keep_logits=None if kept is None else [kept[j]],
            )  # fmt: skip
            loss = next_item
            totals["next_item"] += next_item.detach()
            if view is not None:
                contrast = nt_xent(z[:, -1], view[:, -1], hp.temperature)
                loss = loss + hp.contrastive_weight * contrast
                totals["contrast"] += contrast.detach()
            if hp.kl_regularizer:
                kl = expert.encoder.last_kl[: len(inputs)].sum() / denominator  # the original sequences' KL
                loss = loss + kl_weight * kl
                totals["kl"] += kl.detach()
            backward(loss)
            outputs.append(z.detach())
        total = totals["next_item"] + hp.contrastive_weight * totals["contrast"] + kl_weight * totals["kl"]
        logs = {f"train/{k}": v for k, v in totals.items() if isinstance(v, Tensor)}
        if self.net.gate is not None:
            gate = self.net.gate_weights(outputs, rows, padding=self._gate_padding(inputs))
            if kept is not None:
                fusion = mixture_loss_from_logits(kept, gate, row_targets, hp.loss_chunk_size, denominator)
            else:
                heads = [expert.head for expert in self.net.experts]
                _, fusion = mixture_cross_entropy(
                    [z[rows] for z in outputs],
                    [h.weight.detach() for h in heads],
                    [h.bias.detach() for h in heads],
                    row_targets,
                    gate=gate,
                    chunk_size=hp.loss_chunk_size,
                    denominator=denominator,
                )
            backward(fusion)
            total = total + fusion.detach()
            logs["train/fusion"] = fusion.detach()
        return self._finish_step(logs, total, len(inputs))

    def _joint_backward_step(
        self,
        inputs: Tensor,
        rows: Tensor,
        row_targets: Tensor,
        augmented: Tensor | None,
        denominator: int,
        kl_weight: float,
        backward: Callable[[Tensor], None],
    ) -> Tensor:
        hp = self.hparams
        pairs = [self._encode(expert, inputs, augmented) for expert in self.net.experts]
        outputs = [z for z, _ in pairs]
        heads = [expert.head for expert in self.net.experts]
        gate = None
        if self.net.gate is not None:
            gate = self.net.gate_weights(outputs, rows, padding=self._gate_padding(inputs))
        next_item, fusion = mixture_cross_entropy(
            [z[rows] for z in outputs],
            [h.weight for h in heads],
            [h.bias for h in heads],
            row_targets,
            gate=gate,
            chunk_size=hp.loss_chunk_size,
            denominator=denominator,
        )
        loss = next_item.sum() + fusion
        logs = {"train/next_item": next_item.detach().sum()}
        if self.net.gate is not None:
            logs["train/fusion"] = fusion.detach()
        if augmented is not None:
            contrast = torch.stack([nt_xent(z[:, -1], v[:, -1], hp.temperature) for z, v in pairs]).sum()
            loss = loss + hp.contrastive_weight * contrast
            logs["train/contrast"] = contrast.detach()
        if hp.kl_regularizer:
            kl = sum(expert.encoder.last_kl[: len(inputs)].sum() for expert in self.net.experts) / denominator
            loss = loss + kl_weight * kl
            logs["train/kl"] = kl.detach()
        backward(loss)
        return self._finish_step(logs, loss.detach(), len(inputs))

    def _finish_step(self, logs: dict[str, Tensor], total: Tensor, batch_size: int) -> Tensor:
        self.annealing_step += 1  # the client's optimizer steps, never reset (the KL weight's clock)
        logs["train/loss"] = total
        if self._trainer is not None:
            self.log_dict(logs, batch_size=batch_size)
        return total

    # Evaluation ---------------------------------------------------------------------------------------------
    def score_candidates(self, inputs: Tensor, candidates: Tensor | None) -> Tensor:
        """Fused scores sum_j g_j y^j at the last position (paper Eq. 9).

        The encoders run in the training precision; the scores, the gate and the fusion in fp32 outside autocast.
        """
        # every expert (the gate reads them all); all positions only for a gate pooled over the batch's positions
        batch_gate = self.hparams.gate_pooling == "batch" and self.net.gate is not None
        full = self._encode_all(inputs, last_only=not batch_gate)
        encoded = [z[:, -1] for z in full] if batch_gate else full
        eval_experts = self.hparams.eval_experts or self.expert_domains  # an empty list is rejected at build
        kept = [j for j, domain in enumerate(self.expert_domains) if domain in eval_experts]
        with full_precision(inputs.device):
            last = [z.float() for z in encoded]
            scores = {j: self.net.experts[j].candidate_scores(last[j], candidates) for j in kept}
            if len(self.expert_domains) == 1:
                return scores[0]
            if batch_gate:  # one gate vector from every position of the batch
                gate = self.net.gate_weights([z.float() for z in full], padding=self._gate_padding(inputs))
                gate = gate[:, -1].float()
            else:
                gate = self.net.gate_weights(last).float()
            if len(kept) < len(self.expert_domains):
                gate = gate[:, kept] / gate[:, kept].sum(-1, keepdim=True)  # renormalized over the kept experts
            return sum(gate[:, i : i + 1] * scores[j] for i, j in enumerate(kept))
