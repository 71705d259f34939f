import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from trainers.objectives.gaussian import (
    gaussian_log_density,
    kl_decomposition,
    kl_normal_to_standard,
    log_importance_weights,
    reparameterize,
)


def _posterior(b=32, d=6, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, generator=g, dtype=torch.float64) * spread
    logvar = torch.randn(b, d, generator=g, dtype=torch.float64) * 0.5 - 1.0
    z = reparameterize(mu, logvar, g)
    return z, mu, logvar


def test_log_density_matches_torch_distributions():
    z, mu, logvar = _posterior()
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), expected)


def test_kl_matches_the_closed_form_of_torch_distributions():
    _, mu, logvar = _posterior()
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kl_normal_to_standard(mu, logvar), kl_divergence(q, p))
    assert kl_normal_to_standard(torch.zeros(3), torch.zeros(3)).abs().max() == 0


@pytest.mark.parametrize("b,n", [(2, 10), (5, 5), (64, 737_280), (128, 1_000_000)])
def test_mss_weights_follow_the_paper(b, n):
    w = log_importance_weights(b, n, "mss").double().exp()
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.diagonal(w), torch.full((b,), 1 / n, dtype=torch.float64), rtol=1e-6, atol=0)
    m = b - 1
    strat = (n - m) / (n * m)
    for i in range(b):
        others = torch.cat([w[i, :i], w[i, i + 1 :]])
        # exactly one stratum weight, the remaining B-2 weigh 1/M
        assert torch.isclose(others, torch.tensor(strat, dtype=torch.float64), rtol=1e-5).sum() >= 1
        assert torch.isclose(others, torch.tensor(1 / m, dtype=torch.float64), rtol=1e-5).sum() >= b - 2


def test_mws_keeps_the_dataset_size():
    w = log_importance_weights(8, 1000, "mws")
    torch.testing.assert_close(w, torch.full((8, 8), -math.log(8000.0)))


@pytest.mark.parametrize("estimator", ["mss", "mws"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decomposition_sums_exactly_to_the_monte_carlo_kl(estimator, seed):
    z, mu, logvar = _posterior(seed=seed)
    terms = kl_decomposition(z, mu, logvar, dataset_size=737_280, estimator=estimator)
    mc_kl = (Normal(mu, torch.exp(0.5 * logvar)).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    total = terms["index_code_mi"] + terms["total_correlation"] + terms["dimwise_kl"]
    torch.testing.assert_close(total, mc_kl, rtol=1e-10, atol=1e-10)


def test_identical_posteriors_have_no_mutual_information_or_total_correlation():
    # q(z|x) is the same for every x, so q(z) = q(z|x) and q factorises: MI = TC = 0 exactly
    # with row-normalised MSS weights, and the whole KL is dimension-wise.
    b, d = 16, 5
    mu = torch.randn(1, d, dtype=torch.float64).repeat(b, 1)
    logvar = torch.full((b, d), -0.7, dtype=torch.float64)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    terms = kl_decomposition(z, mu, logvar, dataset_size=10_000, estimator="mss")
    assert abs(terms["index_code_mi"].item()) < 1e-10
    assert abs(terms["total_correlation"].item()) < 1e-10


def test_dropping_n_would_shift_tc_by_d_minus_1_log_nb():
    # With MWS the TC estimate depends on N only through -log(NB) inside log q(z) (once)
    # and inside each log q(z_d) (D times): TC(N) - TC(N') = (D-1) log(N'/N)... with sign.
    z, mu, logvar = _posterior(b=16, d=10)
    tc_n = kl_decomposition(z, mu, logvar, 737_280, "mws")["total_correlation"]
    tc_1 = kl_decomposition(z, mu, logvar, 1, "mws")["total_correlation"]
    torch.testing.assert_close(tc_n - tc_1, torch.tensor(9 * math.log(737_280), dtype=torch.float64))


def test_small_batches_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        log_importance_weights(1, 100)
    with pytest.raises(ValueError, match="estimator"):
        log_importance_weights(4, 100, "exact")
