"""Locatello et al. (2019)-style summaries of a results table.

``metric_distributions``  per-group (default: per variant) distribution of each
                          metric across trials and seeds.
``rank_correlations``     Spearman rank correlation between metrics (their Fig. 3).
``variance_explained``    how much of a metric's variance the hyperparameters explain
                          and how much the seed does: η² = between-group sum of squares
                          / total sum of squares, grouping by the configuration (every
                          hyperparameter column) or by the seed.  ``within_config`` =
                          1 − η²(configuration) is what varies between seeds of one
                          configuration — their main finding is that it is large.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Columns that describe how a trial was configured (besides ``<weight>.<param>``).
CONFIG_COLUMNS = ("variant",)


def config_columns(df: pd.DataFrame) -> list[str]:
    """The hyperparameter columns: the variant and every ``<weight>.<param>`` column."""
    return [c for c in df.columns if c in CONFIG_COLUMNS or ("." in c and not c.startswith("mlflow"))]


def configuration_key(df: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One string per row naming its values in ``columns`` (NaN, a parameter a trial's schedule
    family lacks, is a value of its own), column by column: fast on 10,000 rows.

    Args:
        df: The table.
        columns: The columns that make a configuration.

    Returns:
        A string Series on ``df``'s index; equal strings for equal configurations.
    """
    key = pd.Series("", index=df.index, dtype=object)
    for column in columns:
        key = key + "|" + df[column].astype(object).map(repr, na_action=None).astype(str)
    return key if len(columns) else pd.Series("all", index=df.index, dtype=object)


def _completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "completed"] if "status" in df.columns else df


def metric_distributions(df: pd.DataFrame, metrics: Sequence[str], by: str = "variant") -> pd.DataFrame:
    """count, mean, std, min, quartiles and max of each metric per group (completed trials)."""
    done = _completed(df)
    return done.groupby(by)[list(metrics)].describe()


def rank_correlations(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Spearman rank correlation between ``metrics`` over completed trials."""
    return _completed(df)[list(metrics)].corr(method="spearman")


def eta_squared(values: pd.Series, groups: pd.Series) -> float:
    """Fraction of the variance of ``values`` explained by the means of ``groups`` (0 to 1)."""
    frame = pd.DataFrame({"v": values.to_numpy(dtype=float), "g": groups.map(repr).to_numpy()}).dropna()
    total = ((frame["v"] - frame["v"].mean()) ** 2).sum()
    if total == 0:
        return float("nan")
    means = frame.groupby("g")["v"].transform("mean")
    return float(((means - frame["v"].mean()) ** 2).sum() / total)


def variance_explained(df: pd.DataFrame, metric: str, hyperparameters: Sequence[str] | None = None) -> dict[str, float]:
    """η² of ``metric`` by configuration and by seed, and the within-configuration share."""
    done = _completed(df).dropna(subset=[metric])
    columns = list(hyperparameters) if hyperparameters is not None else config_columns(done)
    # repr keeps parameters that do not apply to a trial's schedule family (NaN) as a value of their own.
    config = configuration_key(done, columns)
    by_config = eta_squared(done[metric], config)
    return {
        "hyperparameters": by_config,
        "seed": eta_squared(done[metric], done["seed"]),
        "within_config": float(1.0 - by_config) if not np.isnan(by_config) else float("nan"),
    }
