"""What ``vae-study resume`` runs again and asks for, read from a killed study's files (no Ray):
interrupted packs whole and in member order, and in a grid study exactly the points no trial
took, as the searcher a resume hands to Tune suggests them.  The whole kill-and-resume of a
packed study, through Ray: test_resume_packed.py."""

import json

from ray.tune.search import Searcher
from scaffold import tiny_spec

from study.folder import StudyFolder, TrialPlan, TrialRecord, TrialStatus
from study.resume import interrupted_packs, remaining_grid, resume_searcher, scan_trials
from study.searchers import MEMBERS, PACK_ID
from study.space import grid_points
from study.spec import parse_spec, stored_spec

#: 3 β × 2 seeds in packs of two.
GRID = tiny_spec(
    weights={"beta": [1, 4, 8]},
    training={"pack_size": 2},
    search={"mode": "grid", "max_concurrent": 1, "storage": None},
)


def _grid_spec():
    """The grid spec as a resume reads it: through the study folder's spec.json."""
    return stored_spec(json.loads(json.dumps(parse_spec(GRID).model_dump(mode="json"))), "spec.json")


def _killed_study(root, points, packs):
    """A study folder as a kill leaves it: ``packs`` maps a pack id to its members'
    ``(grid point index, status)``; an ended member (a status) has its record, the others
    (None) only their plan."""
    folder = StudyFolder(root)
    number = 0
    for pack_id, members in packs.items():
        for member, (index, status) in enumerate(members):
            trial = folder.trial(f"t{number:04d}").create()
            point = points[index]
            trial.write_plan(TrialPlan(trial.trial_id, point, pack_id, member=member, pack_size=len(members)))
            if status is not None:
                trial.write_record(
                    TrialRecord(trial.trial_id, status, variant=point["variant"], seed=point["seed"],
                                params={"beta.value": point["beta.value"]}, pack_id=pack_id, pack_size=len(members))
                )  # fmt: skip
            number += 1
    return folder


def test_a_killed_grid_study_runs_its_interrupted_pack_whole_and_asks_only_the_untaken_points(tmp_path):
    spec = _grid_spec()
    points = grid_points(spec)
    assert len(points) == 6 and {p["beta.value"] for p in points} == {1, 4, 8}
    # Points 0 and 1 ended; the pack of points 4 and 5 was killed after its second member had
    # failed (a diverging member fails alone, the others train on); 2 and 3 were never asked.
    done, failed = TrialStatus.COMPLETED, TrialStatus.FAILED
    folder = _killed_study(tmp_path, points, {"p0000": [(0, done), (1, done)], "p0001": [(4, None), (5, failed)]})

    ended, interrupted = scan_trials(folder)  # through the files: JSON round trips included
    assert sorted(r.trial_id for _, r in ended) == ["t0000", "t0001", "t0003"]
    assert [p.trial_id for p in interrupted] == ["t0002"]

    queued = interrupted_packs(ended, interrupted)
    assert [q[PACK_ID] for q in queued] == ["p0001"]
    members = queued[0][MEMBERS]
    # The whole pack, in member order, each member under its own id and point (the ended one
    # keeps its place in the stack; the trial does not train it again).
    assert [m["trial_id"] for m in members] == ["t0002", "t0003"]
    assert [m["point"] for m in members] == [points[4], points[5]]

    grid = remaining_grid(spec, ended, interrupted)
    assert grid == [points[2], points[3]]

    # What Tune is then given: the interrupted pack first, then one new pack of the two
    # remaining points numbered on from the folder's highest ids, then nothing more.
    searcher, budget = resume_searcher(spec, folder, ended, interrupted, queued, grid)
    assert budget == 2
    first, second = searcher.suggest("ray-1"), searcher.suggest("ray-2")
    assert first[PACK_ID] == "p0001" and [m["trial_id"] for m in first[MEMBERS]] == ["t0002", "t0003"]
    assert second[PACK_ID] == "p0002" and [m["trial_id"] for m in second[MEMBERS]] == ["t0004", "t0005"]
    assert [m["point"] for m in second[MEMBERS]] == [points[2], points[3]]
    assert searcher.suggest("ray-3") == Searcher.FINISHED


def test_a_grid_study_with_every_point_taken_asks_for_none(tmp_path):
    spec = _grid_spec()
    points = grid_points(spec)
    done = TrialStatus.COMPLETED
    folder = _killed_study(tmp_path, points, {f"p{k:04d}": [(2 * k, done), (2 * k + 1, done if k < 2 else None)]
                                              for k in range(3)})  # fmt: skip
    ended, interrupted = scan_trials(folder)
    assert remaining_grid(spec, ended, interrupted) == []
    queued = interrupted_packs(ended, interrupted)
    assert [[m["trial_id"] for m in q[MEMBERS]] for q in queued] == [["t0004", "t0005"]]
    searcher, budget = resume_searcher(spec, folder, ended, interrupted, queued, [])
    assert budget == 0 and searcher.suggest("ray-1")[PACK_ID] == "p0002"
    assert searcher.suggest("ray-2") == Searcher.FINISHED
