"""The MLP blocks of multi-task CTR models: Linear -> BatchNorm -> ReLU -> Dropout per hidden layer."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_fed.models.multitask.template_linear import TemplateLinear


class MLP(nn.Module):
    """Hidden layers ``Linear -> BatchNorm1d -> ReLU -> Dropout``; ``template=True`` uses :class:`TemplateLinear`.

    Args:
        in_dim: input width.
        hidden_dims: widths of the hidden layers; the output width is the last one.
        dropout: dropout after each layer.
        template: decompose each linear layer's weights as PF-MSMTrec's parameter template.
    """

    def __init__(self, in_dim: int, hidden_dims: list[int], dropout: float = 0.0, template: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden_dims:
            linear = TemplateLinear(in_dim, width) if template else nn.Linear(in_dim, width)
            layers += [linear, nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = width
        self.layers = nn.Sequential(*layers)
        self.output_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.layers(x)
