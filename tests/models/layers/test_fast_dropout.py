import torch

from lightning_fed.models.layers.fast_dropout import Dropout


def test_drop_rate_and_inverted_scaling():
    torch.manual_seed(0)
    layer = Dropout(0.3)
    x = torch.ones(400_000)
    y = layer(x)
    kept = y != 0
    keep_prob = 1 - 19661 / 65536  # 0.3 quantized to 1/65536
    assert abs(kept.float().mean().item() - keep_prob) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / keep_prob))
    layer.eval()
    assert layer(x) is x


def test_gradient_uses_the_same_mask():
    layer = Dropout(0.5)
    x = torch.randn(1000, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)
