"""The causal self-attention sequence encoder of an expert (FMoE-CDSR paper Eq. 2; SASRec, Kang & McAuley 2018).

This is the part of an expert that leaves a client: it holds no item embedding and no prediction head, so
nothing about a domain's items or users is in its weights' shapes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_fed.models.layers.fast_dropout import Dropout


class CausalSelfAttentionBlock(nn.Module):
    """Pre-LayerNorm block: x + MHA(LN(x)) then x + FFN(LN(x)), as in SASRec.

    It works on packed tokens (the non-padding positions only): every token-wise layer skips the padding,
    and only the attention scatters the tokens back into (B, T) to attend.
    """

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.dropout = dropout
        self.attn_norm = nn.LayerNorm(hidden_dim)
        self.qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.out = nn.Linear(hidden_dim, hidden_dim)
        self.ffn_norm = nn.LayerNorm(hidden_dim)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
        )
        self.resid_dropout = Dropout(dropout)
        self.attn_dropout = Dropout(dropout)

    def forward(self, x: Tensor, tokens: Tensor, shape: tuple[int, int], attn_mask: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: (N, d) packed non-padding tokens.
            tokens: (N,) their flat positions in the (B, T) batch.
            shape: (B, T).
            attn_mask: (B, 1, T, T) boolean, True where a query may attend to a key.
        """
        (b, t), d = shape, x.size(-1)
        qkv = self.qkv(self.attn_norm(x))
        full = qkv.new_zeros(b * t, 3 * d).index_copy(0, tokens, qkv)
        q, k, v = full.view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        # Written out rather than F.scaled_dot_product_attention: on CPU its path with a mask and dropout
        # upcasts bf16 inputs to fp32 and keeps those copies for the backward pass.
        scores = (q @ k.transpose(-1, -2)) * (q.size(-1) ** -0.5)
        probs = torch.softmax(scores.float().masked_fill(~attn_mask, float("-inf")), dim=-1).to(v.dtype)
        attn = self.attn_dropout(probs) @ v
        attn = attn.transpose(1, 2).reshape(b * t, d).index_select(0, tokens)
        x = x + self.resid_dropout(self.out(attn))
        return x + self.resid_dropout(self.ffn(self.ffn_norm(x)))


class SequenceEncoder(nn.Module):
    """Stack of causal self-attention blocks and a final LayerNorm: z_t depends on positions <= t only.

    Padding positions output zero (docs/specs/fmoe-cdsr.md zeroes them after every block); a query attends to the
    non-padding keys at or before its position. Token-wise layers run on the non-padding tokens only,
    which gives the same outputs as computing and zeroing the padding.

    With ``variational=True`` (the reference code's option, off in the paper) the output is a Gaussian
    sample ``mu + sigma * eps`` during training (``mu`` at evaluation), and :attr:`last_kl` holds the KL term.
    """

    def __init__(
        self, hidden_dim: int, num_blocks: int, num_heads: int, dropout: float, variational: bool = False
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(CausalSelfAttentionBlock(hidden_dim, num_heads, dropout) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(hidden_dim)
        self.variational = variational
        if variational:
            self.mu = nn.Linear(hidden_dim, hidden_dim)
            self.logvar = nn.Linear(hidden_dim, hidden_dim)
        self.last_kl: Tensor | None = None

    @staticmethod
    def attention_mask(valid: Tensor) -> Tensor:
        """(B, 1, T, T) mask: causal and non-padding keys, plus the diagonal (no empty softmax rows)."""
        t = valid.size(1)
        causal = torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()
        mask = causal & valid[:, None, :]
        return (mask | torch.eye(t, dtype=torch.bool, device=valid.device)).unsqueeze(1)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """Encode.

        Args:
            x: (B, T, d) input representations (already embedded, normalized and with positions).
            valid: (B, T) boolean, False at padding positions.

        Returns:
            (B, T, d) outputs z_t, zero at padding positions.
        """
        b, t, d = x.shape
        tokens = valid.reshape(-1).nonzero().squeeze(1)
        h = x.reshape(b * t, d).index_select(0, tokens)
        mask = self.attention_mask(valid)
        for block in self.blocks:
            h = block(h, tokens, (b, t), mask)
        h = self.final_norm(h)
        if self.variational:
            mu, logvar = self.mu(h), self.logvar(h).clamp(-10.0, 10.0)
            self.last_kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean()
            h = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return h.new_zeros(b * t, d).index_copy(0, tokens, h).view(b, t, d)
