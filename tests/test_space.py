import optuna
import pytest

from study.space import DefineByRun, make_sampler
from study.spec import parse_spec
from trainers.objectives import make_objective

SPEC = {
    "name": "t",
    "variant": "beta_vae",
    "seeds": [0, 1, 2],
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "weights": {
        "beta": {
            "schedule": ["constant", "linear", "cyclical"],
            "value": {"low": 0.5, "high": 16, "log": True},
            "end": {"low": 1, "high": 8},
            "end_step": {"low": 100, "high": 1000},
            "period": 500,
        }
    },
}


def test_define_by_run_samples_only_the_chosen_familys_parameters():
    spec = parse_spec(SPEC)
    space = DefineByRun(spec)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    families = set()
    for number in range(60):
        trial = study.ask()
        fixed = space(trial)
        family = trial.params["beta.schedule"]
        families.add(family)
        expected = {"constant": {"beta.value"}, "linear": {"beta.end", "beta.end_step"}, "cyclical": {"beta.end"}}
        assert set(trial.params) - {"beta.schedule"} == expected[family]
        if family == "cyclical":
            assert fixed["beta.period"] == 500
        if "beta.value" in trial.params:
            assert 0.5 <= trial.params["beta.value"] <= 16
        if "beta.end_step" in trial.params:
            assert isinstance(trial.params["beta.end_step"], int) and 100 <= trial.params["beta.end_step"] <= 1000
        assert fixed["seed"] == [0, 1, 2][number % 3] == trial.user_attrs["seed"]
        # Every sampled configuration is a valid training config.
        config = spec.train_config({**trial.params, **fixed}, fixed["seed"])
        make_objective(config.variant, config.weights, 1000)
        study.tell(trial, [1.0, 0.0])
    assert families == {"constant", "linear", "cyclical"}


def test_log_ranges_are_sampled_log_uniformly():
    spec = parse_spec(SPEC)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = []
    for _ in range(400):
        trial = study.ask()
        DefineByRun(spec)(trial)
        if "beta.value" in trial.params:
            values.append(trial.params["beta.value"])
        study.tell(trial, 0.0)
    below_geometric_mid = sum(v < 2.828 for v in values) / len(values)  # sqrt(0.5 * 16)
    assert below_geometric_mid == pytest.approx(0.5, abs=0.12)


@pytest.mark.parametrize("name, cls", [("tpe", "TPESampler"), ("random", "RandomSampler"), ("nsga2", "NSGAIISampler")])
def test_sampler_from_spec(name, cls):
    spec = parse_spec({**SPEC, "search": {"sampler": name}})
    assert type(make_sampler(spec)).__name__ == cls
