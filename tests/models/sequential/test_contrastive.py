import math

import torch

from lightning_fed.models.sequential.contrastive import nt_xent, shuffle_items


def test_nt_xent_on_a_hand_computed_case():
    # u = [e1, e2], v = [e1, e3]: cosine similarities are 1 (same vector) or 0 (orthogonal)
    u = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    v = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # anchor u1: positive v1 (s=1), negatives u2 (0), v2 (0) -> -log(e / (e + 2))
    # anchor u2: positive v2 (0), negatives u1 (0), v1 (0) -> -log(1/3); likewise v2; v1 like u1
    first = -math.log(math.e / (math.e + 2))
    second = -math.log(1 / 3)
    expected = (2 * first + 2 * second) / 4
    assert math.isclose(nt_xent(u, v, temperature=1.0).item(), expected, rel_tol=1e-6)
    # temperature divides the similarities
    first_t = -math.log(math.e**2 / (math.e**2 + 2))
    assert math.isclose(nt_xent(u, v, temperature=0.5).item(), (2 * first_t + 2 * second) / 4, rel_tol=1e-6)


def test_shuffle_permutes_items_and_keeps_padding_on_the_left():
    pad = 9
    inputs = torch.tensor([[pad, pad, 1, 2, 3, 4], [pad, pad, pad, pad, 5, 6], [0, 1, 2, 3, 4, 5]])
    gen = torch.Generator().manual_seed(0)
    out = shuffle_items(inputs, pad, generator=gen)
    assert torch.equal(out == pad, inputs == pad)
    for row_in, row_out in zip(inputs, out):
        assert sorted(row_in.tolist()) == sorted(row_out.tolist())
    many = torch.stack([shuffle_items(inputs, pad, generator=gen) for _ in range(20)])
    assert not torch.all(many == inputs)  # it does shuffle
