"""IBP-VAE's closed-form pieces against numerical integration and Monte Carlo; its terms and traversals."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import Bernoulli, kl_divergence

from trainers.objectives import make_objective
from trainers.objectives.ibp_vae import (
    kl_bernoulli,
    kl_kumaraswamy_beta,
    log_stick_breaking,
    relaxed_bernoulli,
    sample_kumaraswamy,
)


def _kumaraswamy_logpdf(x, a, b):
    return np.log(a * b) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-(x**a))


@pytest.mark.parametrize("a, b, alpha", [(0.5, 2.0, 5.0), (3.0, 0.7, 5.0), (2.0, 5.0, 2.0), (1.0, 1.0, 1.0)])
def test_kumaraswamy_to_beta_kl_is_the_integral(a, b, alpha):
    def integrand(x):
        log_q = _kumaraswamy_logpdf(x, a, b)
        return np.exp(log_q) * (log_q - stats.beta.logpdf(x, alpha, 1.0))

    expected = integrate.quad(integrand, 0.0, 1.0, limit=200)[0]
    closed = kl_kumaraswamy_beta(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64), alpha)
    assert closed.item() == pytest.approx(expected, abs=1e-7)


def test_kumaraswamy_samples_have_the_closed_form_mean():
    a = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    b = torch.tensor([2.0, 0.8, 3.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    samples = sample_kumaraswamy(a.expand(200_000, 3), b.expand(200_000, 3), g)
    # E[ν] = b·B(1 + 1/a, b)
    mean = b * torch.exp(torch.lgamma(1 + 1 / a) + torch.lgamma(b) - torch.lgamma(1 + 1 / a + b))
    torch.testing.assert_close(samples.mean(0), mean, atol=4 * samples.std(0).max().item() / math.sqrt(2e5), rtol=0)
    assert ((samples > 0) & (samples < 1)).all()


def test_relaxed_bernoulli_is_on_with_the_bernoulli_probability():
    logit = torch.tensor([-2.0, 0.0, 1.5]).expand(200_000, 3)
    on = (relaxed_bernoulli(logit, 0.5, torch.Generator().manual_seed(1)) > 0.5).float().mean(0)
    torch.testing.assert_close(on, torch.sigmoid(logit[0]), atol=4 * 0.5 / math.sqrt(2e5), rtol=0)


def test_bernoulli_kl_and_stick_breaking_against_torch():
    g = torch.Generator().manual_seed(2)
    nu = torch.rand(5, 6, generator=g, dtype=torch.float64) * 0.98 + 0.01
    log_pi = log_stick_breaking(nu)
    torch.testing.assert_close(log_pi.exp(), torch.cumprod(nu, dim=1))
    logit = torch.randn(5, 6, generator=g, dtype=torch.float64) * 3
    expected = kl_divergence(Bernoulli(logits=logit), Bernoulli(probs=log_pi.exp()))
    torch.testing.assert_close(kl_bernoulli(logit, log_pi), expected)


def test_terms_loss_and_active_dims():
    objective = make_objective("ibp_vae", {"beta": {"schedule": "linear", "end": 4, "end_step": 10}}, 1000)
    model = objective.build_model(6, 1, "code")
    x = (torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(0)) > 0.9).float()
    terms = objective.forward_terms(model, x, 5, torch.Generator().manual_seed(0), "fp32")
    assert list(terms) == list(objective.term_names())
    kls = terms["kl_gaussian"] + terms["kl_kumaraswamy"] + terms["kl_bernoulli"]
    torch.testing.assert_close(terms["kl"], kls)
    torch.testing.assert_close(terms["loss"], terms["recon"] + 2.0 * kls)
    with torch.no_grad():
        q = torch.sigmoid(model.encode(x).mask_logit)
    torch.testing.assert_close(terms["active_dims"], q.sum(1).mean())
    torch.testing.assert_close(model.representation(x), q * model.encode(x).mu)


def test_traversals_show_only_active_dimensions():
    objective = make_objective("ibp_vae", {}, 1000, options={"truncation": 7})
    model = objective.build_model(3, 1, "code").eval()
    assert model.latent_dim == 7
    k = model.latent_dim
    with torch.no_grad():
        model.head.weight[2 * k : 3 * k].zero_()  # the mask logits: dims 1 and 4 on, the rest off
        model.head.bias[2 * k : 3 * k] = torch.tensor([-9.0, 9, -9, -9, 9, -9, -9])
        x = torch.rand(8, 1, 64, 64)
        assert model.active_dims(x) == [1, 4]
        rows = model.traverse(x, values=(-1.0, 0.0, 1.0))
    assert rows.shape == (2 * 3, 1, 64, 64)


def test_options_are_checked():
    for options, field in [({"alpha": 0}, "alpha"), ({"truncation": -1}, "truncation"), ({"temperature": 0}, "temp")]:
        with pytest.raises(ValueError, match=f"variant_options.{field}"):
            make_objective("ibp_vae", {}, 10, options=options)
