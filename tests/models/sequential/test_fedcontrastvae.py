"""FedContrastVAE (docs/specs/baselines.md): the prior term, the KL, its upload, its loss by hand, two rounds."""

import math

import torch
import torch.nn.functional as F
from conftest import fit_slice

from lightning_fed.models import FedContrastVAE
from lightning_fed.models.sequential.augmentations import augment
from lightning_fed.models.sequential.contrastive import nt_xent
from lightning_fed.models.sequential.fedcontrastvae import variational_dropout_prior_kl
from lightning_fed.models.sequential.sequence_encoder import gaussian_kl


def test_prior_term_and_gaussian_kl_by_hand():
    a = torch.tensor(0.5)  # sigmoid(0), the start
    want = -0.5 * math.log(0.5) + 1.16145124 * 0.5 - 1.50204118 * 0.25 + 0.58629921 * 0.125
    torch.testing.assert_close(variational_dropout_prior_kl(a), torch.tensor(want))
    kl = gaussian_kl(torch.full((2, 4), 0.5), torch.full((2, 4), math.log(2.0)))
    torch.testing.assert_close(kl, torch.full((2,), 2 * (1.25 - math.log(2.0))))  # -1/2 * 4 * (1 + ln2 - 1/4 - 2)


def build(dm, **kwargs):
    torch.manual_seed(0)
    model = FedContrastVAE(hidden_dim=8, num_heads=2, dropout=0.0, **kwargs)
    model.build(dm)
    return model


def test_it_uploads_both_encoder_stacks_and_the_decoder_but_not_theta(food):
    model = build(food)
    payload = model.shared_state()
    assert {k.split(".")[1] for k in payload if k.startswith("encoder.")} >= {"blocks", "logvar_blocks"}
    assert len(payload) == len(model.expert.encoder.state_dict()) + len(model.decoder.state_dict())
    assert "noise_logit" in dict(model.named_parameters()) and not any("noise" in k for k in payload)


def test_loss_is_the_sum_of_its_five_terms(food):
    model = build(food, anneal_cap=0.5, total_annealing_step=4)
    model.annealing_step.fill_(1)  # w_KL = 0.25
    model.train()
    inputs, targets = next(iter(food.train_dataloader()))
    torch.manual_seed(11)
    loss = model.training_step((inputs, targets), 0)
    torch.manual_seed(11)  # the step's draws, in its order: operators, the view, then branch 2's noise
    operators = torch.randint(3, (len(inputs),))
    view = augment(inputs, model.pad_id, operators)
    with torch.no_grad():
        mu, logvar = model._gaussian(inputs)
        mu_v, logvar_v = model._gaussian(view)
        valid = (inputs != model.pad_id).unsqueeze(-1)
        z = (mu + (0.5 * logvar).exp()) * valid
        z_v = (mu_v + 0.5 * (0.5 * logvar_v).exp() * torch.randn_like(mu_v)) * valid  # a = sigmoid(0)
        rows = targets != food.ignore_target
        rec = 0.0
        for latent in (z, z_v):
            h = model.decoder(latent, valid.squeeze(-1))[rows]
            logits = h @ model.expert.head.weight.t() + model.expert.head.bias
            rec = rec + F.cross_entropy(logits, targets[rows], reduction="sum") / targets.numel()
        kl = sum(
            (gaussian_kl(m, lv) * valid.squeeze(-1)).sum() / targets.numel()
            for m, lv in ((mu, logvar), (mu_v, logvar_v))
        )
        want = rec + 0.25 * kl + nt_xent(z.sum(1), z_v.sum(1)) + variational_dropout_prior_kl(torch.tensor(0.5))
    torch.testing.assert_close(loss.detach(), want, rtol=1e-4, atol=1e-5)


def test_two_rounds_on_real_fkcb_rank_well_above_chance(tmp_path):
    results = fit_slice("fedcontrastvae_fkcb_cpu.yaml", tmp_path)
    assert results["strategy"] == "FedAvg"
    assert results["test"]["Avg"]["MRR"] > 0.03  # chance with 1000 candidates is about 0.0075
