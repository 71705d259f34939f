import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from analysis import metric_distributions, rank_correlations, variance_explained
from analysis.summaries import eta_squared


def _table(metric):
    rows = []
    for variant in ("beta_vae", "factor_vae"):
        for beta in (1.0, 4.0, 8.0):
            for seed in range(5):
                rows.append({"variant": variant, "beta.value": beta, "seed": seed, "status": "completed",
                             "beta.end_step": 100.0 if beta == 8.0 else np.nan,  # only some families have it
                             "mig": metric(variant, beta, seed)})  # fmt: skip
    rows.append({"variant": "beta_vae", "beta.value": 1.0, "seed": 9, "status": "failed", "mig": np.nan})
    return pd.DataFrame(rows)


def test_variance_explained_separates_configuration_from_seed():
    by_config = variance_explained(_table(lambda v, b, s: b + (v == "factor_vae")), "mig")
    assert by_config["hyperparameters"] == pytest.approx(1.0) and by_config["seed"] == pytest.approx(0.0)
    by_seed = variance_explained(_table(lambda v, b, s: float(s)), "mig")
    assert by_seed["seed"] == pytest.approx(1.0) and by_seed["hyperparameters"] == pytest.approx(0.0)
    assert by_seed["within_config"] == pytest.approx(1.0)


def test_eta_squared_matches_the_anova_decomposition():
    rng = np.random.default_rng(0)
    groups = pd.Series(rng.integers(0, 4, 200))
    values = pd.Series(groups * 0.5 + rng.normal(size=200))
    means = values.groupby(groups).mean()
    between = sum(len(values[groups == g]) * (m - values.mean()) ** 2 for g, m in means.items())
    assert eta_squared(values, groups) == pytest.approx(between / ((values - values.mean()) ** 2).sum())


def test_distributions_and_rank_correlations():
    rng = np.random.default_rng(1)
    df = _table(lambda v, b, s: b + rng.normal())
    df["dci"] = df["mig"] ** 3 + 0.01 * rng.normal(size=len(df))
    dist = metric_distributions(df, ["mig"])
    assert list(dist.index) == ["beta_vae", "factor_vae"] and dist[("mig", "count")].tolist() == [15, 15]
    corr = rank_correlations(df, ["mig", "dci"])
    done = df[df["status"] == "completed"]
    assert corr.loc["mig", "dci"] == pytest.approx(spearmanr(done["mig"], done["dci"]).statistic)
