"""Crop, mask and reorder on hand-made sequences (docs/specs/baselines.md, "Augmentations")."""

import torch

from lightning_fed.models.sequential.augmentations import augment, crop, mask, reorder, two_distinct_operators

P = 9  # the padding id
ROW = [P, P, 1, 2, 3, 4, 5]  # n = 5 real items


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def test_crop_keeps_floor_0_6_n_consecutive_items_from_a_uniform_start():
    inputs = torch.tensor([ROW] * 600)
    out = crop(inputs, P, generator=_generator(0))
    windows = {tuple(r) for r in out.tolist()}
    # floor(0.6 * 5) = 3 items from start 0, 1 or 2, left-padded again
    assert windows == {(P, P, P, P, 1, 2, 3), (P, P, P, P, 2, 3, 4), (P, P, P, P, 3, 4, 5)}
    counts = torch.tensor([sum(r[4] == first for r in out.tolist()) for first in (1, 2, 3)])
    assert counts.min() > 150  # each start about 200 times in 600
    # the first row's start is floor(u * 3) of the generator's first draw
    u = torch.rand(600, generator=_generator(0))[0].item()
    assert out[0, 4].item() == 1 + int(u * 3)


def test_mask_pads_floor_0_3_n_real_positions_and_nothing_else():
    inputs = torch.tensor([ROW] * 300)
    out = mask(inputs, P, generator=_generator(1))
    assert (out[:, :2] == P).all()  # the padding stays
    masked = (out[:, 2:] == P).sum(1)
    assert (masked == 1).all()  # floor(0.3 * 5) = 1
    kept = out[:, 2:][out[:, 2:] != P].view(300, 4)
    for row, original in zip(out[:, 2:].tolist(), [ROW[2:]] * 300):
        assert [a for a in row if a != P] == [a for a in original if a in row]  # the others keep their order
    assert len({tuple(r) for r in kept.tolist()}) == 5  # each of the five positions gets masked


def test_reorder_permutes_a_window_of_floor_0_6_n_items_and_keeps_the_rest():
    inputs = torch.tensor([ROW] * 400)
    out = reorder(inputs, P, generator=_generator(2))
    assert (out[:, :2] == P).all()
    for row in out.tolist():
        assert sorted(row[2:]) == [1, 2, 3, 4, 5]
        moved = [i for i, (a, b) in enumerate(zip(row[2:], ROW[2:])) if a != b]
        if moved:  # only inside one window of 3 consecutive real items
            assert moved[-1] - moved[0] <= 2
    assert len({tuple(r) for r in out.tolist()}) > 6  # several windows and orders occur


def test_a_one_item_sequence_crops_to_nothing_and_is_otherwise_unchanged():
    inputs = torch.tensor([[P, P, P, 7]])
    assert crop(inputs, P).tolist() == [[P, P, P, P]]  # floor(0.6) = 0 items
    assert mask(inputs, P).tolist() == [[P, P, P, 7]]  # floor(0.3) = 0 positions
    assert reorder(inputs, P).tolist() == [[P, P, P, 7]]


def test_two_views_use_two_different_operators_and_augment_picks_them_per_row():
    first, second = two_distinct_operators(1000, torch.device("cpu"), _generator(3))
    assert (first != second).all()
    assert set(zip(first.tolist(), second.tolist())) == {(a, b) for a in range(3) for b in range(3) if a != b}
    inputs = torch.tensor([ROW] * 3)
    out = augment(inputs, P, torch.tensor([0, 1, 2]))
    assert (out[0] == P).sum() == 4 and (out[1] == P).sum() == 3 and sorted(out[2, 2:].tolist()) == [1, 2, 3, 4, 5]
