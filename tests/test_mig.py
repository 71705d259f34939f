import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from trainers.data import ProceduralDSprites
from trainers.metrics import compute_mig, mig_details, mig_from_codes
from trainers.metrics.information import discretize, entropy, mutual_information, mutual_information_matrix
from trainers.metrics.sampling import seeded_codes


def _factors(n=10_000, seed=0):
    sizes = np.array(ProceduralDSprites.factor_sizes)
    return np.random.default_rng(seed).integers(0, sizes, size=(n, len(sizes)))


def test_discrete_information_matches_sklearn_and_closed_forms():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 7, 5000), rng.integers(0, 4, 5000)
    c = (a + rng.integers(0, 2, 5000)) % 7
    for x, y in ((a, b), (a, c), (c, c)):
        assert mutual_information(x, y) == pytest.approx(mutual_info_score(x, y), rel=1e-10, abs=1e-12)
    assert entropy(np.repeat(np.arange(8), 10)) == pytest.approx(np.log(8))
    assert mutual_information(a, a) == pytest.approx(entropy(a))


def test_discretize_uses_equal_width_bins_over_the_range():
    # Range [0, 1] (set by the end points) in 20 bins of width 0.05; midpoints land in order.
    codes = np.concatenate([[0.0], (np.arange(20) + 0.5) / 20, [1.0]])[:, None] * 3.0 - 1.0
    labels = discretize(codes, 20)[:, 0]
    np.testing.assert_array_equal(labels, [1, *range(1, 21), 20])


def test_a_perfect_axis_aligned_code_scores_near_one():
    f = _factors()
    codes = f.astype(float) + np.random.default_rng(0).normal(0, 0.01, f.shape)
    codes = np.concatenate([codes, np.random.default_rng(1).normal(size=(len(f), 5))], axis=1)
    assert mig_from_codes(codes, f)["mig"] > 0.85


def test_noise_scores_near_zero_and_entangled_codes_score_low():
    f = _factors()
    noise = np.random.default_rng(2).normal(size=(len(f), 10))
    assert mig_from_codes(noise, f)["mig"] < 0.02
    # Each factor copied into two latents: both carry all of it, the gap vanishes.
    split = np.concatenate([f, f], axis=1).astype(float)
    assert mig_from_codes(split, f)["mig"] < 0.01
    # A rotation mixes factors across latents: worse than the aligned code.
    aligned = f.astype(float) / np.array(ProceduralDSprites.factor_sizes)
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(5, 5)))[0]
    assert mig_from_codes(aligned @ rotation, f)["mig"] < 0.5 * mig_from_codes(aligned, f)["mig"]


def test_mig_is_invariant_to_permuting_and_rescaling_latents():
    f = _factors(4000)
    codes = f.astype(float) + np.random.default_rng(4).normal(0, 0.3, f.shape)
    base = mig_from_codes(codes, f)["mig"]
    permuted = codes[:, [3, 0, 4, 1, 2]] * np.array([2.0, -0.5, 10.0, 1.0, 3.0]) + 7.0
    assert mig_from_codes(permuted, f)["mig"] == pytest.approx(base, abs=1e-12)


def test_constant_factor_is_an_error():
    f = _factors(100)
    f[:, 0] = 0
    with pytest.raises(ValueError, match="constant factor"):
        mig_from_codes(np.random.default_rng(0).normal(size=(100, 3)), f)


def test_sampling_wrapper_encodes_rendered_images_deterministically():
    data = ProceduralDSprites()

    def centroid_code(x):
        # A hand-made representation: the sprite's centroid is posX/posY, its area the scale.
        h = torch.arange(64, dtype=torch.float32)
        mass = x[:, 0].sum((1, 2))
        cx = (x[:, 0].sum(1) * h).sum(1) / mass
        cy = (x[:, 0].sum(2) * h).sum(1) / mass
        return torch.stack([cx, cy, mass, torch.randn(len(x))], 1)

    torch.manual_seed(0)
    a = compute_mig(centroid_code, data, seed=5, num_points=3000)["mig"]
    torch.manual_seed(0)
    b = compute_mig(centroid_code, data, seed=5, num_points=3000)["mig"]
    assert a == b
    # posX and posY are each captured by one latent: 2 of 5 factors near their ceiling.
    assert 0.2 < a < 0.6


def test_mig_details_are_the_matrix_and_gaps_the_score_is_computed_from():
    f = _factors(4000)
    rng = np.random.default_rng(6)
    codes = np.concatenate([f[:, [3, 4, 1]] + rng.normal(0, 0.3, (len(f), 3)), rng.normal(size=(len(f), 3))], 1)
    details = mig_details(codes, f)
    # Independently: the binned codes' MI with sklearn, entropies as MI of a factor with itself.
    binned = discretize(codes, 20)
    expected = np.array([[mutual_info_score(binned[:, i], f[:, k]) for k in range(5)] for i in range(6)])
    np.testing.assert_allclose(details.matrix, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(details.matrix, mutual_information_matrix(binned, f), rtol=0, atol=0)
    np.testing.assert_allclose(details.entropy, [mutual_info_score(f[:, k], f[:, k]) for k in range(5)], rtol=1e-10)
    for k in range(5):  # the gap between the two most informative latents, over the entropy
        first, second = sorted(expected[:, k])[::-1][:2]
        assert details.per_factor[k] == pytest.approx((first - second) / details.entropy[k], rel=1e-9)
    assert details.per_factor.mean() == pytest.approx(mig_from_codes(codes, f)["mig"], rel=1e-12)
    assert details.per_factor[3] > 0.5 and details.per_factor[0] < 0.05  # posX on its latent; shape on none


def test_compute_mig_fills_the_evaluations_details_and_no_spec_sees_the_argument():
    from trainers.config import EvalConfig
    from trainers.metrics import METRICS

    data = ProceduralDSprites()

    def representation(x):
        h = torch.arange(64, dtype=torch.float32)
        mass = x[:, 0].sum((1, 2))
        return torch.stack([(x[:, 0].sum(1) * h).sum(1) / mass, (x[:, 0].sum(2) * h).sum(1) / mass, mass], 1)

    kept = {}
    score = compute_mig(representation, data, seed=3, num_points=1500, details=kept)
    assert score == compute_mig(representation, data, seed=3, num_points=1500)  # the value as before: {"mig": ...}
    assert set(kept) == {"matrix", "entropy", "mig_per_factor", "factor_names"}
    assert kept["matrix"].shape == (3, 5) and list(kept["factor_names"]) == list(data.factor_names)
    codes, factors = seeded_codes(representation, data, 3, 1500)
    np.testing.assert_array_equal(kept["matrix"], mutual_information_matrix(discretize(codes, 20), factors))
    assert kept["mig_per_factor"].mean() == pytest.approx(score["mig"], rel=1e-12)
    assert METRICS["mig"].details and METRICS["mig"].options == {"num_points": 10_000, "num_bins": 20}
    with pytest.raises(ValueError, match="not an option of mig"):
        EvalConfig(metric_options={"mig": {"details": {}}})
