"""The study's searcher: packs asked from a grid or Optuna, each member told its own outcome."""

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study.folder import TrialPlan, TrialStatus
from study.searchers import GridSource, OptunaSource, PackSearcher, optuna_study, pack_plans, plan_member
from study.spec import parse_spec

SPEC = {
    "name": "s",
    "variants": {
        "beta_vae": {"weights": {"beta": {"schedule": "constant", "value": {"low": 1, "high": 8}}}},
        "beta_tcvae": {"weights": {"beta": {"schedule": "constant", "value": {"low": 1, "high": 8}}}},
    },
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "seeds": [0, 1, 2],
}


def _outcome(index, status, **values):
    return {f"members/{index}/status": status, **{f"members/{index}/{k}": v for k, v in values.items()}}


def test_packs_hold_one_variant_and_every_member_is_asked_once():
    spec = parse_spec(SPEC)
    study = optuna_study(spec, None)
    searcher = PackSearcher(OptunaSource(spec, study, budget=7, persistent=False), size=3)
    packs = []
    while (pack := searcher.suggest(f"t{len(packs)}")) != Searcher.FINISHED:
        packs.append(pack["members"])
    assert sum(len(p) for p in packs) == 7 and all(1 <= len(p) <= 3 for p in packs)
    assert all(len({m["point"]["variant"] for m in p}) == 1 for p in packs)
    numbers = [m["optuna"]["number"] for p in packs for m in p]
    assert sorted(numbers) == list(range(7))
    assert all(m["point"]["seed"] == m["optuna"]["number"] % 3 for p in packs for m in p)


def test_each_member_is_told_its_own_outcome_from_the_packs_report():
    spec = parse_spec({**SPEC, "variants": {"beta_vae": SPEC["variants"]["beta_vae"]}})
    study = optuna_study(spec, None)
    searcher = PackSearcher(OptunaSource(spec, study, budget=3, persistent=False), size=3)
    members = searcher.suggest("pack")["members"]
    assert len(members) == 3
    # A failed member is reported at a checkpoint; the others at the end.
    searcher.on_trial_result("pack", {"step": 10, **_outcome(1, "failed")})
    searcher.on_trial_complete(
        "pack", {"final": 1, **_outcome(0, "completed", recon=90.0, mig=0.3), **_outcome(2, "completed", recon=80.0)}
    )
    trials = {t.number: t for t in study.get_trials()}
    number = [m["optuna"]["number"] for m in members]
    assert trials[number[0]].state == TrialState.COMPLETE and trials[number[0]].values == [90.0, 0.3]
    assert trials[number[1]].state == TrialState.FAIL
    # Completed without every objective: it cannot rank, so it is not COMPLETE.
    assert trials[number[2]].state == TrialState.FAIL


def test_a_crashed_or_stopped_pack_tells_its_unreported_members_fail_or_pruned():
    spec = parse_spec(SPEC)
    study = optuna_study(spec, None)
    searcher = PackSearcher(OptunaSource(spec, study, budget=2, persistent=False), size=1)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", error=True)
    searcher.on_trial_complete("b", {"step": 50, "final": 0})
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.PRUNED]


def test_queued_packs_come_first_and_keep_their_ids():
    plans = [TrialPlan(f"old-m{k}", {"variant": "beta_vae", "seed": k}, "old", k, 2) for k in range(2)]
    queued = {"pack_id": "old", "members": [plan_member(p) for p in plans]}
    points = [{"variant": "beta_vae", "seed": s} for s in (9, 10, 11)]
    searcher = PackSearcher(GridSource(points), size=2, queued=[queued], first_trial=7, first_pack=3)
    first = searcher.suggest("new-ray-id")
    assert [p.trial_id for p in pack_plans(first, "new-ray-id")] == ["old-m0", "old-m1"]
    assert {p.pack_id for p in pack_plans(first, "new-ray-id")} == {"old"}
    # New members are numbered on from where the resume says; a pack of several gets its own number.
    second = searcher.suggest("other")
    assert [(p.trial_id, p.pack_id, p.point["seed"]) for p in pack_plans(second, "other")] == [
        ("t0007", "p0003", 9),
        ("t0008", "p0003", 10),
    ]
    third = searcher.suggest("third")  # the last point: a pack of one is its member
    assert [(p.trial_id, p.pack_id) for p in pack_plans(third, "third")] == [("t0009", "t0009")]
    assert searcher.suggest("fourth") == Searcher.FINISHED


def test_state_round_trips_and_a_restored_searcher_continues():
    spec = parse_spec(SPEC)
    points = [{"variant": "beta_vae", "seed": s} for s in range(5)]
    searcher = PackSearcher(GridSource(points), size=2)
    searcher.suggest("a")
    searcher.on_trial_result("a", _outcome(0, "failed"))
    restored = PackSearcher(GridSource([]), size=1)
    restored.set_state(searcher.get_state())
    assert restored.get_state() == searcher.get_state()
    assert [m["point"]["seed"] for m in restored.suggest("b")["members"]] == [2, 3]
    assert restored.outcomes == {"a": {0: {"status": "failed"}}}
    # Optuna's source keeps what it asked and added.
    study = optuna.create_study(directions=["minimize", "maximize"])
    source = OptunaSource(spec, study, budget=4, persistent=False)
    source.ask()
    again = OptunaSource(spec, study, budget=0, persistent=False)
    again.set_state(source.get_state())
    assert again.get_state() == source.get_state() and again.asked == 1 and again.budget == 4


def test_members_from_before_a_resume_are_added_to_an_in_memory_study_once():
    spec = parse_spec(SPEC)
    earlier = OptunaSource(spec, optuna_study(spec, None), budget=2, persistent=False)
    old = [earlier.ask(), earlier.ask()]
    fresh = optuna.create_study(directions=["minimize", "maximize"])
    source = OptunaSource(spec, fresh, budget=1, persistent=False)
    new = source.ask()  # number 0 in the new study, as was old[0] in the old one
    assert new["optuna"]["number"] == old[0]["optuna"]["number"] == 0
    source.tell(old[0], TrialStatus.COMPLETED, {"recon": 70.0, "mig": 0.5})
    source.tell(old[0], TrialStatus.COMPLETED, {"recon": 70.0, "mig": 0.5})  # told again: no duplicate
    source.tell(old[1], TrialStatus.PRUNED, None)
    source.tell(new, TrialStatus.COMPLETED, {"recon": 60.0, "mig": 0.1})
    trials = fresh.get_trials()
    assert [(t.state, t.values) for t in trials] == [
        (TrialState.COMPLETE, [60.0, 0.1]),  # the new study's own trial 0, told in place
        (TrialState.COMPLETE, [70.0, 0.5]),
        (TrialState.PRUNED, None),
    ]
    assert trials[1].params == old[0]["optuna"]["params"]


def test_a_persistent_study_is_told_in_place_and_orphans_fail(tmp_path):
    spec = parse_spec({**SPEC, "search": {"storage": "sqlite"}})
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}")
    before = OptunaSource(spec, optuna_study(spec, storage), budget=4, persistent=True)
    told, unknown_end, interrupted, orphan = (before.ask() for _ in range(4))
    before.tell(told, TrialStatus.COMPLETED, {"recon": 80.0, "mig": 0.3})  # told before the driver died
    # The driver dies; a resume reconciles from the trials' records.
    after = OptunaSource(spec, optuna_study(spec, storage), budget=0, persistent=True)
    after.tell(told, TrialStatus.COMPLETED, {"recon": 1.0, "mig": 1.0})  # already ended: unchanged
    after.tell(unknown_end, TrialStatus.COMPLETED, {"recon": 70.0, "mig": 0.4})
    after.fail_orphans({interrupted["optuna"]["number"]})
    trials = {t.number: t for t in optuna_study(spec, storage).get_trials()}
    assert len(trials) == 4  # nothing added: the storage kept them
    assert trials[told["optuna"]["number"]].values == [80.0, 0.3]
    assert trials[unknown_end["optuna"]["number"]].values == [70.0, 0.4]
    assert trials[interrupted["optuna"]["number"]].state == TrialState.RUNNING  # told when its pack ends
    assert trials[orphan["optuna"]["number"]].state == TrialState.FAIL


def test_a_pack_of_one_gives_optuna_its_intermediate_objective_even_when_stopped():
    spec = parse_spec(
        {**SPEC, "variants": {"beta_vae": SPEC["variants"]["beta_vae"]}, "objectives": [SPEC["objectives"][0]]}
    )
    study = optuna_study(spec, None)
    searcher = PackSearcher(OptunaSource(spec, study, budget=1, persistent=False), size=1)
    searcher.suggest("a")
    searcher.on_trial_result("a", {"step": 20, "recon": 5.0, "final": 0})
    # Tune stops a trial at a report by calling on_trial_complete with it (not on_trial_result).
    searcher.on_trial_complete("a", {"step": 40, "recon": 4.0, "final": 0})
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED and trial.intermediate_values == {20: 5.0, 40: 4.0}
