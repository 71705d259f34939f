"""The installed Optuna's multi-objective samplers take pruned trials (Pareto stopping's), and the
searcher tells a member stopped at a rung PRUNED with its estimates as user attributes."""

import optuna
import pytest
from optuna.trial import TrialState

from study.folder import TrialStatus
from study.searchers import OptunaSource, make_sampler, rung_attrs
from study.spec import StudySpec

#: Trials per sampler: past TPE's 10 startup trials, and past NSGA-II's first generation (50
#: complete trials, its default population; pruned trials do not count), so that each sampler's
#: own proposal runs with pruned trials in the study.
TRIALS = {"tpe": 24, "nsga2": 90}


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_multi_objective_samplers_go_on_past_pruned_trials(tmp_path, make_spec, sampler):
    spec = StudySpec.model_validate(make_spec(search={"sampler": sampler, "seed": 1}))
    study = optuna.create_study(
        study_name="mo", storage=f"sqlite:///{tmp_path / 'optuna.db'}", sampler=make_sampler(spec),
        directions=["minimize", "maximize"],
    )  # fmt: skip
    for i in range(TRIALS[sampler]):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1, log=False)
        if i % 3 == 1:  # a third stopped at a rung: no values, estimates as attributes
            trial.set_user_attr("rung_estimates", {"10": {"recon": x, "mig": y}})
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, [x + y, x * y])
    trials = study.get_trials()
    assert [t.state for t in trials].count(TrialState.PRUNED) == TRIALS[sampler] // 3
    assert all(t.state in (TrialState.PRUNED, TrialState.COMPLETE) for t in trials)
    assert all(t.state == TrialState.COMPLETE for t in study.best_trials)  # the front ignores pruned trials
    if sampler == "nsga2":  # its selection and crossover ran: a second generation was proposed
        assert max(t.system_attrs.get("NSGAIISampler:generation", 0) for t in trials) >= 1
    else:
        assert len({round(t.params["x"], 6) for t in trials}) == len(trials)


def test_a_member_stopped_at_a_rung_reaches_optuna_pruned_with_its_estimates(tmp_path, make_spec):
    spec = StudySpec.model_validate(make_spec())
    study = optuna.create_study(
        study_name="tiny", storage=f"sqlite:///{tmp_path / 'optuna.db'}", directions=["minimize", "maximize"]
    )
    source = OptunaSource(spec, study, budget=2, persistent=True)
    stopped, finished = source.ask(), source.ask()
    reported = {"10/recon": 80.5, "10/mig": 0.02, "30/recon": 70.0, "30/mig": 0.03}
    assert rung_attrs(reported) == {
        "rung_estimates": {"10": {"recon": 80.5, "mig": 0.02}, "30": {"recon": 70.0, "mig": 0.03}}
    }
    source.tell(stopped, TrialStatus.PRUNED, reported)
    source.tell(finished, TrialStatus.COMPLETED, {"recon": 60.0, "mig": 0.1})
    first, second = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'optuna.db'}").get_trials()
    assert first.state == TrialState.PRUNED and first.values is None
    assert first.user_attrs["rung_estimates"] == rung_attrs(reported)["rung_estimates"]
    assert second.state == TrialState.COMPLETE and second.values == [60.0, 0.1]
