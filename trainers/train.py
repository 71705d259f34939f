"""The plain training loop: one member, any variant, ``train(config, report)``.

It knows nothing of Ray or MLflow.  It reports to a :class:`~trainers.reporting.Reporter`
as member 0: ``on_terms(step, [terms])`` every ``log_every`` steps with each term
averaged over those steps, ``on_checkpoint(step, state)`` every ``checkpoint_every``
steps with a state that :func:`train` resumes from exactly (model, optimisers, step,
RNG streams), and, through :func:`~trainers.evaluation.finish_member`,
``on_member_end(0, result)``.  A non-finite term is reported with
``on_member_failed(0, error)`` and raised as :class:`~trainers.reporting.TrainingDiverged`
naming the step and the term.  A reporter that asks for estimates at a rung
(``estimates_wanted``) gets them (:func:`trainers.evaluation.estimate`) and may stop the run
there: :class:`~trainers.reporting.MemberStopped` is raised.

Variants whose terms are one forward pass can also train stacked, K at a time
(:mod:`trainers.pack`); :func:`trainers.members.train_members` picks the loop.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from trainers.checkpoint import CheckpointError, check_fit
from trainers.config import TrainConfig
from trainers.data import make_dataset
from trainers.evaluation import estimate, finish_member
from trainers.precision import resolve_precision
from trainers.reporting import MemberStopped, Reporter, TermAccumulator, TrainResult, checkpoint_due
from trainers.setup import build, resolve_device, stream_seeds


def train(
    config: TrainConfig,
    report: Reporter,
    resume: Mapping[str, Any] | None = None,
    output_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``config`` and return the held-out result; see the module docstring."""
    config.validate()
    device = resolve_device(config.device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    data = make_dataset(config.dataset, **config.dataset_options)
    seeds = stream_seeds(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds["init"])
        objective, model = build(config, data)
    model.to(device)
    if config.compile:
        # In place (nn.Module.compile): parameter names, and so checkpoints, stay as they are.
        for part in ("encoder", "decoder"):
            if isinstance(getattr(model, part, None), torch.nn.Module):
                getattr(model, part).compile()
    optimizers = objective.make_optimizers(model, config.lr)
    data_rng = torch.Generator().manual_seed(seeds["data"])
    noise_rng = torch.Generator(device=device).manual_seed(seeds["noise"])
    start = 0
    if resume is not None:
        start = _restore(resume, config, model, optimizers, data_rng, noise_rng)

    def next_batch() -> torch.Tensor:
        return data.observations(data.sample_factors(config.batch_size, data_rng), device, data_rng)

    precision = resolve_precision(config.precision, device)
    accumulator = TermAccumulator()
    began = time.perf_counter()
    model.train()
    for step in range(start, config.steps):
        terms = objective.train_step(model, optimizers, next_batch, step, noise_rng, precision)
        accumulator.add(step, terms)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            (means,), diverged = accumulator.pop_members()
            if diverged:
                report.on_member_failed(0, diverged[0])
                raise diverged[0]
            report.on_terms(done, [means])
        request = report.estimates_wanted(done) if done < config.steps else None
        if request is not None:
            values = estimate(model, objective, data, config, device, request, done)
            if report.on_estimates(done, {0: values}):
                raise MemberStopped(done)  # before the checkpoint: a stopped run has no state to resume
        if checkpoint_due(report, done, config.checkpoint_every, config.steps):
            report.on_checkpoint(done, training_state(done, config, model, optimizers, data_rng, noise_rng))
    train_seconds = time.perf_counter() - began
    images = (config.steps - start) * config.batch_size
    return finish_member(0, model, objective, data, config, device, report, train_seconds, images, output_dir)


def training_state(
    step: int,
    config: TrainConfig,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    data_rng: torch.Generator,
    noise_rng: torch.Generator,
) -> dict[str, Any]:
    """Everything needed to continue exactly where training stands (``weights_only``-loadable).

    Tensors are copied: the caller may keep the state while training goes on.
    """
    return {
        "step": step,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "model": copy.deepcopy(model.state_dict()),
        "optimizers": {name: copy.deepcopy(opt.state_dict()) for name, opt in optimizers.items()},
        "data_rng": data_rng.get_state(),
        "noise_rng": noise_rng.get_state(),
    }


def _restore(
    state: Mapping[str, Any],
    config: TrainConfig,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    data_rng: torch.Generator,
    noise_rng: torch.Generator,
) -> int:
    """Load ``state`` (from :func:`training_state`) into the run; its step.  A state that does
    not fit (:func:`~trainers.checkpoint.check_fit`) raises :class:`CheckpointError`."""
    try:
        check_fit(json.loads(state["config"]), config)
        model.load_state_dict(state["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        data_rng.set_state(state["data_rng"])
        noise_rng.set_state(state["noise_rng"])
        return int(state["step"])
    except (KeyError, TypeError, RuntimeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint does not fit this model: {type(error).__name__}: {error}") from None
