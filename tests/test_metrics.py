"""Known answers for every metric on synthetic codes built from the factors.

The ground-truth source renders each factor row as the observation itself, so a
"representation" is any function of the factors: a perfect axis-aligned code, a
rotated one, one that splits a factor over two latents, pure noise, or a perfect
code with nuisance dimensions.  Each metric must rank them as its paper says.
"""

import numpy as np
import pytest
import scipy.linalg
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics import METRICS
from trainers.metrics.beta_vae_score import compute_beta_vae_score
from trainers.metrics.factor_vae_score import compute_factor_vae_score
from trainers.metrics.irs import compute_irs
from trainers.metrics.mig_sampled import compute_mig_sampled
from trainers.metrics.modularity_explicitness import compute_modularity_explicitness
from trainers.metrics.sap import compute_sap
from trainers.metrics.unsupervised import (
    compute_active_units,
    compute_unsupervised,
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
)


class FactorsAsObservations(GroundTruthData):
    factor_names = ("a", "b", "c", "d")
    factor_sizes = (3, 6, 10, 8)
    observation_shape = (1, 1, 4)

    def observations(self, factors, device="cpu", generator=None):
        return torch.as_tensor(factors, dtype=torch.float64).to(device)


class EqualFactors(FactorsAsObservations):
    factor_sizes = (8, 8, 8, 8)


DATA = FactorsAsObservations()
SIZES = torch.tensor(DATA.factor_sizes, dtype=torch.float64)
# 45° rotations of (a, b) and of (c, d): each latent carries two factors equally.
_R = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
ROTATION = torch.as_tensor(scipy.linalg.block_diag(_R, _R))


def _noise(x, seed, d):
    g = torch.Generator().manual_seed(seed + int(x.sum().item() * 1000) % 100_000)
    return torch.randn(len(x), d, generator=g, dtype=torch.float64)


def perfect(x):
    return x / SIZES + 0.01 * _noise(x, 0, 4)


def rotated(x):
    return perfect(x) @ ROTATION


def split(x):
    # Factor a lives in two latents equally; the others are axis-aligned.
    base = perfect(x)
    return torch.cat([base[:, :1] + 0.01 * _noise(x, 1, 1), base], 1)


def noise(x):
    return _noise(x, 2, 4)


def nuisance(x):
    return torch.cat([perfect(x), _noise(x, 3, 3)], 1)


SMALL = {"num_train": 1500, "num_eval": 800}


def test_beta_vae_score_ranks_codes():
    score = {f.__name__: compute_beta_vae_score(f, DATA, seed=0, batch_size=16, **SMALL)["beta_vae_score"]
             for f in (perfect, rotated, noise, nuisance)}  # fmt: skip
    assert score["perfect"] > 0.95 and score["nuisance"] > 0.9
    assert score["noise"] < 0.4
    assert score["perfect"] >= score["rotated"] > score["noise"]


def test_factor_vae_score_ranks_codes_and_ignores_scale_and_order():
    def run(f):
        return compute_factor_vae_score(f, DATA, seed=0, batch_size=16, num_variance_estimate=2000, **SMALL)

    perfect_score = run(perfect)
    assert perfect_score["factor_vae_score"] > 0.95 and perfect_score["factor_vae_active_dims"] == 4
    assert run(noise)["factor_vae_score"] < 0.45
    assert run(rotated)["factor_vae_score"] < perfect_score["factor_vae_score"]
    rescaled = run(lambda x: perfect(x)[:, [2, 0, 3, 1]] * torch.tensor([5.0, 0.5, 2.0, 9.0], dtype=torch.float64))
    assert rescaled["factor_vae_score"] == pytest.approx(perfect_score["factor_vae_score"], abs=0.02)
    # A collapsed latent (std < 0.05) is dropped from the vote.
    collapsed = run(lambda x: torch.cat([perfect(x), 0.001 * _noise(x, 4, 1)], 1))
    assert collapsed["factor_vae_active_dims"] == 4


def test_sap_rewards_one_latent_per_factor():
    run = lambda f: compute_sap(f, DATA, seed=0, num_train=1500, num_test=800)  # noqa: E731
    p, s, n = run(perfect), run(split), run(noise)
    # A 1-D linear SVM cannot isolate middle classes, so discrete SAP is small even for a
    # perfect code (Locatello et al. 2019 report SAP within about 0-0.2).
    assert p["sap_continuous"] > 0.8 and p["sap_discrete"] > 0.1 and p["sap_discrete"] > 3 * n["sap_discrete"]
    # Factor a is predicted equally well by two latents: its gap, and the mean, drop.
    assert s["sap_continuous"] < p["sap_continuous"] - 0.15
    assert n["sap_continuous"] < 0.05 and n["sap_discrete"] < 0.03
    permuted = run(lambda x: perfect(x)[:, [3, 1, 0, 2]])
    assert permuted["sap_continuous"] == pytest.approx(p["sap_continuous"], abs=1e-9)


def test_modularity_and_explicitness():
    run = lambda f: compute_modularity_explicitness(f, DATA, seed=0, num_train=2000, num_test=1000)  # noqa: E731
    p, s, n = run(perfect), run(split), run(noise)
    assert p["modularity"] > 0.95 and s["modularity"] > 0.95  # each latent still has one factor
    # With equal factors each rotated latent holds two factors' information equally:
    # δ = (2x² − x²)/(3x²) = 1/3, so modularity = 2/3.
    equal = EqualFactors()
    r = compute_modularity_explicitness(lambda x: (x / 8.0) @ ROTATION, equal, seed=0, num_train=4000, num_test=500)
    assert r["modularity"] == pytest.approx(2 / 3, abs=0.05)
    assert p["explicitness"] > 0.95 and 0.4 < n["explicitness"] < 0.6


def test_irs_ranks_codes():
    run = lambda f: compute_irs(f, DATA, seed=0, num_points=3000)["irs"]  # noqa: E731
    p, r, n = run(perfect), run(rotated), run(noise)
    # Noise still scores ~0.3: its 99% within-group deviation is below its maximum deviation.
    assert p > 0.9 and n < 0.4 and p > r + 0.2


def test_unsupervised_closed_forms():
    rho = 0.6
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(1 - rho**2))
    product = cov * np.diag(cov)[:, None]
    expected = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(product)).real
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(expected)
    skewed = np.array([[4.0, 1.2, 0.3], [1.2, 1.0, 0.1], [0.3, 0.1, 0.5]])
    expected = 2 * np.trace(skewed) - 2 * np.trace(scipy.linalg.sqrtm(skewed * np.diag(skewed)[:, None])).real
    assert gaussian_wasserstein_correlation(skewed) == pytest.approx(expected)
    assert gaussian_total_correlation(np.diag([1.0, 2.0, 3.0])) == pytest.approx(0.0)


def test_unsupervised_scores_and_active_units():
    independent = compute_unsupervised(noise, DATA, seed=0, num_points=4000)
    correlated = compute_unsupervised(lambda x: noise(x) @ torch.tensor(
        [[1.0, 0.9, 0, 0], [0, 1.0, 0.5, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]], dtype=torch.float64), DATA, seed=0,
        num_points=4000)  # fmt: skip
    assert independent["gaussian_total_correlation"] < 0.01 < correlated["gaussian_total_correlation"]
    assert independent["gaussian_wasserstein_correlation"] < correlated["gaussian_wasserstein_correlation"]
    assert independent["mutual_info_score"] < correlated["mutual_info_score"]
    units = compute_active_units(lambda x: torch.cat([perfect(x), 0.01 * _noise(x, 5, 2)], 1), DATA, 0, 2000)
    assert units["active_units"] == 4  # factor codes vary (var > 0.01); the two near-constant ones do not


def test_mig_sampled_ranks_codes():
    def posterior(code, std):
        return lambda x: (code(x), torch.full((len(x), code(x).shape[1]), 2 * np.log(std), dtype=torch.float64))

    p = compute_mig_sampled(posterior(perfect, 0.02), DATA, seed=0, num_points=1500)["mig_sampled"]
    n = compute_mig_sampled(posterior(noise, 0.5), DATA, seed=0, num_points=1500)["mig_sampled"]
    s = compute_mig_sampled(posterior(split, 0.02), DATA, seed=0, num_points=1500)["mig_sampled"]
    assert p > 0.5 and n < 0.05 and s < p


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_is_deterministic_for_a_seed(name):
    metric = METRICS[name]
    if metric.representation == "posterior":
        rep = lambda x: (perfect(x), torch.full((len(x), 4), -4.0, dtype=torch.float64))  # noqa: E731
    else:
        rep = perfect
    options = {
        "mig": {"num_points": 500},
        "mig_sampled": {"num_points": 300},
        "beta_vae_score": {"num_train": 200, "num_eval": 100, "batch_size": 8},
        "factor_vae_score": {"num_train": 200, "num_eval": 100, "batch_size": 8, "num_variance_estimate": 300},
        "sap": {"num_train": 300, "num_test": 200},
        "dci": {"num_train": 300, "num_test": 200},
        "dci_fast": {"num_train": 300, "num_test": 200},
        "modularity_explicitness": {"num_train": 300, "num_test": 200},
        "irs": {"num_points": 500},
        "unsupervised": {"num_points": 500},
        "active_units": {"num_points": 500},
    }[name]
    a = metric.compute(rep, DATA, seed=7, **options)
    b = metric.compute(rep, DATA, seed=7, **options)
    assert a == b and set(a) == set(metric.values)


def test_mig_sampled_entropies_match_brute_force():
    from trainers.distributions import gaussian_log_density
    from trainers.metrics.mig_sampled import sampled_mutual_information

    n = 300
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(n, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.3 - 1
    factors = np.random.default_rng(0).integers(0, [3, 4], size=(n, 2))
    mi = sampled_mutual_information(mu, logvar, factors, torch.Generator().manual_seed(1), chunk=64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(
        mu.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    expected = np.zeros((3, 2))
    for j in range(3):
        dens = np.exp(gaussian_log_density(z[:, j, None], mu[None, :, j], logvar[None, :, j]).numpy())
        h = -np.mean(np.log(dens.mean(1)))
        for k in range(2):
            same = factors[:, k][None, :] == factors[:, k][:, None]
            h_cond = -np.mean(np.log((dens * same).sum(1) / same.sum(1)))
            expected[j, k] = h - h_cond
    # The densities are computed in float32 (the estimator is memory-bound), sums in float64.
    np.testing.assert_allclose(mi, expected, atol=1e-5)


def test_dci_closed_forms():
    from trainers.metrics.dci import disentanglement_completeness

    assert disentanglement_completeness(np.eye(4)) == pytest.approx((1.0, 1.0))
    assert disentanglement_completeness(np.ones((4, 4))) == pytest.approx((0.0, 0.0), abs=1e-9)
    # One latent explains every factor: that latent is not disentangled, each factor is complete.
    one = np.zeros((3, 3))
    one[0] = 1.0
    d, c = disentanglement_completeness(one)
    assert d == pytest.approx(0.0, abs=1e-6) and c == pytest.approx(1.0, abs=1e-6)
    # Each factor split evenly over two latents (latents 2k, 2k+1): D = 1, C = 1 - log 2 / log 4.
    split = np.kron(np.eye(2), np.ones((2, 1)))
    d, c = disentanglement_completeness(split)
    assert d == pytest.approx(1.0) and c == pytest.approx(0.5)


def test_gbt_matches_scikit_learn():
    from sklearn.ensemble import GradientBoostingClassifier

    from trainers.metrics.gbt import GradientBoostedTrees

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(300, 4)), 1)  # few distinct values: the bins are exact
    for y in ((x[:, 0] + 0.5 * x[:, 1] ** 2 > 0.3).astype(int), np.digitize(x[:, 0] + x[:, 2], [-1, 0, 1])):
        ours = GradientBoostedTrees().fit(x, y)
        ref = GradientBoostingClassifier(random_state=0).fit(x, y)
        np.testing.assert_allclose(ours.feature_importances, ref.feature_importances_, atol=0.02)
        assert np.mean(ours.predict(x) == ref.predict(x)) > 0.98


def test_gbt_splits_exactly_as_scikit_learn_on_continuous_features():
    from sklearn.ensemble import GradientBoostingClassifier

    from trainers.metrics.gbt import GradientBoostedTrees

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))  # 400 distinct values per feature: more than 256 quantile bins
    y = np.digitize(x[:, 0] + 0.3 * x[:, 1], [-0.5, 0.5])
    ours = GradientBoostedTrees(n_estimators=20).fit(x, y)
    ref = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    np.testing.assert_allclose(ours.feature_importances, ref.feature_importances_, atol=0.01)
    centred = lambda raw: raw - raw.mean(1, keepdims=True)  # noqa: E731  (softmax ignores a shift per row)
    np.testing.assert_allclose(centred(ours.decision(x)), centred(ref.decision_function(x)), atol=1e-6)


def test_gbt_sorted_walk_grows_the_histogram_trees():
    from trainers.metrics.gbt import GradientBoostedTrees

    rng = np.random.default_rng(2)
    # Continuous, repeated and discrete features, and a copy of the first: every kind of bin
    # and of tie (the first stage's residuals take few values; a copy ties with its original).
    x = np.c_[rng.normal(size=(400, 2)), np.round(rng.normal(size=400), 1), rng.integers(0, 3, 400)]
    x = np.c_[x, x[:, 0]]
    for y in (np.digitize(x[:, 0] + 0.5 * x[:, 2] + 0.3 * x[:, 3], [-1, 0, 1]), (x[:, 1] > 0.2).astype(int)):
        searches = ("histogram", "sorted", "auto")
        fits = {s: GradientBoostedTrees(n_estimators=8, split_search=s).fit(x, y) for s in searches}
        reference = fits.pop("histogram")
        for fit in fits.values():
            for ours, theirs in zip(fit.stages, reference.stages, strict=True):
                np.testing.assert_array_equal(ours[0], theirs[0])  # split features
                np.testing.assert_array_equal(ours[1], theirs[1])  # split bins
                np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-9)  # leaf values
            np.testing.assert_allclose(fit.feature_importances, reference.feature_importances, rtol=1e-9)
        assert reference.feature_importances[4] == 0.0  # ties go to the lower feature


def test_reference_dci_of_a_perfect_code_is_one():
    from trainers.metrics.dci import dci_from_codes

    rng = np.random.default_rng(0)
    sizes = np.array([3, 6, 10])
    factors = np.stack([rng.integers(0, s, 500) for s in sizes], 1)
    code = np.tanh(3 * factors / sizes - 1)  # every latent a function of one factor
    values = dci_from_codes(code[:300], factors[:300], code[300:], factors[300:])
    for name in ("dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert values[name] == pytest.approx(1.0, abs=5e-4), name


def test_dci_ranks_codes():
    from trainers.metrics.dci import compute_dci

    run = lambda f: compute_dci(f, DATA, seed=0, num_train=600, num_test=300, importance="gbt_fast")  # noqa: E731
    p, r, s, n = run(perfect), run(rotated), run(split), run(noise)
    assert p["dci_disentanglement"] > 0.8 and p["dci_completeness"] > 0.8 and p["dci_informativeness"] > 0.8
    assert r["dci_disentanglement"] < p["dci_disentanglement"] - 0.2
    assert s["dci_completeness"] < p["dci_completeness"]  # factor a is spread over two latents
    assert n["dci_disentanglement"] < 0.2 and n["dci_informativeness"] < 0.5


def test_array_level_scores_and_the_prune_threshold_option():
    from trainers.metrics import METRICS
    from trainers.metrics.beta_vae_score import beta_vae_score_of
    from trainers.metrics.factor_vae_score import factor_vae_score_of

    assert METRICS["factor_vae_score"].options["prune_threshold"] == 0.05
    sizes = (4, 5, 6)

    def code(rows):  # each factor on its latent, factor 2's with a std (0.017) below the default threshold
        return np.stack([rows[:, 0], rows[:, 1], 0.01 * rows[:, 2]], 1).astype(np.float64)

    small = {"num_variance_estimate": 500, "num_train": 200, "num_eval": 100, "batch_size": 16}
    kept = factor_vae_score_of(code, sizes, prune_threshold=1e-6, **small)
    pruned = factor_vae_score_of(code, sizes, **small)
    assert kept["factor_vae_active_dims"] == 3 and pruned["factor_vae_active_dims"] == 2
    # Votes for a fixed factor 2 go to the least-varying active latent: only latent 2 is right,
    # and only when it is kept; factors 0 and 1 are always right.
    assert kept["factor_vae_score"] == pytest.approx(1.0)
    assert pruned["factor_vae_score"] == pytest.approx(2 / 3, abs=0.1)
    beta = beta_vae_score_of(code, sizes, num_train=200, num_eval=100, batch_size=16)
    assert set(beta) == {"beta_vae_score", "beta_vae_score_train"} and beta["beta_vae_score"] > 0.9


def test_metrics_run_on_the_trials_threads_and_give_them_back(monkeypatch):
    from trainers.config import TrainConfig
    from trainers.evaluation import compute_metric
    from trainers.metrics import Metric
    from trainers.metrics.threads import metric_threads

    before = torch.get_num_threads()
    seen = []

    def probe(representation, data, seed, device="cpu"):
        seen.append(torch.get_num_threads())
        return {"probe": 0.0}

    monkeypatch.setitem(METRICS, "probe", Metric(probe, "mean", ("probe",)))
    model = torch.nn.Module()
    model.representation = lambda x: x
    target = 2 if before != 2 else 1
    assert compute_metric("probe", model, DATA, TrainConfig(num_threads=target), torch.device("cpu")) == {"probe": 0.0}
    compute_metric("probe", model, DATA, TrainConfig(num_threads=0), torch.device("cpu"))  # 0: torch's own setting
    assert seen == [target, before] and torch.get_num_threads() == before
    with pytest.raises(RuntimeError), metric_threads(target):
        raise RuntimeError("a metric failed")
    assert torch.get_num_threads() == before
