"""Pareto-aware successive halving (study.pareto_stopping): rungs, fronts, crowding, decisions,
checked against brute force and hand-made cases."""

import itertools
import json
import math

import numpy as np
import pytest

from study.pareto_stopping import Rungs, crowding_distances, fronts, rank_order, rung_steps


def brute_dominates(a, b, modes):
    better = [x < y if m == "min" else x > y for x, y, m in zip(a, b, modes, strict=True)]
    worse = [x > y if m == "min" else x < y for x, y, m in zip(a, b, modes, strict=True)]
    return any(better) and not any(worse)


def brute_fronts(points, modes):
    """Peel fronts by enumerating every pair directly."""
    left, out, rank = set(range(len(points))), {}, 1
    while left:
        front = {i for i in left if not any(brute_dominates(points[j], points[i], modes) for j in left if j != i)}
        out.update(dict.fromkeys(front, rank))
        left -= front
        rank += 1
    return [out[i] for i in range(len(points))]


def test_rungs_grow_by_eta_from_the_grace_period_on_checkpoints():
    assert rung_steps(grace=100, eta=3, steps=3000, every=100) == [100, 300, 900, 2700]
    assert rung_steps(grace=100, eta=3, steps=2700, every=100) == [100, 300, 900]  # none at the last step
    assert rung_steps(grace=20, eta=1.5, steps=100, every=10) == [20, 30, 40, 70]  # rounded to a checkpoint


@pytest.mark.parametrize("seed", range(20))
def test_fronts_match_brute_force_on_random_points(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 4))
    # Few distinct values: ties and duplicates are common, as they are between real trials.
    points = rng.integers(0, 5, size=(int(rng.integers(1, 25)), m)).astype(float)
    modes = [str(rng.choice(["min", "max"])) for _ in range(m)]
    assert list(fronts(points, modes)) == brute_fronts(points.tolist(), modes)


def test_crowding_distance_by_hand():
    # One front of recon (min) against mig (max), sorted along recon: 1, 2, 4, 8 with mig 0.1, 0.2, 0.3, 0.4.
    points = np.array([[1, 0.1], [2, 0.2], [4, 0.3], [8, 0.4]])
    d = crowding_distances(points, ["min", "max"])
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx((4 - 1) / 7 + (0.3 - 0.1) / 0.3)
    assert d[2] == pytest.approx((8 - 2) / 7 + (0.4 - 0.2) / 0.3)
    assert (crowding_distances(points[:2], ["min", "max"]) == math.inf).all()


def test_rank_order_is_front_then_crowding_then_arrival():
    modes = ["min", "max"]
    points = np.array([[5, 0.0], [1, 0.1], [2, 0.2], [4, 0.3], [8, 0.4], [3, 0.2]])
    # Front 1: 1,2,3,4 (indices); index 5 (3, 0.2) is dominated by (2, 0.2); index 0 by everything.
    order = rank_order(points, modes)
    assert order[:2] == [1, 4]  # the front's extremes (infinite distance) by arrival
    assert order[2:4] == [3, 2]  # index 3's neighbours are farther apart than index 2's
    assert order[4:] == [5, 0]
    assert rank_order(np.array([[1, 1], [1, 1]]), modes) == [0, 1]  # duplicates: by arrival


def test_non_finite_estimates_rank_last():
    points = np.array([[np.nan, 0.5], [3, 0.1], [2, 0.2]])
    assert rank_order(points, ["min", "max"])[-1] == 0
    assert list(fronts(points, ["min", "max"])) == [3, 2, 1]  # (2, 0.2) dominates (3, 0.1)


def test_decisions_keep_the_top_third_asynchronously():
    rungs = Rungs([("recon", "min"), ("mig", "max")], [10, 30], eta=3)
    # Fewer than η at the rung: everyone goes on, even a dominated trial.
    assert rungs.decide("a", 10, {"recon": 5, "mig": 0.1}).go_on
    assert rungs.decide("b", 10, {"recon": 9, "mig": 0.0}).go_on
    # The third: keep ⌈3/3⌉ = 1; "c" is dominated by "a" only.
    c = rungs.decide("c", 10, {"recon": 6, "mig": 0.05})
    assert not c.go_on and (c.dominated_by, c.reached, c.kept, c.place) == (1, 3, 1, 2)
    assert c.reason == "stopped at rung 0 (step 10): dominated by 1 of 3 trials (place 2, the best 1 go on)"
    # The fourth dominates everyone: ⌈4/3⌉ = 2 go on, it is first.
    d = rungs.decide("d", 10, {"recon": 1, "mig": 0.9})
    assert d.go_on and d.place == 1
    # Asked again (a retried pack), the same answer, and nothing added.
    assert rungs.decide("c", 10, {"recon": 0, "mig": 1}) == c and len(rungs.decisions[10]) == 4
    with pytest.raises(ValueError, match="not a rung"):
        rungs.decide("e", 20, {"recon": 1, "mig": 1})


def test_decision_matches_brute_force_place():
    """Each arrival goes on iff fewer than η arrived or its brute-force place is within ⌈n/η⌉."""
    rng = np.random.default_rng(7)
    modes = ["min", "max"]
    rungs = Rungs([("recon", modes[0]), ("mig", modes[1])], [10], eta=2)
    seen = []
    for i in range(30):
        point = [float(rng.integers(0, 6)), float(rng.integers(0, 6))]
        decision = rungs.decide(f"t{i}", 10, {"recon": point[0], "mig": point[1]})
        seen.append(point)
        front = brute_fronts(seen, modes)
        # Everyone on a strictly better front ranks before it; on its own front it can rank anywhere.
        better = sum(f < front[-1] for f in front)
        same = sum(f == front[-1] for f in front)
        assert better + 1 <= decision.place <= better + same
        assert decision.dominated_by == sum(brute_dominates(p, point, modes) for p in seen[:-1])
        assert decision.go_on == (len(seen) < 2 or decision.place <= math.ceil(len(seen) / 2))


def test_rungs_survive_their_file():
    rungs = Rungs([("recon", "min"), ("mig", "max")], [10, 30], eta=3)
    for name, values in zip("zyxw", itertools.permutations([1, 2, 3]), strict=False):
        rungs.decide(name, 10, {"recon": values[0], "mig": values[1]})
    again = Rungs.from_json(json.loads(json.dumps(rungs.to_json(), sort_keys=True)))
    assert [d.trial_id for d in again.decisions[10]] == list("zyxw")  # arrival order kept through sorted keys
    assert again.to_json() == rungs.to_json()
    assert again.decide("z", 10, {}) == rungs.decisions[10][0]


def test_the_report_counts_each_rung_from_the_folder(tmp_path):
    from analysis.report import rungs_section, rungs_table
    from study.folder import StudyFolder

    assert rungs_table(tmp_path) is None and rungs_section(tmp_path) == ""  # no Pareto stopping: no section
    rungs = Rungs([("recon", "min"), ("mig", "max")], [10, 30], eta=2)
    for name, recon in zip("abc", (5, 9, 1), strict=True):
        rungs.decide(name, 10, {"recon": recon, "mig": 0.1})
    rungs.decide("a", 30, {"recon": 4, "mig": 0.1})
    StudyFolder(tmp_path).write_rungs(rungs.to_json())
    table = rungs_table(tmp_path)
    assert table.to_dict("records") == [
        {"rung": 0, "step": 10, "reached": 3, "went on": 2, "stopped": 1, "stopped trials": "b"},
        {"rung": 1, "step": 30, "reached": 1, "went on": 1, "stopped": 0, "stopped trials": ""},
    ]
    assert "<h2>Rungs</h2>" in rungs_section(tmp_path) and "η = 2" in rungs_section(tmp_path)


def test_an_objective_equal_on_the_front_gives_no_extremes():
    """An objective every point of the front shares separates none of them: its first and last
    by arrival (the newest trial among them) must not get an infinite distance."""
    modes = ["min", "min", "min"]
    # Four trade-offs of a and b, and a crowded newcomer in their middle; c is the same for all.
    points = np.array([[0, 3, 5], [1, 2, 5], [2, 1, 5], [3, 0, 5], [1.5, 1.5, 5]])
    d = crowding_distances(points, modes)
    assert d[0] == d[3] == math.inf
    assert d[4] == pytest.approx(1 / 3 + 1 / 3) and d[1] == d[2] == pytest.approx(0.5 + 0.5)
    assert rank_order(points, modes) == [0, 3, 1, 2, 4]
    rungs = Rungs([("a", "min"), ("b", "min"), ("c", "min")], [10], eta=2)
    decisions = [rungs.decide(str(i), 10, dict(zip("abc", p, strict=True))) for i, p in enumerate(points)]
    assert not decisions[-1].go_on and decisions[-1].place == 5  # the most crowded of five; 3 go on
    # Exact duplicates: equal fronts and distances, so by arrival (the newest last).
    assert rank_order(np.ones((3, 2)), ["min", "max"]) == [0, 1, 2]
