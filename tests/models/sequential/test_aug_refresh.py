"""aug_refresh (docs/specs/baselines.md, "Augmentations", a choice): views redrawn every step, or drawn once."""

import pytest
import torch

from lightning_fed.models import FedCL4SRec, FedContrastVAE, FedDCSR
from lightning_fed.models.sequential.augmentations import FixedViews, unique_rows


def build(cls, dm, **kwargs):
    torch.manual_seed(0)
    model = cls(hidden_dim=8, num_heads=2, dropout=0.0, **kwargs)
    model.build(dm)
    return model.train()


def test_fixed_views_are_one_draw_per_distinct_sequence_looked_up_by_row(food):
    inputs = torch.cat([batch[0] for batch in food.train_dataloader()])
    doubled = torch.cat([inputs, inputs[:5]])  # a repeated row shares its views

    def draw(rows, generator):
        return torch.stack([rows.flip(1), rows + torch.randint(1, 3, rows.shape, generator=generator)], 1)

    fixed = FixedViews(doubled, draw, torch.Generator().manual_seed(3))
    unique, _ = unique_rows(doubled)
    want = draw(unique, torch.Generator().manual_seed(3))
    position = {row.numpy().tobytes(): i for i, row in enumerate(unique)}
    batch = doubled[[0, 7, len(inputs) + 2]]
    assert torch.equal(fixed(batch), want[[position[r.numpy().tobytes()] for r in batch]])
    assert torch.equal(fixed(doubled[:5]), fixed(doubled[len(inputs) :]))
    with pytest.raises(ValueError, match="not drawn a view"):
        fixed(torch.full_like(batch, 1))


@pytest.mark.parametrize("cls", [FedCL4SRec, FedContrastVAE, FedDCSR])
def test_once_reuses_the_build_draw_and_step_draws_anew(cls, food):
    inputs, targets = next(iter(food.train_dataloader()))
    once = build(cls, food, aug_refresh="once")
    first = once.augmented_views.fixed(inputs)
    assert first.shape[0] == len(inputs) and first.shape[-1] == inputs.shape[1]
    pad = food.num_items
    assert ((first == pad).sum(-1) >= (inputs == pad).sum(-1, keepdim=True)).all()  # views only drop items
    once.augmented_views.draw = None  # a step in "once" mode must not draw
    once.training_step((inputs, targets), 0)
    assert torch.equal(once.augmented_views.fixed(inputs), first)
    step = build(cls, food)
    assert step.augmented_views.fixed is None
    assert not torch.equal(step.draw_views(inputs), step.draw_views(inputs))


@pytest.mark.parametrize("name", ["FedSASRec", "FedVSAN", "FedContrastVAE", "FedCL4SRec", "FedDuoRec", "FedDCSR"])
def test_block_form_reaches_every_encoder(name, food):
    import lightning_fed.models as zoo
    from lightning_fed.models.sequential.sequence_encoder import CausalSelfAttentionBlock, SequenceEncoder

    for form in ("pre_norm", "sasrec"):
        model = build(getattr(zoo, name), food, block_form=form)
        encoders = [m for m in model.modules() if isinstance(m, SequenceEncoder)]
        blocks = [m for m in model.modules() if isinstance(m, CausalSelfAttentionBlock)]
        assert encoders and blocks
        assert {e.block_form for e in encoders} == {form} and {b.form for b in blocks} == {form}
