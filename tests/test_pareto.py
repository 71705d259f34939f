import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import nondominated_ranks, pareto_front, pareto_mask, pareto_rank


def _brute_force_front(points, modes):
    sign = np.array([1 if m == "min" else -1 for m in modes])
    c = points * sign
    front = []
    for i, p in enumerate(c):
        dominated = any(np.all(q <= p) and np.any(q < p) for j, q in enumerate(c) if j != i)
        front.append(not dominated)
    return np.array(front)


def _brute_force_ranks(points, modes):
    ranks = np.zeros(len(points), dtype=int)
    left = list(range(len(points)))
    rank = 1
    while left:
        sub = _brute_force_front(points[left], modes)
        for k, on in zip(list(left), sub, strict=True):
            if on:
                ranks[k] = rank
        left = [k for k, on in zip(left, sub, strict=True) if not on]
        rank += 1
    return ranks


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_ranks_match_brute_force_with_ties_and_duplicates(m, seed):
    rng = np.random.default_rng(seed)
    points = rng.integers(0, 6, size=(60, m)).astype(float)  # coarse grid: many ties
    points = np.concatenate([points, points[:10]])  # exact duplicates
    for modes in itertools.islice(itertools.product(["min", "max"], repeat=m), 4):
        np.testing.assert_array_equal(pareto_mask(points, modes), _brute_force_front(points, modes))
        np.testing.assert_array_equal(nondominated_ranks(points, modes), _brute_force_ranks(points, modes))


def test_missing_values_are_never_on_the_front():
    points = np.array([[1.0, 1.0], [np.nan, 0.0], [0.5, 2.0]])
    ranks = nondominated_ranks(points, ["min", "min"])
    assert np.isnan(ranks[1]) and ranks[0] == 1 and ranks[2] == 1


def test_dataframe_front_with_senses_and_groups():
    df = pd.DataFrame(
        {
            "variant": ["a", "a", "a", "b", "b"],
            "recon": [10.0, 20.0, 30.0, 25.0, 40.0],
            "mig": [0.1, 0.3, 0.2, 0.5, 0.4],
        }
    )
    front = pareto_front(df, {"recon": "min", "mig": "max"})
    assert front.index.tolist() == [0, 1, 3]
    by_variant = pareto_rank(df, [("recon", "min"), ("mig", "max")], by="variant")
    assert by_variant.tolist() == [1, 1, 2, 1, 2]
    with pytest.raises(KeyError, match="dci"):
        pareto_front(df, {"dci": "max"})
    with pytest.raises(ValueError, match="mode"):
        pareto_front(df, {"recon": "lowest"})


def _brute_force_hypervolume(points, reference):
    """Count the unit cells of an integer grid that some point dominates (minimisation)."""
    m = points.shape[1]
    cells = np.stack(np.meshgrid(*[np.arange(int(r)) for r in reference], indexing="ij"), -1).reshape(-1, m)
    dominated = (points[None, :, :] <= cells[:, None, :]).all(axis=2).any(axis=1)
    return float(dominated.sum())


@pytest.mark.parametrize("m", [2, 3, 4])
@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_against_brute_force_and_optuna(m, seed):
    from optuna._hypervolume import compute_hypervolume

    from analysis.pareto import hypervolume

    rng = np.random.default_rng(seed)
    points = rng.integers(0, 7, size=(25, m)).astype(float)
    points = np.concatenate([points, points[:5]])  # duplicates
    reference = np.full(m, 8.0)
    ours = hypervolume(points, ["min"] * m, reference)
    assert ours == pytest.approx(_brute_force_hypervolume(points, reference))
    continuous = rng.random((40, m))
    expected = compute_hypervolume(continuous, np.full(m, 1.1))
    assert hypervolume(continuous, ["min"] * m, np.full(m, 1.1)) == pytest.approx(expected, rel=1e-10)


def test_hypervolume_senses_reference_and_table_api():
    from analysis.pareto import hypervolume, hypervolume_of

    # Maximising y is minimising -y: the same boxes.
    points = np.array([[1.0, 3.0], [2.0, 5.0], [4.0, 6.0]])
    assert hypervolume(points, ["min", "max"], [5.0, 0.0]) == pytest.approx(
        hypervolume(points * [1, -1], ["min", "min"], [5.0, 0.0])
    )
    assert hypervolume(points, ["min", "max"], [5.0, 0.0]) == pytest.approx(1 * 3 + 2 * 5 + 1 * 6)
    assert hypervolume(points, ["min", "max"], [0.5, 0.0]) == 0.0  # nothing better than the reference
    df = pd.DataFrame({"variant": ["a", "a", "b"], "recon": [1.0, 2.0, 4.0], "mig": [3.0, 5.0, 6.0]})
    per_variant = hypervolume_of(df, {"recon": "min", "mig": "max"}, {"recon": 5.0, "mig": 0.0}, by="variant")
    assert per_variant.to_dict() == pytest.approx({"a": 1 * 3 + 3 * 5, "b": 6.0})
    with pytest.raises(KeyError, match="mig"):
        hypervolume_of(df, {"recon": "min", "mig": "max"}, {"recon": 5.0})
