import optuna
import pytest

from study.searchers import make_sampler
from study.space import DefineByRun, grid_points, strip_variant_prefix
from study.spec import SpecError, parse_spec
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


MULTI = {
    "name": "m",
    "seeds": [0, 1],
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "variants": {
        "beta_vae": {"weights": {"beta": {"schedule": "constant", "value": {"low": 1, "high": 16, "log": True}}}},
        "beta_tcvae": {"weights": {"beta": [1, 4, {"schedule": "linear", "end": 8, "end_step": 50}]}},
        "hfvae": {"weights": {"beta": 2}, "options": {"group_sizes": [5, 5]}},
    },
}


def test_the_variant_is_searched_and_each_keeps_its_own_parameters():
    spec = parse_spec(MULTI)
    space = DefineByRun(spec)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        fixed = space(trial)
        variant = fixed["variant"]
        assert trial.params["variant"] == variant
        seen.add(variant)
        config = strip_variant_prefix({**trial.params, **fixed})
        train = spec.train_config(config, config["seed"], variant)
        objective = make_objective(variant, train.weights, 1000, options=train.variant_options)
        if variant == "beta_vae":
            assert "beta_vae:beta.value" in trial.params and 1 <= config["beta.value"] <= 16
        elif variant == "beta_tcvae":
            choice = trial.params["beta_tcvae:beta.choice"]
            assert objective.weights_at(25)["beta"] == [1.0, 4.0, 4.0][choice]
        else:
            assert train.variant_options == {"group_sizes": [5, 5]} and objective.weights_at(0)["beta"] == 2.0
        study.tell(trial, [1.0, 0.0])
    assert seen == {"beta_vae", "beta_tcvae", "hfvae"}


def test_grid_enumerates_variants_choices_and_seeds():
    spec = parse_spec(
        {
            **MULTI,
            "search": {"mode": "grid"},
            "variants": {
                "beta_vae": {"weights": {"beta": [1, 2, 4]}},
                "annealed_vae": {
                    "weights": {
                        "gamma": 1000,
                        "capacity": [{"schedule": "linear", "end": c, "end_step": 100} for c in (5, 25)],
                    }
                },
            },
        }
    )
    points = grid_points(spec)
    assert len(points) == (3 + 2) * 2
    assert {(p["variant"], p.get("beta.value"), p.get("capacity.end"), p["seed"]) for p in points} == {
        *(("beta_vae", b, None, s) for b in (1.0, 2.0, 4.0) for s in (0, 1)),
        *(("annealed_vae", None, c, s) for c in (5.0, 25.0) for s in (0, 1)),
    }
    for p in points:
        train = spec.train_config(strip_variant_prefix(p), p["seed"], p["variant"])
        make_objective(p["variant"], train.weights, 1000)


def test_grid_mode_refuses_ranges_and_multi_variant_specs_are_checked():
    grid = {**SPEC, "search": {"mode": "grid"}}
    with pytest.raises(SpecError, match=r"weights\.beta\.value: grid mode cannot enumerate a range"):
        parse_spec(grid)
    bad = {**MULTI, "variants": {**MULTI["variants"], "hfvae": {"options": {"group_sizes": [3, 3]}}}}
    with pytest.raises(SpecError, match=r"variants\.hfvae\.options\.group_sizes: \[3, 3\] sums to 6"):
        parse_spec(bad)
    with pytest.raises(SpecError, match=r"variants\.beta_vae\.weights\.gamma: variant 'beta_vae' takes no such"):
        parse_spec({**MULTI, "variants": {"beta_vae": {"weights": {"gamma": 1}}}})
    with pytest.raises(SpecError, match=r"variants\.beta_tcvae\.weights\.beta\.choices\.1\.value: must be >= 0"):
        parse_spec({**MULTI, "variants": {"beta_tcvae": {"weights": {"beta": [1, -4]}}}})
    with pytest.raises(SpecError, match="either variant"):
        parse_spec({**MULTI, "variant": "vae"})
    with pytest.raises(SpecError, match=r"objectives\.0\.name: 'dip_offdiag' is neither a term of every variant"):
        parse_spec({**MULTI, "objectives": [{"name": "dip_offdiag", "mode": "min"}]})
