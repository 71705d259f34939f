"""Each variant against its paper's formulas and the pitfalls of well-known implementations."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from trainers.data import ProceduralDSprites
from trainers.models.joint import gumbel_softmax
from trainers.models.ladder import precision_weighted_merge
from trainers.objectives import make_objective
from trainers.objectives.dip_vae import batch_covariance, dip_penalties
from trainers.objectives.factor_vae import permute_dims
from trainers.objectives.gaussian import (
    grouped_kl_decomposition,
    kl_decomposition,
    log_importance_weights,
    reparameterize,
    total_correlation_dlib,
)
from trainers.objectives.iwae import iwae_terms
from trainers.objectives.joint_vae import kl_categorical_to_uniform
from trainers.objectives.ladder_vae import kl_gaussians

N = 737_280


def _posterior(b=24, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(b, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(b, d, generator=g, dtype=torch.float64) * 0.5 - 1.0
    return reparameterize(mu, logvar, g), mu, logvar


def _batches(n=32, seed=0):
    data = ProceduralDSprites()
    rng = torch.Generator().manual_seed(seed)
    return lambda: data.observations(data.sample_factors(n, rng))


# β-TCVAE ----------------------------------------------------------------------------------


def test_beta_tcvae_weights_each_decomposition_term():
    objective = make_objective("beta_tcvae", {"alpha": 2, "beta": 6, "gamma": 0.5}, N)
    model = objective.build_model(5, 1, "code")
    x = _batches()()
    terms = objective.forward_terms(model, x, 0, torch.Generator().manual_seed(0), "fp32")
    expected = terms["recon"] + 2 * terms["index_code_mi"] + 6 * terms["total_correlation"] + 0.5 * terms["dimwise_kl"]
    torch.testing.assert_close(terms["loss"], expected)
    assert terms["total_correlation"].requires_grad  # it is optimised, unlike for β-VAE


@pytest.mark.parametrize("b,d,n", [(24, 6, N), (8, 3, 1000)])
def test_disentanglement_lib_tc_is_the_mws_tc_shifted_by_the_log_n_constants(b, d, n):
    z, mu, logvar = _posterior(b, d)
    mws = kl_decomposition(z, mu, logvar, n, "mws")["total_correlation"]
    # Brute force: disentanglement_lib's total_correlation, item by item.
    log_q = Normal(mu[None, :, :], torch.exp(0.5 * logvar[None, :, :])).log_prob(z[:, None, :])  # [i, j, d]
    dlib = torch.stack(
        [torch.logsumexp(log_q[i].sum(1), 0) - torch.logsumexp(log_q[i], 0).sum() for i in range(b)]
    ).mean()
    torch.testing.assert_close(total_correlation_dlib(z, mu, logvar), dlib)
    torch.testing.assert_close(mws - dlib, torch.tensor((d - 1) * math.log(n * b), dtype=torch.float64))


def test_beta_tcvae_in_disentanglement_lib_form():
    objective = make_objective(
        "beta_tcvae", {"beta": 6}, N, estimator="mws", options={"regulariser": "disentanglement_lib"}
    )
    model = objective.build_model(5, 1, "code")
    terms = objective.forward_terms(model, _batches()(), 0, torch.Generator().manual_seed(0), "fp32")
    assert list(terms) == list(objective.term_names()) and "alpha" not in terms and "gamma" not in terms
    expected = terms["recon"] + terms["kl"] + 5 * terms["total_correlation_dlib"]
    torch.testing.assert_close(terms["loss"], expected)
    assert not terms["total_correlation"].requires_grad
    shift = terms["total_correlation"] - terms["total_correlation_dlib"]
    assert shift.item() == pytest.approx(4 * math.log(N * 32), rel=1e-5)
    with pytest.raises(ValueError, match=r"variant_options\.regulariser"):
        make_objective("beta_tcvae", {}, N, options={"regulariser": "tf"})


# HFVAE ------------------------------------------------------------------------------------


@pytest.mark.parametrize("b,n", [(2, 5), (16, 1000), (64, N)])
def test_hfvae_estimator_weights(b, n):
    w = log_importance_weights(b, n, "hfvae", dtype=torch.float64).exp()
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64))
    torch.testing.assert_close(torch.diagonal(w), torch.full((b,), 1 / n, dtype=torch.float64))
    off = w[~torch.eye(b, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, (n - 1) / (n * (b - 1))))


@pytest.mark.parametrize("sizes", [(6,), (1,) * 6, (2, 4), (3, 1, 2)])
def test_grouped_decomposition_sums_to_the_kl_and_splits_the_tc(sizes):
    z, mu, logvar = _posterior()
    grouped = grouped_kl_decomposition(z, mu, logvar, sizes, N, "hfvae")
    plain = kl_decomposition(z, mu, logvar, N, "hfvae")
    mc_kl = (Normal(mu, torch.exp(0.5 * logvar)).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    total = (
        grouped["index_code_mi"] + grouped["tc_between_groups"] + grouped["tc_within_groups"] + grouped["dimwise_kl"]
    )
    torch.testing.assert_close(total, mc_kl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grouped["tc_between_groups"] + grouped["tc_within_groups"], plain["total_correlation"])
    if len(sizes) == 1:
        assert grouped["tc_between_groups"].abs() < 1e-12
    if max(sizes) == 1:
        assert grouped["tc_within_groups"].abs() < 1e-12


def test_hfvae_with_one_group_is_beta_tcvae():
    x = _batches()()
    hfvae = make_objective("hfvae", {"alpha": 1.5, "beta": 9.0, "gamma": 4.0}, N, options={"group_sizes": [5]})
    tcvae = make_objective("beta_tcvae", {"alpha": 1.5, "beta": 4.0, "gamma": 1.0}, N, estimator="hfvae")
    torch.manual_seed(0)
    model = hfvae.build_model(5, 1, "code")
    a = hfvae.forward_terms(model, x, 0, torch.Generator().manual_seed(3), "fp32")
    b = tcvae.forward_terms(model, x, 0, torch.Generator().manual_seed(3), "fp32")
    torch.testing.assert_close(a["loss"], b["loss"])
    torch.testing.assert_close(a["tc_within_groups"], b["total_correlation"])


def test_hfvae_group_sizes_must_partition_the_latents():
    with pytest.raises(ValueError, match=r"variant_options\.group_sizes: \[2, 2\] sums to 4, not latent_dim 5"):
        make_objective("hfvae", {}, N, options={"group_sizes": [2, 2]}, latent_dim=5)
    with pytest.raises(ValueError, match=r"variant_options\.group_sizes"):
        make_objective("hfvae", {}, N, options={"group_sizes": [0, 5]})


# FactorVAE --------------------------------------------------------------------------------


def test_permute_dims_shuffles_each_column_independently():
    z = torch.arange(200.0).view(50, 4) + torch.tensor([0.0, 1000.0, 2000.0, 3000.0])
    p = permute_dims(z, torch.Generator().manual_seed(0))
    for j in range(4):
        assert sorted(p[:, j].tolist()) == sorted(z[:, j].tolist())
    rows = (p - torch.tensor([0.0, 1000.0, 2000.0, 3000.0])).div(4).floor()
    assert not all(torch.equal(rows[:, 0], rows[:, j]) for j in range(1, 4))


def test_factor_vae_discriminator_and_optimisers_are_the_papers():
    objective = make_objective("factor_vae", {}, N)
    model = objective.build_model(10, 1, "code")
    linears = [m for m in model.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 1000)] + [(1000, 1000)] * 5 + [(1000, 2)]
    assert all(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in model.discriminator.net[1:-1:2])
    opts = objective.make_optimizers(model, 1e-4)
    assert opts["discriminator"].defaults["lr"] == 1e-4 and opts["discriminator"].defaults["betas"] == (0.5, 0.9)
    vae = {id(p) for p in opts["vae"].param_groups[0]["params"]}
    assert vae.isdisjoint({id(p) for p in model.discriminator.parameters()})


def test_factor_vae_step_updates_both_without_cross_gradients():
    objective = make_objective("factor_vae", {"gamma": 10}, N)
    torch.manual_seed(0)
    model = objective.build_model(5, 1, "code")
    opts = objective.make_optimizers(model, 1e-3)
    x = _batches()()
    terms = objective.forward_terms(model, x, 0, torch.Generator().manual_seed(0), "fp32", x_other=_batches(seed=1)())
    # The discriminator loss sees detached latents: no gradient reaches the encoder.
    grads = torch.autograd.grad(terms["discriminator_loss"], list(model.encoder.parameters()), allow_unused=True)
    assert all(g is None for g in grads)
    assert 0.0 <= terms["discriminator_accuracy"].item() <= 1.0
    before_d = [p.clone() for p in model.discriminator.parameters()]
    before_e = [p.clone() for p in model.encoder.parameters()]
    objective.train_step(model, opts, _batches(seed=2), 0, torch.Generator().manual_seed(0), "fp32")
    assert any(not torch.equal(a, b) for a, b in zip(before_d, model.discriminator.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_e, model.encoder.parameters(), strict=True))


# DIP-VAE ----------------------------------------------------------------------------------


def test_dip_covariances_and_penalties():
    _, mu, logvar = _posterior(b=40, d=4)
    cov = batch_covariance(mu)
    np.testing.assert_allclose(cov.numpy(), np.cov(mu.numpy().T, bias=True), rtol=1e-10)
    offdiag, diag = dip_penalties(cov)
    c = cov.numpy()
    assert offdiag.item() == pytest.approx(sum(c[i, j] ** 2 for i in range(4) for j in range(4) if i != j))
    assert diag.item() == pytest.approx(sum((c[i, i] - 1) ** 2 for i in range(4)))
    dip2 = make_objective("dip_vae_ii", {}, N).covariance(mu, logvar)
    np.testing.assert_allclose((dip2 - cov).numpy(), np.diag(logvar.exp().mean(0).numpy()), atol=1e-12)


def test_dip_defaults_follow_disentanglement_lib():
    i = make_objective("dip_vae_i", {}, N).weights_at(0)
    ii = make_objective("dip_vae_ii", {}, N).weights_at(0)
    assert i["lambda_d"] == 10 * i["lambda_od"] and ii["lambda_d"] == ii["lambda_od"]


# JointVAE ---------------------------------------------------------------------------------


def test_categorical_kl_to_uniform_matches_torch():
    logits = torch.randn(7, 5, dtype=torch.float64)
    expected = kl_divergence(
        Categorical(logits=logits), Categorical(probs=torch.full((7, 5), 0.2, dtype=torch.float64))
    )
    torch.testing.assert_close(kl_categorical_to_uniform(logits).double(), expected, rtol=1e-5, atol=1e-6)
    assert kl_categorical_to_uniform(torch.tensor([[50.0, 0.0, 0.0]])).item() == pytest.approx(math.log(3), abs=1e-6)


def test_discrete_capacity_is_capped_at_the_maximum_entropy():
    objective = make_objective(
        "joint_vae",
        {"capacity_discrete": {"schedule": "linear", "end": 10.0, "end_step": 100}},
        N,
        options={"discrete_sizes": [3, 4]},
    )
    assert objective.weights_at(10)["capacity_discrete"] == pytest.approx(1.0)
    assert objective.weights_at(100)["capacity_discrete"] == pytest.approx(math.log(3) + math.log(4))


def test_gumbel_softmax_and_one_hot_evaluation():
    logits = torch.tensor([[2.0, 0.0, -1.0]]).repeat(4000, 1)
    y = gumbel_softmax(logits, 0.05, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y.sum(1), torch.ones(4000))
    freq = torch.bincount(y.argmax(1), minlength=3).float() / 4000
    torch.testing.assert_close(freq, torch.softmax(logits[0], 0), atol=0.03, rtol=0)
    objective = make_objective("joint_vae", {}, N, options={"discrete_sizes": [3]})
    model = objective.build_model(4, 1, "code").eval()
    x = _batches(n=8)()
    code = model.representation(x)
    assert code.shape == (8, 7) and set(code[:, 4:].sum(1).tolist()) == {1.0}
    assert set(code[:, 4:].unique().tolist()) <= {0.0, 1.0}


def test_joint_vae_loss_formula():
    objective = make_objective("joint_vae", {"gamma": 30}, N)
    model = objective.build_model(4, 1, "code")
    terms = objective.forward_terms(model, _batches()(), 1000, torch.Generator().manual_seed(0), "fp32")
    expected = (
        terms["recon"]
        + 30 * (terms["kl_continuous"] - terms["capacity_continuous"]).abs()
        + 30 * (terms["kl_discrete"] - terms["capacity_discrete"]).abs()
    )
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["kl"], terms["kl_continuous"] + terms["kl_discrete"])


# Ladder VAE -------------------------------------------------------------------------------


def test_precision_weighted_merge_is_the_normalised_product_of_gaussians():
    mu_a, lv_a = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([0.2, -0.5], dtype=torch.float64)
    mu_b, lv_b = torch.tensor([1.5, 0.4], dtype=torch.float64), torch.tensor([-1.0, 0.7], dtype=torch.float64)
    mu, lv = precision_weighted_merge(mu_a, lv_a, mu_b, lv_b)
    xs = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]

    def log_n(x, m, v):
        return Normal(m, torch.exp(0.5 * v)).log_prob(x)

    gap = log_n(xs, mu_a, lv_a) + log_n(xs, mu_b, lv_b) - log_n(xs, mu, lv)
    torch.testing.assert_close(gap, gap[:1].expand_as(gap))  # constant in x: same shape of density


def test_gaussian_kl_keeps_its_half():
    mu_q, lv_q, mu_p, lv_p = (torch.randn(5, 3, dtype=torch.float64) for _ in range(4))
    expected = kl_divergence(Normal(mu_q, torch.exp(0.5 * lv_q)), Normal(mu_p, torch.exp(0.5 * lv_p)))
    torch.testing.assert_close(kl_gaussians(mu_q, lv_q, mu_p, lv_p), expected)


def test_ladder_reports_one_kl_per_layer_summing_to_the_kl():
    objective = make_objective("ladder_vae", {}, N, options={"num_layers": 3, "layer_dims": [6, 4, 2]})
    model = objective.build_model(10, 1, "code")
    terms = objective.forward_terms(model, _batches()(), 0, torch.Generator().manual_seed(0), "fp32")
    layers = [terms[f"kl_layer_{i}"] for i in (1, 2, 3)]
    torch.testing.assert_close(terms["kl"], sum(layers))
    assert all(kl.item() >= 0 for kl in layers)
    assert model.representation(_batches(n=5)()).shape == (5, 12)
    assert model.traverse(_batches(n=1)()).shape == (12 * 9, 1, 64, 64)
    with pytest.raises(ValueError, match=r"variant_options\.layer_dims: 2 sizes for num_layers 3"):
        make_objective("ladder_vae", {}, N, options={"num_layers": 3, "layer_dims": [4, 4]})


# IWAE -------------------------------------------------------------------------------------


def test_iwae_with_one_sample_is_the_single_sample_elbo():
    objective = make_objective("iwae", {}, N, options={"num_samples": 1})
    torch.manual_seed(0)
    model = objective.build_model(4, 1, "code")
    x = _batches()()
    terms = objective.forward_terms(model, x, 0, torch.Generator().manual_seed(5), "fp32")
    # The same draw through the plain ELBO: −recon − (log q(z|x) − log p(z)).
    vae = make_objective("vae", {}, N, estimator="mws")
    elbo_terms = vae.forward_terms(model, x, 0, torch.Generator().manual_seed(5), "fp32")
    mc_kl = elbo_terms["index_code_mi"] + elbo_terms["total_correlation"] + elbo_terms["dimwise_kl"]
    torch.testing.assert_close(terms["iwae_bound"], -(elbo_terms["recon"] + mc_kl), rtol=1e-5, atol=1e-3)
    assert terms["effective_sample_size"].item() == pytest.approx(1.0)


def test_iwae_bound_tightens_with_k_and_ess_is_in_range():
    torch.manual_seed(0)
    model = make_objective("iwae", {}, N).build_model(4, 1, "code")
    x = _batches(n=16)()
    bounds = {}
    with torch.no_grad():
        for k in (1, 5, 50):
            objective = make_objective("iwae", {}, N, options={"num_samples": k})
            runs = [objective.forward_terms(model, x, 0, torch.Generator().manual_seed(s), "fp32") for s in range(8)]
            bounds[k] = np.mean([r["iwae_bound"].item() for r in runs])
            assert all(1.0 <= r["effective_sample_size"].item() <= k + 1e-6 for r in runs)
    assert bounds[1] < bounds[5] < bounds[50]
    equal = iwae_terms(torch.zeros(7, 3))
    assert equal["effective_sample_size"].item() == pytest.approx(7.0)
    assert equal["iwae_bound"].item() == pytest.approx(0.0, abs=1e-6)
