import pytest
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


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_output_and_gradient_are_x_times_mask_times_scale_in_every_dtype(dtype):
    # The mask is applied in x's dtype; the result must equal x * mask * (1 / keep) rounded once, as torch computes
    # it with a bool mask, for the same random draws (bf16 rounds x / keep once, never the scale itself).
    layer = Dropout(0.3)
    x = torch.randn(64, 33, dtype=torch.float64).to(dtype).requires_grad_()
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)
    words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    keep = words.view(torch.int16)[: x.numel()].view(x.shape) >= 19661 - 32768
    scale = 65536 / (65536 - 19661)
    assert y.dtype == dtype
    assert torch.equal(y, x.detach() * keep * scale)
    grad = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    y.backward(grad)
    assert torch.equal(x.grad, grad * keep * scale)
