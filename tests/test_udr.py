"""UDR (Duan et al. 2020) against scipy's Spearman, a loop-by-loop transcription of the
formula, and synthetic codes whose answer is known: permuted-and-flipped copies of the
same factors agree across seeds (UDR near 1), random rotations do not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from analysis.udr import spearman_matrix, udr_by_configuration, udr_pair, udr_scores

N, K = 1000, 4


def _factors(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1, 1, (N, K))


def _disentangled(f: np.ndarray, rng: np.random.Generator, inactive: int = 2) -> np.ndarray:
    """The factors permuted, flipped, slightly warped and noised, plus collapsed latents."""
    codes = f[:, rng.permutation(K)] * rng.choice([-1, 1], K)
    codes = np.tanh(1.5 * codes) + 0.05 * rng.normal(size=codes.shape)
    return np.concatenate([codes, 0.01 * rng.normal(size=(N, inactive))], 1)


def _entangled(f: np.ndarray, rng: np.random.Generator, inactive: int = 2) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(K, K)))
    codes = f @ q + 0.05 * rng.normal(size=(N, K))
    return np.concatenate([codes, 0.01 * rng.normal(size=(N, inactive))], 1)


def _kl(active: int = K, inactive: int = 2) -> np.ndarray:
    return np.array([2.0] * active + [0.001] * inactive)


def _udr_loops(a: np.ndarray, b: np.ndarray, kl_a: np.ndarray, kl_b: np.ndarray) -> float:
    """The formula written out with scipy's ρ and explicit loops."""
    ia = [i for i in range(a.shape[1]) if kl_a[i] > 0.01]
    ib = [j for j in range(b.shape[1]) if kl_b[j] > 0.01]
    r = [[abs(spearmanr(a[:, i], b[:, j]).statistic) for j in ib] for i in ia]
    col = [max(r[i][j] for i in range(len(ia))) ** 2 / sum(r[i][j] for i in range(len(ia))) for j in range(len(ib))]
    row = [max(r[i][j] for j in range(len(ib))) ** 2 / sum(r[i][j] for j in range(len(ib))) for i in range(len(ia))]
    return (sum(col) / len(col) + sum(row) / len(row)) / 2


def test_spearman_matrix_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (200, 3)).astype(float)  # many ties
    b = np.concatenate([rng.normal(size=(200, 2)), a[:, :1] ** 2], 1)
    expected = np.abs(spearmanr(a, b).statistic[:3, 3:])
    np.testing.assert_allclose(spearman_matrix(a, b), expected, atol=1e-12)


def test_constant_latent_correlates_zero():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(size=(50, 1)), np.zeros((50, 1))], 1)
    r = spearman_matrix(a, a)
    assert r[1].tolist() == [0.0, 0.0] and r[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_matches_the_formula_written_out(seed):
    rng = np.random.default_rng(seed)
    f = _factors(rng)
    a, b = _disentangled(f, rng), _entangled(f, rng)
    kl_a = _kl()
    kl_b = np.array([2.0, 0.5, 0.001, 3.0, 0.2, 0.001])  # different active sets on each side
    assert udr_pair(a, b, kl_a, kl_b) == pytest.approx(_udr_loops(a, b, kl_a, kl_b), abs=1e-12)


def test_disentangled_seeds_agree_and_rotations_do_not():
    rng = np.random.default_rng(3)
    f = _factors(rng)
    same = udr_pair(_disentangled(f, rng), _disentangled(f, rng), _kl(), _kl())
    rotated = udr_pair(_entangled(f, rng), _entangled(f, rng), _kl(), _kl())
    assert same > 0.9
    assert rotated < same - 0.3


def test_collapsed_latents_are_ignored_only_through_kl():
    rng = np.random.default_rng(4)
    f = _factors(rng)
    a, b = _disentangled(f, rng, inactive=0), _disentangled(f, rng, inactive=0)
    noisy_a = np.concatenate([a, rng.normal(size=(N, 3))], 1)  # three noise latents, KL ~ 0
    kl = np.array([2.0] * K + [0.0] * 3)
    assert udr_pair(noisy_a, b, kl, _kl(inactive=0)) == pytest.approx(udr_pair(a, b, _kl(inactive=0), _kl(inactive=0)))
    # Without the KL filter the noise latents are counted and lower the score.
    assert udr_pair(noisy_a, b) < udr_pair(a, b) - 0.05
    assert udr_pair(a, b, np.zeros(K), _kl(inactive=0)) == 0.0


def test_model_score_is_median_over_other_seeds():
    rng = np.random.default_rng(5)
    f = _factors(rng)
    codes = [_disentangled(f, rng), _disentangled(f, rng), _disentangled(f, rng), _entangled(f, rng)]
    kls = [_kl()] * 4
    scores = udr_scores(codes, kls)
    for i in range(4):
        others = [udr_pair(codes[i], codes[j], kls[i], kls[j]) for j in range(4) if j != i]
        assert scores[i] == pytest.approx(np.median(others))
    assert scores[:3].min() > scores[3]
    assert np.isnan(udr_scores(codes[:1])).all()


def test_by_configuration_groups_seeds_and_skips_singletons(tmp_path):
    rng = np.random.default_rng(6)
    f = _factors(rng)
    rows = []
    for config, make, seeds in (("good", _disentangled, 3), ("bad", _entangled, 3), ("alone", _disentangled, 1)):
        for seed in range(seeds):
            path = tmp_path / f"{config}-{seed}.npz"
            np.savez(path, mean=make(f, rng), kl=_kl())
            rows.append({"variant": "beta_vae", "beta.value": config, "seed": seed, "codes": str(path)})
    rows.append({"variant": "beta_vae", "beta.value": "good", "seed": 9, "codes": None})  # a failed trial
    df = pd.DataFrame(rows)
    udr = udr_by_configuration(df)
    good, bad = udr[df["beta.value"].eq("good") & df["codes"].notna()], udr[df["beta.value"].eq("bad")]
    assert good.notna().all() and bad.notna().all()
    assert good.min() > bad.max()
    assert np.isnan(udr[df["beta.value"].eq("alone")]).all() and np.isnan(udr.iloc[-1])
