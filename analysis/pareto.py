"""Pareto fronts and non-dominated ranks over any number of objectives.

Point ``a`` dominates ``b`` when it is at least as good in every objective and
strictly better in one (minimising or maximising each as asked).  Identical
points do not dominate each other, so duplicates share a rank.  Rows with a
missing objective value (failed trials) are never on a front and get rank NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

Objectives = Mapping[str, str] | Sequence[tuple[str, str]] | Sequence[Mapping[str, str]]


def normalize_objectives(objectives: Objectives) -> list[tuple[str, str]]:
    """``{"recon": "min"}``, ``[("recon", "min")]`` or ``[{"name", "mode"}]`` → ``[(name, mode)]``."""
    if isinstance(objectives, Mapping):
        pairs = list(objectives.items())
    else:
        pairs = [(o["name"], o["mode"]) if isinstance(o, Mapping) else tuple(o) for o in objectives]
    for name, mode in pairs:
        if mode not in ("min", "max"):
            raise ValueError(f"objective {name!r}: mode must be 'min' or 'max', got {mode!r}")
    if not pairs:
        raise ValueError("at least one objective is needed")
    return pairs


def _as_minimisation(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    sign = np.array([1.0 if m == "min" else -1.0 for m in modes])
    return np.asarray(values, dtype=np.float64) * sign


def dominates_matrix(costs: np.ndarray) -> np.ndarray:
    """``d[i, j]`` is True when point i dominates point j (all costs minimised)."""
    le = (costs[:, None, :] <= costs[None, :, :]).all(axis=2)
    lt = (costs[:, None, :] < costs[None, :, :]).any(axis=2)
    return le & lt


def nondominated_ranks(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Rank 1 for the front, 2 for the front once rank 1 is removed, and so on."""
    costs = _as_minimisation(values, modes)
    ranks = np.full(costs.shape[0], np.nan)
    valid = np.flatnonzero(np.isfinite(costs).all(axis=1))
    dominated_by = dominates_matrix(costs[valid])
    remaining = np.ones(valid.size, dtype=bool)
    rank = 1
    while remaining.any():
        # A remaining point is on this front if no remaining point dominates it.
        front = remaining & ~dominated_by[remaining].any(axis=0)
        ranks[valid[front]] = rank
        remaining &= ~front
        rank += 1
    return ranks


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """True for the non-dominated rows of ``values [n, m]``."""
    return nondominated_ranks(values, modes) == 1


def _ranks_within(df: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.Series:
    names, modes = [p[0] for p in pairs], [p[1] for p in pairs]
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise KeyError(f"objective column(s) not in the table: {', '.join(missing)}")
    values = df[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    return pd.Series(nondominated_ranks(values, modes), index=df.index)


def pareto_rank(df: pd.DataFrame, objectives: Objectives, by: str | Sequence[str] | None = None) -> pd.Series:
    """Non-dominated rank of every row, computed within each group of ``by`` if given."""
    pairs = normalize_objectives(objectives)
    if by is None:
        return _ranks_within(df, pairs)
    parts = [_ranks_within(group, pairs) for _, group in df.groupby(by, sort=False, dropna=False)]
    return pd.concat(parts).reindex(df.index) if parts else pd.Series(dtype=float)


def pareto_front(df: pd.DataFrame, objectives: Objectives, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """The non-dominated rows of ``df`` (per group of ``by`` if given), in the original order."""
    return df[pareto_rank(df, objectives, by) == 1]
