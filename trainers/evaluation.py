"""The end of training, the same for every member of either loop: held-out terms and
metrics, the member's files, its :class:`~trainers.reporting.TrainResult` reported."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from trainers.artifacts import write_artifacts
from trainers.config import TrainConfig
from trainers.data import GroundTruthData
from trainers.metrics import METRICS
from trainers.metrics.threads import metric_threads
from trainers.objectives import Objective
from trainers.reporting import EstimateRequest, Reporter, TrainResult


def finish_member(
    member: int,
    model: torch.nn.Module,
    objective: Objective,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
    report: Reporter,
    train_seconds: float,
    images_trained: int,
    output_dir: str | Path | None = None,
) -> TrainResult:
    """Evaluate member ``member``'s trained ``model``, write its files into ``output_dir``
    (none without one) and report its end; returns its result.

    ``train_seconds`` and ``images_trained`` are the run's: a pack's members trained
    together, each at the pack's step rate."""
    began = time.perf_counter()
    details: dict[str, dict[str, np.ndarray]] = {}
    terms, metrics = evaluate(model, objective, data, config, device, details)
    result = TrainResult(
        steps=config.steps,
        terms=terms,
        metrics=metrics,
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - began,
        images_per_second=images_trained / max(train_seconds, 1e-9),
    )
    if output_dir is not None:
        result.artifacts = write_artifacts(Path(output_dir), model, data, config, device, terms, metrics, details)
    report.on_member_end(member, result)
    return result


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    objective: Objective,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
    details: dict[str, dict[str, np.ndarray]] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Held-out terms (same definitions as in training, at the final step) and metrics.

    ``details``, when given, gets the arrays behind each metric that keeps them
    (``Metric.details``), by metric name: ``details["mig"]`` holds MIG's mutual-information
    matrix, factor entropies, per-factor gaps and factor names, computed once with the score."""
    model.eval()
    terms = heldout_terms(model, objective, data, config, device, config.eval.recon_points, config.steps)
    metrics: dict[str, float] = {}
    for name in config.eval.metrics:
        kept: dict[str, np.ndarray] | None = {} if details is not None and METRICS[name].details else None
        metrics.update(compute_metric(name, model, data, config, device, kept))
        if kept:
            details[name] = kept
    return terms, metrics


def heldout_terms(
    model: torch.nn.Module,
    objective: Objective,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
    points: int,
    step: int,
) -> dict[str, float]:
    """Every term averaged over ``points`` held-out images (the eval seed's), weights as at ``step``."""
    rng = torch.Generator().manual_seed(config.eval.seed)
    noise = torch.Generator(device=device).manual_seed(config.eval.seed + 1)
    totals: dict[str, float] = {}
    seen = 0
    for start in range(0, points, config.batch_size):
        n = min(config.batch_size, points - start)
        if n < 2:
            break
        x = data.observations(data.sample_factors(n, rng), device, rng)
        terms = objective.forward_terms(model, x, step, noise, "fp32")
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value) * n
        seen += n
    return {name: total / seen for name, total in totals.items()}


@torch.no_grad()
def estimate(
    model: torch.nn.Module,
    objective: Objective,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
    request: EstimateRequest,
    step: int,
) -> dict[str, float]:
    """Cheap estimates of ``request.names`` for a model still training (a rung of Pareto stopping).

    Held-out terms as :func:`evaluate` computes them, on ``request.recon_points`` images instead
    of ``eval.recon_points``; each metric that yields a requested value as at the end, on
    ``request.metric_points`` points where it takes a ``num_points`` option (MIG, IRS, ...; a
    metric without one runs as configured).  The same seeds as the final evaluation, so two
    trials are compared on the same images and points; training's own random streams are not
    touched.  The model's train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        wanted = set(request.names)
        values: dict[str, float] = {}
        terms = heldout_terms(model, objective, data, config, device, request.recon_points, step)
        values.update({name: value for name, value in terms.items() if name in wanted})
        for name in config.eval.metrics:
            metric = METRICS[name]
            if not wanted & set(metric.values):
                continue
            options = {k: dict(v) for k, v in config.eval.metric_options.items()}
            if "num_points" in metric.options:
                options[name] = {**options.get(name, {}), "num_points": request.metric_points}
            cheap = dataclasses.replace(config, eval=dataclasses.replace(config.eval, metric_options=options))
            values.update({k: v for k, v in compute_metric(name, model, data, cheap, device).items() if k in wanted})
        return values
    finally:
        model.train(was_training)


def compute_metric(
    name: str,
    model: torch.nn.Module,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
    details: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Evaluate metric ``name`` on the representation kind it is defined on; a metric that
    keeps its arrays (``Metric.details``) fills ``details`` when one is given."""
    metric = METRICS[name]
    seed = config.eval.seed
    if metric.representation == "mean":
        representation = model.representation
    elif metric.representation == "sampled":
        noise = torch.Generator(device=device).manual_seed(seed + 2)
        representation = lambda x: model.sample_representation(x, noise)  # noqa: E731
    else:
        if not hasattr(model, "posterior"):
            raise ValueError(f"eval.metrics: {name} needs a Gaussian posterior; {config.variant} has none")
        representation = model.posterior
    options = dict(config.eval.metric_options.get(name, {}))
    if details is not None and metric.details:
        options["details"] = details
    # The trial's CPU share, whatever set torch's threads since (a metric fitting on every core
    # beside training trials runs several times slower).
    with torch.no_grad(), metric_threads(config.num_threads):
        return metric.compute(representation, data, seed=seed, device=device, **options)
