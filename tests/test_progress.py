"""The run log's pieces: trial names and numbers, the incremental front, line lengths."""

import numpy as np
import pytest

from analysis.pareto import pareto_mask
from study.naming import next_number, pack_id, trial_id, trial_label, weight_label
from study.progress import MAX_LINE, Front, clip, duration


def test_trial_names_say_id_variant_weights_and_seed():
    weights = {
        "beta": {"schedule": "constant", "value": 8.9612},
        "gamma": {"schedule": "linear", "start": 0.0, "end": 40},
    }
    assert trial_label("t0005", "beta_vae", weights, 0) == "t0005-beta_vae-beta=8.96-gamma=linear(0..40)-s0"
    cyclical = {"schedule": "cyclical", "start": 0.5, "end": 25.0, "period": 100}
    assert weight_label("C", cyclical) == "C=cyclical(0.5..25)"
    assert (trial_id(5), pack_id(12), trial_id(12345)) == ("t0005", "p0012", "t12345")


def test_a_resume_numbers_on_from_the_highest_id_and_ignores_older_ids():
    assert next_number([]) == 0
    assert next_number(["t0000", "t0007", "t0003", "a1b2c3d4", "a1b2c3d4-m1"]) == 8
    assert next_number(["t0000", "p0002", "p0000"], prefix="p") == 3
    assert next_number(["tea", "t12x"]) == 0  # not ids of this scheme


@pytest.mark.parametrize("modes", [("min", "max"), ("min", "min", "max")])
def test_the_incremental_front_has_the_size_of_the_brute_force_front(modes):
    rng = np.random.default_rng(len(modes))
    points = rng.integers(0, 12, size=(300, len(modes))).astype(float)  # ties and duplicates included
    front = Front(modes)
    for k, point in enumerate(points, start=1):
        front.add(point)
        unique = np.unique(points[:k], axis=0)
        assert len(front) == pareto_mask(unique, list(modes)).sum()
    front.add([float("nan")] * len(modes))  # an objective that is not a number is not a point
    assert len(front) == pareto_mask(np.unique(points, axis=0), list(modes)).sum()


def test_lines_are_cut_to_the_limit_and_durations_read_as_time():
    assert clip("x" * 500) == "x" * (MAX_LINE - 1) + "…" and len(clip("x" * 500)) == MAX_LINE
    assert clip("short") == "short"
    assert [duration(s) for s in (0, 59.6, 75, 3599, 4000)] == ["0s", "1m00s", "1m15s", "59m59s", "1h06m"]
