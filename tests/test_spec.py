from pathlib import Path

import pytest

from study.spec import SpecError, load_spec, parse_spec
from trainers.objectives import make_objective

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))
BASE = {"name": "t", "variant": "beta_vae", "objectives": [{"name": "recon", "mode": "min"}]}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_spec_is_valid(path):
    spec = load_spec(path)
    assert spec.search.num_trials >= 1


def test_default_example_is_the_demo_the_readme_promises():
    spec = load_spec(Path(__file__).parent.parent / "examples" / "default.yaml")
    assert [(o.name, o.mode) for o in spec.objectives] == [("recon", "min"), ("mig", "max")]
    assert spec.dataset == "dsprites" and spec.tracking.uri is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"variant": "vq_vae"}, r"variant: unknown variant 'vq_vae'"),
        ({"weights": {"beta": -1}}, r"weights\.beta\.value: must be >= 0, got -1"),
        (
            {"weights": {"beta": {"schedule": "constant", "value": {"low": -1, "high": 2}}}},
            r"weights\.beta\.value\.low: must be >= 0",
        ),
        (
            {"weights": {"beta": {"schedule": "constant", "value": {"low": 3, "high": 2}}}},
            r"weights\.beta\.value\.high: must exceed low",
        ),
        (
            {
                "weights": {
                    "beta": {"schedule": "linear", "end": 4, "start_step": 50, "end_step": {"low": 10, "high": 100}}
                }
            },
            r"weights\.beta\.end_step: must be after start_step",
        ),
        (
            {"weights": {"beta": {"schedule": ["constant", "sawtooth"]}}},
            r"weights\.beta\.schedule: unknown schedule 'sawtooth'",
        ),
        (
            {"weights": {"beta": {"schedule": "constant", "value": 1, "period": 2}}},
            r"weights\.beta\.period: not a parameter",
        ),
        ({"weights": {"capacity": 5}}, r"weights\.capacity: variant 'beta_vae' takes no such weight"),
        ({"objectives": [{"name": "dci", "mode": "max"}]}, r"objectives\.0\.name: 'dci' is neither"),
        ({"objectives": [{"name": "mig", "mode": "up"}]}, r"objectives\.0\.mode"),
        ({"objectives": []}, r"objectives: List should have at least 1 item"),
        ({"training": {"steps": 0}}, r"training\.steps"),
        (
            {"training": {"log_every": 10, "checkpoint_every": 15}},
            r"training\.checkpoint_every: must be 0 or a multiple",
        ),
        ({"training": {"device": "tpu"}}, r"training\.device"),
        ({"seeds": [-1]}, r"seeds: each must be in \[0, 9223372036854775807\]"),
        ({"seeds": [2**63]}, r"seeds: each must be in \[0, 9223372036854775807\]"),
        ({"seeds": [0, True]}, r"seeds: must be a number, got true"),
        # A yes/no where a number belongs, in every section.
        ({"training": {"steps": True}}, r"training\.steps: must be a number, got true"),
        ({"model": {"latent_dim": True}}, r"model\.latent_dim: must be a number, got true"),
        ({"evaluation": {"recon_points": False}}, r"evaluation\.recon_points: must be a number, got false"),
        ({"search": {"num_trials": True}}, r"search\.num_trials: must be a number, got true"),
        ({"resources": {"gpus": True}}, r"resources\.gpus: must be a number, got true"),
        (
            {"weights": {"beta": {"schedule": "constant", "value": {"low": True, "high": 2}}}},
            r"weights\.beta\.value\.low: must be a number, got true",
        ),
        # Values that can only be mistakes.
        ({"training": {"steps": 10**12}}, r"training\.steps: must be in \[1, 1000000000\]"),
        ({"training": {"batch_size": 10**9}}, r"training\.batch_size: must be in \[2, 65536\]"),
        ({"training": {"lr": 1e308}}, r"training\.lr: must be in \(0, 1000\]"),
        ({"model": {"latent_dim": 10**7}}, r"model\.latent_dim: must be in \[2, 4096\]"),
        ({"search": {"num_trials": 10**7}}, r"search\.num_trials: Input should be less than or equal to 1000000"),
        ({"resources": {"gpus": 1000}}, r"resources\.gpus: Input should be less than or equal to 64"),
        ({"search": {"num_trials": 0}}, r"search\.num_trials"),
        ({"bogus": 1}, r"bogus: Extra inputs are not permitted"),
        ({"name": "has space"}, r"name: String should match pattern"),
        ({"storage": {"path": "/tmp/x", "endpoint": "http://127.0.0.1:1"}}, r"storage\.endpoint: only for an s3://"),
    ],
)
def test_errors_name_the_field(changes, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({**BASE, **changes}, "study.yaml")


def test_unreadable_and_malformed_files_are_named(tmp_path):
    with pytest.raises(SpecError, match=r"missing\.yaml: cannot read spec"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: not valid YAML"):
        load_spec(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: t\ntraining:\n  steps: 5\nvariant: beta_vae\ntraining:\n  steps: 50\n")
    with pytest.raises(SpecError, match=r"twice\.yaml: line 5: key 'training' given twice \(first on line 2\)"):
        load_spec(twice)
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: t\ntraining:\n  steps: 5\n  steps: 50\n")
    with pytest.raises(SpecError, match=r"nested\.yaml: line 4: key 'steps' given twice \(first on line 3\)"):
        load_spec(nested)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: t\n# béta\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin\.yaml: not UTF-8 text"):
        load_spec(latin)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match=r"list\.yaml: a study spec must be a YAML mapping"):
        load_spec(listing)


def test_train_config_merges_fixed_and_sampled_parameters():
    spec = parse_spec(
        {
            **BASE,
            "variant": "annealed_vae",
            "weights": {
                "gamma": 100,
                "capacity": {"schedule": "linear", "end": {"low": 5, "high": 50}, "end_step": 2000},
            },
            "training": {"steps": 77, "batch_size": 32},
            "resources": {"cpus": 2},
        }
    )
    config = spec.train_config({"capacity.end": 12.5}, seed=3)
    assert config.weights == {
        "gamma": {"schedule": "constant", "value": 100},
        "capacity": {"schedule": "linear", "end": 12.5, "end_step": 2000},
    }
    assert (config.steps, config.batch_size, config.seed, config.num_threads) == (77, 32, 3, 2)
    objective = make_objective(config.variant, config.weights, 1000)
    assert objective.weights_at(1000)["capacity"] == pytest.approx(6.25)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_trains_as_written(path):
    """Each variant an example names trains a few steps with a configuration the study would run."""
    import optuna

    from study.space import DefineByRun, grid_points, strip_variant_prefix
    from trainers.config import EvalConfig
    from trainers.reporting import NullReporter
    from trainers.train import train

    spec = load_spec(path)
    if spec.search.mode == "grid":
        points = grid_points(spec)
        configs = [next(p for p in points if p["variant"] == v) for v in spec.variant_specs()]
    else:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        configs, seen = [], set()
        space = DefineByRun(spec)
        for _ in range(50):
            trial = study.ask()
            fixed = space(trial)
            config = strip_variant_prefix({**trial.params, **fixed})
            study.tell(trial, 0.0)
            if config["variant"] not in seen:
                seen.add(config["variant"])
                configs.append(config)
    assert {c["variant"] for c in configs} == set(spec.variant_specs())
    for config in configs:
        params = {k: v for k, v in config.items() if k not in ("seed", "variant")}
        train_config = spec.train_config(params, config["seed"], config["variant"])
        train_config.steps, train_config.batch_size, train_config.checkpoint_every = 3, 8, 0
        train_config.eval = EvalConfig(recon_points=8, metric_options={"mig": {"num_points": 200}})
        result = train(train_config, NullReporter())
        assert set(spec_objective.name for spec_objective in spec.objectives) <= {*result.terms, *result.metrics}
