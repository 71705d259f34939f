"""The decoder likelihoods (model.decoder) against torch.distributions, and a Gaussian trial end to end."""

import math

import pytest
import torch
from scaffold import Recorder
from torch.distributions import Bernoulli, Normal

from trainers.config import EvalConfig, ModelOptions, TrainConfig
from trainers.models import GaussianVAE, make_likelihood
from trainers.objectives import make_objective
from trainers.reporting import NullReporter
from trainers.train import train


def _images(b=4, c=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, 64, 64, generator=g), torch.randn(b, c, 64, 64, generator=g)


def test_bernoulli_recon_is_the_bernoulli_nll_in_nats_per_image():
    x, out = _images()
    x = (x > 0.7).float()
    expected = -Bernoulli(logits=out).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(make_likelihood().nll(out, x), expected)


@pytest.mark.parametrize("sigma", [0.05, 0.1, 1.0])
def test_gaussian_recon_is_the_normal_nll_of_the_squashed_mean(sigma):
    x, out = _images(c=3)
    expected = -Normal(torch.sigmoid(out), sigma).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(make_likelihood("gaussian", sigma).nll(out, x), expected)


def test_learned_sigma_is_a_decoder_parameter_carried_in_its_output():
    likelihood = make_likelihood("gaussian", 0.3, learned=True)
    model = GaussianVAE(4, in_channels=3, likelihood=likelihood)
    assert model.decoder.log_sigma.item() == pytest.approx(math.log(0.3))
    with torch.no_grad():
        model.decoder.log_sigma.fill_(math.log(0.2))
    x = torch.rand(2, 3, 64, 64)
    out = model.decode(torch.randn(2, 4))
    assert out.shape == (2, 6, 64, 64)
    expected = -Normal(torch.sigmoid(out[:, :3]), 0.2).log_prob(x).flatten(1).sum(1)
    nll = likelihood.nll(out, x)
    torch.testing.assert_close(nll, expected)
    nll.mean().backward()
    assert model.decoder.log_sigma.grad is not None and model.decoder.log_sigma.grad.abs() > 0
    image = model.reconstruct(x)
    assert image.shape == x.shape and 0 <= image.min() and image.max() <= 1


@pytest.mark.parametrize("variant", ["beta_vae", "iwae", "ladder_vae", "joint_vae"])
def test_every_model_decodes_with_the_chosen_likelihood(variant):
    likelihood = make_likelihood("gaussian", 0.1, learned=True)
    objective = make_objective(variant, {}, 1000, likelihood=likelihood)
    model = objective.build_model(4, 3, "code")
    assert model.decoder.likelihood == likelihood
    terms = objective.train_step(
        model, objective.make_optimizers(model, 1e-3), lambda: torch.rand(4, 3, 64, 64), 0, torch.Generator(), "fp32"
    )
    assert torch.isfinite(terms["recon"]) and model.decoder.log_sigma.grad is not None


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"decoder": "poisson"}, "decoder"),
        ({"decoder": "gaussian", "decoder_sigma": 0}, "decoder_sigma"),
        ({"decoder": "gaussian", "decoder_sigma": float("inf")}, "decoder_sigma"),
        ({"decoder_sigma": 0.5}, "decoder_sigma"),
        ({"decoder_sigma_learned": True}, "decoder_sigma_learned"),
        ({"decoder": "gaussian", "decoder_sigma_learned": "yes"}, "decoder_sigma_learned"),
    ],
)
def test_model_options_refuse_a_bad_decoder_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        ModelOptions(**changes)


def test_a_gaussian_trial_on_colour_data_trains_and_resumes_only_as_gaussian(tmp_path):
    config = TrainConfig(
        variant="beta_vae",
        dataset="color_dsprites",
        decoder="gaussian",
        decoder_sigma_learned=True,
        latent_dim=3,
        steps=4,
        batch_size=8,
        log_every=2,
        checkpoint_every=2,
        num_threads=1,
        eval=EvalConfig(recon_points=16, udr_points=16, metric_options={"mig": {"num_points": 200}}),
    )
    kept = Recorder()
    result = train(config, kept, output_dir=tmp_path)
    assert math.isfinite(result.terms["recon"]) and "mig" in result.metrics
    bernoulli = TrainConfig(**{**config.to_dict(), "decoder": "bernoulli", "decoder_sigma_learned": False})
    with pytest.raises(Exception, match="decoder"):
        train(bernoulli, NullReporter(), resume=kept.states[2])
