"""The effective weight of a schedule: one number per trial, so that every schedule family
(constant, linear, step, cyclical) can be plotted on one axis.

Definition: the **effective weight** of weight ``w`` in a trial of ``T`` training steps is
its time average over training,

    w_eff = (1/T) ∫₀ᵀ w(t) dt,

with ``w(t)`` the schedule of ``trainers.schedules`` taken as a function of continuous
time (it differs from the mean over the integer steps by O(1/T)).  For a constant it is
the value; for a linear ramp ``start → end`` between ``start_step`` and ``end_step`` it
weighs ``start`` before the ramp, the ramp's midpoint during it and ``end`` after; a step
change weighs ``start`` and ``end`` by the time spent at each; a cyclical schedule
(period ``p``, ramp fraction ``R``) averages ``start + (end − start)(1 − R/2)`` over
whole cycles, plus the partial last cycle.  It is what the penalty weighed on average,
not where training ended: a warm-up to β = 8 over half of training has w_eff = 6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Defaults of optional schedule parameters (as in ``trainers.schedules.FAMILIES``).
DEFAULTS = {"start": 0.0, "start_step": 0.0, "ramp_fraction": 0.5}


def weight_names(df: pd.DataFrame) -> list[str]:
    """The weights a results table schedules: every ``<weight>`` with a ``<weight>.schedule`` column.

    Args:
        df: A results table.

    Returns:
        The weight names, sorted.
    """
    return sorted(c[: -len(".schedule")] for c in df.columns if c.endswith(".schedule"))


def _param(df: pd.DataFrame, weight: str, name: str) -> np.ndarray:
    column = f"{weight}.{name}"
    if column not in df.columns:
        return np.full(len(df), DEFAULTS.get(name, np.nan))
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(values), DEFAULTS.get(name, np.nan), values)


def _ramp_integral(start: np.ndarray, end: np.ndarray, t0: np.ndarray, t1: np.ndarray, upto: np.ndarray) -> np.ndarray:
    """∫₀^upto of the linear schedule start → end between t0 and t1 (held outside)."""
    before = np.clip(upto, 0, t0)
    length = np.maximum(t1 - t0, 1e-12)
    within = np.clip(upto - t0, 0, t1 - t0)
    ramp = start * within + (end - start) * within**2 / (2 * length)
    after = np.maximum(upto - t1, 0)
    return start * before + ramp + end * after


def effective_weight(df: pd.DataFrame, weight: str, steps: pd.Series | None = None) -> pd.Series:
    """The effective weight (module docstring) of ``weight`` in every trial of a results table.

    Args:
        df: A results table with ``<weight>.schedule`` and the schedule's parameters
            (``<weight>.value``, ``.start``, ``.end``, ``.start_step``, ``.end_step``,
            ``.at_step``, ``.period``, ``.ramp_fraction``) and a ``steps`` column.
        weight: The weight's name, e.g. ``"beta"``.
        steps: Training steps per trial; default ``df["steps"]``.

    Returns:
        A float Series on ``df``'s index; NaN where the schedule is unknown.
    """
    steps = df["steps"] if steps is None else steps
    total = pd.to_numeric(steps, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    total = np.where(total > 0, total, np.nan)
    family = df.get(f"{weight}.schedule", pd.Series(None, index=df.index)).astype(object).to_numpy()
    start, end = _param(df, weight, "start"), _param(df, weight, "end")
    out = np.full(len(df), np.nan)

    constant = family == "constant"
    out[constant] = _param(df, weight, "value")[constant]

    linear = family == "linear"
    t0, t1 = _param(df, weight, "start_step"), _param(df, weight, "end_step")
    out[linear] = (_ramp_integral(start, end, t0, t1, total) / total)[linear]

    step = family == "step"
    at = np.clip(_param(df, weight, "at_step"), 0, total)
    out[step] = ((start * at + end * (total - at)) / total)[step]

    cyclical = family == "cyclical"
    if cyclical.any():
        period, ramp = _param(df, weight, "period"), _param(df, weight, "ramp_fraction")
        cycles = np.floor(total / period)
        rest = total - cycles * period
        whole = cycles * period * (start + (end - start) * (1 - ramp / 2))
        partial = _ramp_integral(start, end, np.zeros_like(rest), ramp * period, rest)
        out[cyclical] = ((whole + partial) / total)[cyclical]
    return pd.Series(out, index=df.index, name=f"{weight} (effective)")
