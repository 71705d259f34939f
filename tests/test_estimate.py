"""The cheap estimates of Pareto stopping's rungs (trainers.evaluation.estimate): the final
evaluation's definitions on fewer images and points, the same seeds."""

import torch

from trainers.config import EvalConfig, TrainConfig
from trainers.data import make_dataset
from trainers.evaluation import compute_metric, estimate, evaluate
from trainers.reporting import EstimateRequest
from trainers.setup import build


def _model():
    config = TrainConfig(
        variant="beta_vae",
        steps=10,
        batch_size=16,
        seed=0,
        eval=EvalConfig(recon_points=64, metrics=["mig"], metric_options={"mig": {"num_points": 400}}, udr_points=16),
    )
    data = make_dataset(config.dataset, **config.dataset_options)
    torch.manual_seed(0)
    objective, model = build(config, data)
    return config, data, objective, model


def test_with_the_final_sizes_an_estimate_is_the_final_evaluation():
    config, data, objective, model = _model()
    model.train()
    request = EstimateRequest(("recon", "mig"), recon_points=64, metric_points=400)
    values = estimate(model, objective, data, config, torch.device("cpu"), request, config.steps)
    assert model.training  # its mode is given back: training goes on
    terms, metrics = evaluate(model, objective, data, config, torch.device("cpu"))
    assert values == {"recon": terms["recon"], "mig": metrics["mig"]}


def test_a_cheap_estimate_uses_its_own_sizes():
    config, data, objective, model = _model()
    cpu = torch.device("cpu")
    request = EstimateRequest(("recon", "mig"), recon_points=32, metric_points=100)
    values = estimate(model, objective, data, config, cpu, request, config.steps)
    small = TrainConfig(
        **{
            **config.__dict__,
            "eval": EvalConfig(
                **{**config.eval.__dict__, "recon_points": 32, "metric_options": {"mig": {"num_points": 100}}}
            ),
        }
    )
    terms, _ = evaluate(model, objective, data, small, cpu)
    assert values["recon"] == terms["recon"]
    assert values["mig"] == compute_metric("mig", model, data, small, cpu)["mig"]
    only = estimate(model, objective, data, config, cpu, EstimateRequest(("recon",), 32, 100), config.steps)
    assert set(only) == {"recon"}  # no metric computed that no objective names
