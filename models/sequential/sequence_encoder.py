"""The causal self-attention sequence encoder of an expert (FMoE-CDSR paper Eq. 2; SASRec, Kang & McAuley 2018).

This is the part of an expert that leaves a client: it holds no item embedding and no prediction head, so
nothing about a domain's items or users is in its weights' shapes.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from lightning_fed.models.layers.fast_dropout import Dropout

BlockForm = Literal["pre_norm", "sasrec"]
NORM_EPS: dict[str, float] = {"pre_norm": 1e-5, "sasrec": 1e-8}  # the reference code's SASRec LayerNorms: 1e-8


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per position, summed over d: ``-1/2 sum (1 + lv - mu^2 - e^lv)``."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class CausalSelfAttentionBlock(nn.Module):
    """One causal self-attention block, in one of two forms (docs/specs/fmoe-cdsr.md, Eq. 2 and reference point 3).

    - ``"pre_norm"`` (GPT style, the method as written): ``x + drop(MHA(LN(x)))`` then ``x + drop(FFN(LN(x)))``;
      a query attends to the non-padding keys at or before its position.
    - ``"sasrec"`` (the reference code): ``Q = LN(x)``, ``x = Q + MHA(Q, K = x, V = x)`` (the residual from the
      normalized input; keys and values from the raw stream), ``x = LN'(x)``, ``x = x + FFN(x)``; no key-padding
      mask (padding keys, whose stream is zero, project to the key and value biases); dropout only on the
      attention probabilities and inside the FFN; its LayerNorms have the reference code's eps, 1e-8 (PyTorch's
      default 1e-5 in the ``"pre_norm"`` form).

    It works on packed tokens (the non-padding positions only): every token-wise layer skips the padding, and
    only the attention scatters the tokens back into (B, T) to attend.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float, form: BlockForm = "pre_norm") -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.form = form
        self.num_heads = num_heads
        self.attn_norm = nn.LayerNorm(hidden_dim, eps=NORM_EPS[form])
        self.qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.ffn_norm = nn.LayerNorm(hidden_dim, eps=NORM_EPS[form])
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
        )
        self.resid_dropout = Dropout(dropout)
        self.attn_dropout = Dropout(dropout)

    def _attend(
        self,
        q: Tensor,
        kv_source: Tensor | None,
        tokens: Tensor,
        shape: tuple[int, int],
        mask: Tensor,
        queries: Tensor | None = None,
    ) -> Tensor:
        """Multi-head attention of packed queries (N, d) over keys/values projected from packed ``kv_source``.

        With ``queries``, only those packed rows' outputs go through the output projection: (len(queries), d).

        The projections run on the (B * T, d) rows with zeros at padding, so a padding position's query, key and
        value are the projection biases (what the ``"sasrec"`` form's zero padding stream gives; the
        ``"pre_norm"`` form masks those keys and drops those queries). Scattering the d-wide input instead of the
        3d-wide projections moves a third of the memory, for a few more matmul rows.
        """
        (b, t), d = shape, q.size(-1)
        weight, bias = self.qkv.weight, self.qkv.bias
        heads, dh = self.num_heads, d // self.num_heads
        q_rows = self._unpack_rows(q, tokens, b * t)
        if kv_source is None:
            q, k, v = self.qkv(q_rows).view(b, t, 3, heads, dh).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            q = nn.functional.linear(q_rows, weight[:d], bias[:d]).view(b, t, heads, dh).transpose(1, 2)
            kv = nn.functional.linear(self._unpack_rows(kv_source, tokens, b * t), weight[d:], bias[d:])
            k, v = kv.view(b, t, 2, heads, dh).permute(2, 0, 3, 1, 4).unbind(0)
        # Written out rather than F.scaled_dot_product_attention: on CPU its path with a mask and dropout
        # upcasts bf16 inputs to fp32 and keeps those copies for the backward pass.
        scores = (q @ k.transpose(-1, -2)) * (dh**-0.5)
        probs = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1).to(v.dtype)
        attn = self.attn_dropout(probs) @ v
        kept = tokens if queries is None else tokens[queries]
        return self.out(attn.transpose(1, 2).reshape(b * t, d).index_select(0, kept))

    def _attend_queries(
        self, q: Tensor, kv_source: Tensor | None, tokens: Tensor, shape: tuple[int, int], mask: Tensor, queries: Tensor
    ) -> Tensor:
        """:meth:`_attend` for the packed rows ``queries`` only (keys and values from every row): (len(queries), d)."""
        (b, t), d = shape, q.size(-1)
        weight, bias = self.qkv.weight, self.qkv.bias
        heads, dh = self.num_heads, d // self.num_heads
        source = self._unpack_rows(q if kv_source is None else kv_source, tokens, b * t)
        k, v = nn.functional.linear(source, weight[d:], bias[d:]).view(b, t, 2, heads, dh).permute(2, 0, 3, 1, 4)
        position = tokens[queries]
        sequence, step = position // t, position % t
        query = nn.functional.linear(q[queries], weight[:d], bias[:d]).view(-1, heads, 1, dh)
        if len(sequence) != b or not torch.equal(sequence, torch.arange(b, device=sequence.device)):
            k, v = k[sequence], v[sequence]  # (Q, heads, T, dh); one query per sequence in order needs no copy
        scores = (query @ k.transpose(-1, -2)) * (dh**-0.5)
        allowed = mask[sequence, :, step].unsqueeze(2)  # (Q, 1, 1, T)
        probs = torch.softmax(scores.float().masked_fill(~allowed, float("-inf")), dim=-1).to(v.dtype)
        return self.out((self.attn_dropout(probs) @ v).reshape(-1, d))

    @staticmethod
    def _unpack_rows(packed: Tensor, tokens: Tensor, rows: int) -> Tensor:
        """Packed (N, d) rows scattered into (rows, d) zeros at ``tokens``.

        Under autocast the N rows are cast to its dtype before the scatter (the projections would cast the
        scattered rows anyway): the same values, with half the bytes to zero, scatter and cast.
        """
        device = packed.device.type
        if torch.is_autocast_enabled(device) and packed.dtype == torch.float32:  # what autocast casts (not fp64)
            packed = packed.to(torch.get_autocast_dtype(device))
        return packed.new_zeros(rows, packed.size(-1)).index_copy_(0, tokens, packed)

    def forward(
        self, x: Tensor, tokens: Tensor, shape: tuple[int, int], attn_mask: Tensor, queries: Tensor | None = None
    ) -> Tensor:
        """Apply the block.

        Args:
            x: (N, d) packed non-padding tokens.
            tokens: (N,) their flat positions in the (B, T) batch.
            shape: (B, T).
            attn_mask: (B, 1, T, T) boolean, True where a query may attend to a key.
            queries: packed rows whose outputs are wanted (all rows if None); the others still serve as keys and
                values. Returns (len(queries), d) then.
        """
        if queries is not None:
            # one query per sequence (scoring): attend from those rows alone; more (training with contrastive
            # views): attend from every row, which costs (B, T, T) scores but no per-query copy of K and V
            attend = self._attend_queries if len(queries) <= shape[0] else self._attend
            if self.form == "sasrec":
                q = self.attn_norm(x)
                x = self.ffn_norm(q[queries] + attend(q, x, tokens, shape, attn_mask, queries))
                return x + self.resid_dropout(self.ffn(x))
            attended = attend(self.attn_norm(x), None, tokens, shape, attn_mask, queries)
            x = x[queries] + self.resid_dropout(attended)
            return x + self.resid_dropout(self.ffn(self.ffn_norm(x)))
        if self.form == "sasrec":
            q = self.attn_norm(x)
            x = self.ffn_norm(q + self._attend(q, x, tokens, shape, attn_mask))
            return x + self.resid_dropout(self.ffn(x))
        x = x + self.resid_dropout(self._attend(self.attn_norm(x), None, tokens, shape, attn_mask))
        return x + self.resid_dropout(self.ffn(self.ffn_norm(x)))


def run_blocks(
    blocks: nn.ModuleList,
    final_norm: nn.LayerNorm,
    h: Tensor,
    tokens: Tensor,
    shape: tuple[int, int],
    mask: Tensor,
    queries: Tensor | None = None,
) -> Tensor:
    """Apply a stack of blocks and its final LayerNorm to packed tokens (the last block to ``queries`` only)."""
    for i, block in enumerate(blocks):
        h = block(h, tokens, shape, mask, queries if i == len(blocks) - 1 else None)
    return final_norm(h)


class SequenceEncoder(nn.Module):
    """Causal self-attention blocks and a final LayerNorm: z_t depends on positions <= t only.

    Padding positions output zero (docs/specs/fmoe-cdsr.md zeroes them after every block). Token-wise layers run
    on the non-padding tokens only, which gives the same outputs as computing and zeroing the padding.

    With ``kl_regularizer=True`` (the reference code, point 1 of the spec's list) the encoder is two stacks, mu and
    logvar, over the same input; the output is z = mu (never sampled), and :attr:`last_kl` holds the summed KL
    divergence ``-1/2 sum_d (1 + logvar - mu^2 - exp(logvar))`` over the non-padding positions. Both stacks are
    the encoder: both leave the client.

    Args:
        hidden_dim: d.
        num_blocks: blocks per stack.
        num_heads: attention heads.
        dropout: dropout rate.
        block_form: ``"pre_norm"`` (the method as written) or ``"sasrec"`` (the reference code); see
            :class:`CausalSelfAttentionBlock`. The final LayerNorms' eps follows the form (1e-5, or 1e-8).
        kl_regularizer: the reference code's second (logvar) stack and KL term.
        sample_latent: with the logvar stack, output ``mu + exp(logvar / 2) * eps`` in training (a VAE, as
            FedVSAN's encoder; mu at evaluation) instead of mu.
    """

    def __init__(
        self,
        hidden_dim: int,
        num_blocks: int,
        num_heads: int,
        dropout: float,
        block_form: BlockForm = "pre_norm",
        kl_regularizer: bool = False,
        sample_latent: bool = False,
    ) -> None:
        super().__init__()
        if sample_latent and not kl_regularizer:
            raise ValueError("sample_latent needs the logvar stack (kl_regularizer=True)")
        self.sample_latent = sample_latent
        self.block_form = block_form

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                CausalSelfAttentionBlock(hidden_dim, num_heads, dropout, block_form) for _ in range(num_blocks)
            )

        self.blocks, self.final_norm = stack(), nn.LayerNorm(hidden_dim, eps=NORM_EPS[block_form])  # the mu stack
        self.logvar_blocks = stack() if kl_regularizer else None
        self.logvar_norm = nn.LayerNorm(hidden_dim, eps=NORM_EPS[block_form]) if kl_regularizer else None
        self.last_kl: Tensor | None = None

    def padding_output(self) -> Tensor | None:
        """What the reference code's encoder outputs at a padding position, where :meth:`forward` outputs zero.

        In the ``"sasrec"`` form the reference's final LayerNorm follows the last zeroing of the padding, so a
        padding position leaves its encoder as LN(0), the final norm's bias (d,); None in the ``"pre_norm"`` form
        (zero). Only a reader of padding positions needs it: FMoE-CDSR's batch-pooled gate (reference point 7).
        """
        return self.final_norm.bias if self.block_form == "sasrec" else None

    def attention_mask(self, valid: Tensor) -> Tensor:
        """(B, 1, T, T) mask: causal, plus (pre-norm form) non-padding keys only; the diagonal always."""
        t = valid.size(1)
        mask = torch.ones(t, t, dtype=torch.bool, device=valid.device).tril().expand(valid.size(0), t, t)
        if self.block_form == "pre_norm":
            mask = (mask & valid[:, None, :]) | torch.eye(t, dtype=torch.bool, device=valid.device)
        return mask.unsqueeze(1)

    def _packed_stacks(
        self, x: Tensor, valid: Tensor, full_rows: int | None = None, logvar: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Both stacks on the packed non-padding tokens: (mu (Q, d), logvar or None, the Q outputs' positions).

        With ``full_rows``: mu at every position of the first ``full_rows`` sequences and at the last position of
        the others (the last block computes only those rows; the earlier ones serve every row as keys and
        values); logvar only for the first ``full_rows`` sequences, and not at all when ``full_rows`` is 0.
        With ``logvar=False`` the logvar stack does not run.
        """
        b, t = valid.shape
        tokens = valid.reshape(-1).nonzero().squeeze(1)
        h = self._packed(x, valid, tokens)
        mask = self.attention_mask(valid)
        if full_rows is None:
            mu = run_blocks(self.blocks, self.final_norm, h, tokens, (b, t), mask)
            if self.logvar_blocks is None or not logvar:
                return mu, None, tokens
            return mu, run_blocks(self.logvar_blocks, self.logvar_norm, h, tokens, (b, t), mask), tokens
        full = int(torch.searchsorted(tokens, full_rows * t))  # tokens are sorted: rows < full_rows come first
        last = (tokens[full:] % t == t - 1).nonzero().squeeze(1) + full
        queries = torch.cat([torch.arange(full, device=tokens.device), last])
        mu = run_blocks(self.blocks, self.final_norm, h, tokens, (b, t), mask, queries)
        if self.logvar_blocks is None or full_rows == 0 or not logvar:
            return mu, None, tokens[queries]
        stack, norm = self.logvar_blocks, self.logvar_norm
        logvar = run_blocks(stack, norm, h[:full], tokens[:full], (full_rows, t), mask[:full_rows])
        return mu, logvar, tokens[queries]

    @staticmethod
    def _packed(x: Tensor, valid: Tensor, tokens: Tensor) -> Tensor:
        """The non-padding rows (N, d) of an input given as (B, T, d), or the input itself if already packed."""
        if x.dim() == 2:
            if x.size(0) != len(tokens):
                raise ValueError(
                    f"a packed input needs one row per non-padding position ({len(tokens)}), got {x.size(0)} rows"
                )
            return x
        return x.reshape(-1, x.size(-1)).index_select(0, tokens)

    @staticmethod
    def _unpack(packed: Tensor, tokens: Tensor, valid: Tensor) -> Tensor:
        """Packed tokens back to (B, T, d), zero at padding."""
        (b, t), d = valid.shape, packed.size(-1)
        return packed.new_zeros(b * t, d).index_copy(0, tokens, packed).view(b, t, d)

    def gaussian(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """The mu and logvar maps (B, T, d) of the two stacks, zero at padding (needs ``kl_regularizer``).

        For models that sample or mask the latent themselves (FedContrastVAE); :meth:`forward` does not set
        :attr:`last_kl` here.
        """
        if self.logvar_blocks is None:
            raise ValueError("gaussian() needs the logvar stack (kl_regularizer=True)")
        mu, logvar, tokens = self._packed_stacks(x, valid)
        return self._unpack(mu, tokens, valid), self._unpack(logvar, tokens, valid)

    def forward(
        self, x: Tensor, valid: Tensor, last_only: bool = False, full_rows: int | None = None, kl: bool = True
    ) -> Tensor:
        """Encode.

        Args:
            x: (B, T, d) input representations (already embedded, normalized and with positions), or only their
                N non-padding rows (N, d), in the row-major order of ``valid``'s True positions.
            valid: (B, T) boolean, False at padding positions. The last position must be valid (left padding).
            last_only: return only the last position's output (B, d), as scoring needs: the last block then
                computes only those rows, and the logvar stack (whose output z = mu does not use) is skipped and
                :attr:`last_kl` is not set.
            full_rows: compute every position for the first ``full_rows`` sequences only and the last position
                for the others (contrastive views, of which only z_T is read); the other positions of those rows
                are zero. :attr:`last_kl` then covers the first ``full_rows`` sequences. Not with
                ``sample_latent``, which samples every row.
            kl: run the logvar stack and set :attr:`last_kl` (training reads it). False skips the stack, as
                scoring with every position's z = mu does; not with ``sample_latent`` in training.

        Returns:
            (B, T, d) outputs z_t, zero at padding positions; (B, d) z_T with ``last_only``.
        """
        b, t = valid.shape
        if last_only:
            mu, _, last_tokens = self._packed_stacks(x, valid, full_rows=0)
            return mu.new_zeros(b, mu.size(-1)).index_copy_(0, last_tokens // t, mu)
        if full_rows is not None and self.sample_latent and self.training:
            raise ValueError("full_rows leaves the other rows without logvar, which sample_latent needs")
        if not kl and self.sample_latent and self.training:
            raise ValueError("kl=False skips the logvar stack, which sample_latent needs in training")
        mu, logvar, tokens = self._packed_stacks(x, valid, full_rows, logvar=kl)
        if logvar is not None:
            logvar = logvar.float()
            rows = b if full_rows is None else full_rows
            kl = gaussian_kl(mu[: len(logvar)].float(), logvar)
            self.last_kl = kl.new_zeros(rows).index_add_(0, tokens[: len(logvar)] // t, kl)
            if self.sample_latent and self.training:
                mu = mu + (0.5 * logvar).exp().to(mu.dtype) * torch.randn_like(mu)
        return self._unpack(mu, tokens, valid)
