"""The effective weight: the time average of a schedule over training, one axis for every family."""

import numpy as np
import pandas as pd
import pytest

from analysis.weights import effective_weight, weight_names
from trainers.schedules import FAMILIES

CASES = [
    ("constant", {"value": 4.0}, 4.0),
    ("linear", {"start": 0.0, "end": 8.0, "start_step": 0, "end_step": 500}, 6.0),  # a warm-up over half
    ("linear", {"start": 1.0, "end": 8.0, "start_step": 100, "end_step": 500}, 5.9),
    ("linear", {"end": 8.0, "end_step": 2000}, 2.0),  # still ramping when training ends
    ("step", {"start": 1.0, "end": 8.0, "at_step": 300}, 5.9),
    ("cyclical", {"start": 0.0, "end": 8.0, "period": 250, "ramp_fraction": 0.5}, 6.0),
]


@pytest.mark.parametrize(("family", "params", "expected"), CASES)
def test_effective_weight_is_the_schedules_mean_over_training(family, params, expected):
    row = {"beta.schedule": family, "steps": 1000, **{f"beta.{k}": v for k, v in params.items()}}
    value = effective_weight(pd.DataFrame([row]), "beta").item()
    assert value == pytest.approx(expected)
    # The trainers' own schedule, averaged over the steps, agrees to O(1/steps).
    full = {"start": 0.0, "start_step": 0, "ramp_fraction": 0.5, **params} if family != "constant" else params
    full = {k: v for k, v in full.items() if k in FAMILIES[family].params}
    steps = np.mean([FAMILIES[family].function(t, **full) for t in range(1000)])
    assert value == pytest.approx(steps, abs=0.05)


def test_families_share_one_column_and_missing_schedules_are_nan():
    df = pd.DataFrame([
        {"beta.schedule": "constant", "beta.value": 2.0, "steps": 100},
        {"beta.schedule": "linear", "beta.end": 4.0, "beta.end_step": 100, "steps": 100},
        {"beta.schedule": None, "steps": 100, "gamma.schedule": "constant", "gamma.value": 10.0},
    ])  # fmt: skip
    assert weight_names(df) == ["beta", "gamma"]
    beta = effective_weight(df, "beta")
    assert beta.iloc[:2].tolist() == [2.0, 2.0] and np.isnan(beta.iloc[2])
    assert effective_weight(df, "gamma").iloc[2] == 10.0
