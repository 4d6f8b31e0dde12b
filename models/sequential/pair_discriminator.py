"""FedDCSR's discriminator of sequence-representation pairs and its hinge similarity loss (L_sim).

Zhang et al., "FedDCSR: Federated Cross-domain Sequential Recommendation via Disentangled Representation
Learning", SDM 2024 (Sec. 4.3, the inter-intra domain sequence representation disentanglement); written out in
docs/specs/baselines.md, "FedDCSR".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PairDiscriminator(nn.Module):
    """D(a, b): an MLP on the two masked, flattened (T, d) representations, 2Td -> d -> d -> 1 with ReLU.

    Args:
        max_seq_len: T.
        hidden_dim: d.
    """

    def __init__(self, max_seq_len: int, hidden_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * max_seq_len * hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, a: Tensor, b: Tensor, valid: Tensor) -> Tensor:
        """Scores (B,) of the pairs (a_i, b_i), both (B, T, d), with padding positions (``valid`` False) zeroed."""
        m = valid.unsqueeze(-1).to(a.dtype)
        return self.mlp(torch.cat([(a * m).flatten(1), (b * m.to(b.dtype)).flatten(1)], dim=1)).squeeze(1)


def similarity_hinge_loss(
    discriminator: PairDiscriminator, shared: Tensor, exclusive: Tensor, global_: Tensor, valid: Tensor, margin: float
) -> Tensor:
    """``L_sim = mean_i relu(margin - sigmoid(D(z_s, z_g)) + sigmoid(D(z~_e, z_g)))``.

    The shared representation z_s should score as closer to the federation's z_g than the exclusive one z~_e
    does, by ``margin`` (0.3 in FedDCSR).

    Args:
        discriminator: D.
        shared: z_s (B, T, d).
        exclusive: z~_e (B, T, d), the exclusive branch's encoding of a copy of the sequences.
        global_: z_g (B, T, d), aligned by batch row.
        valid: (B, T) non-padding mask of the batch.
        margin: the hinge's margin.
    """
    positive = torch.sigmoid(discriminator(shared, global_, valid).float())
    negative = torch.sigmoid(discriminator(exclusive, global_, valid).float())
    return torch.relu(margin - positive + negative).mean()
