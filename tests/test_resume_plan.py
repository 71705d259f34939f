"""What ``vae-study resume`` runs again and asks for, read from a killed study's files (no Ray):
interrupted packs whole and in member order, and in a grid study exactly the points no trial
took.  The whole kill-and-resume of packed studies, through Ray: test_resume_packed.py."""

from scaffold import tiny_spec

from study.folder import StudyFolder, TrialPlan, TrialRecord, TrialStatus
from study.resume import interrupted_packs, remaining_grid, scan_trials
from study.searchers import MEMBERS, PACK_ID
from study.space import grid_points
from study.spec import parse_spec

#: 3 β × 2 seeds in packs of two.
GRID = tiny_spec(
    weights={"beta": [1, 4, 8]},
    training={"pack_size": 2},
    search={"mode": "grid", "max_concurrent": 1, "storage": None},
)


def _killed_study(root, points, packs):
    """A study folder as a kill leaves it: ``packs`` maps a pack id to its members'
    ``(grid point index, ended)``; an ended member has its record, the others only their plan."""
    folder = StudyFolder(root)
    number = 0
    for pack_id, members in packs.items():
        for member, (index, ended) in enumerate(members):
            trial = folder.trial(f"t{number:04d}").create()
            point = points[index]
            trial.write_plan(TrialPlan(trial.trial_id, point, pack_id, member=member, pack_size=len(members)))
            if ended:
                trial.write_record(
                    TrialRecord(trial.trial_id, TrialStatus.COMPLETED, variant=point["variant"], seed=point["seed"],
                                params={"beta.value": point["beta.value"]}, pack_id=pack_id, pack_size=len(members))
                )  # fmt: skip
            number += 1
    return folder


def test_a_killed_grid_study_runs_its_interrupted_pack_whole_and_asks_only_the_untaken_points(tmp_path):
    spec = parse_spec(GRID)
    points = grid_points(spec)
    assert len(points) == 6 and {p["beta.value"] for p in points} == {1, 4, 8}
    # Out of grid order, as concurrent packs end: points 0 and 1 ended; the pack of 4 and 5 was
    # killed after its first member ended; 2 and 3 were never asked.
    folder = _killed_study(tmp_path, points, {"p0000": [(0, True), (1, True)], "p0001": [(4, True), (5, False)]})

    ended, interrupted = scan_trials(folder)  # through the files: JSON round trips included
    assert sorted(r.trial_id for _, r in ended) == ["t0000", "t0001", "t0002"]
    assert [p.trial_id for p in interrupted] == ["t0003"]

    queued = interrupted_packs(ended, interrupted)
    assert [q[PACK_ID] for q in queued] == ["p0001"]
    members = queued[0][MEMBERS]
    # The whole pack, in member order, each member under its own id and point (the ended one
    # keeps its place in the stack; the trial does not train it again).
    assert [m["trial_id"] for m in members] == ["t0002", "t0003"]
    assert [m["point"] for m in members] == [points[4], points[5]]

    assert remaining_grid(spec, ended, interrupted) == [points[2], points[3]]


def test_a_grid_study_with_every_point_taken_asks_for_none(tmp_path):
    spec = parse_spec(GRID)
    points = grid_points(spec)
    folder = _killed_study(tmp_path, points, {f"p{k:04d}": [(2 * k, True), (2 * k + 1, k != 2)] for k in range(3)})
    ended, interrupted = scan_trials(folder)
    assert remaining_grid(spec, ended, interrupted) == []
    assert [[m["trial_id"] for m in q[MEMBERS]] for q in interrupted_packs(ended, interrupted)] == [["t0004", "t0005"]]
