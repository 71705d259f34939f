"""The training loop: ``train(config, report)``.

It knows nothing of Ray or MLflow.  It calls ``report.on_terms(step, terms)`` every
``log_every`` steps with each term averaged over those steps,
``report.on_checkpoint(step, state)`` every ``checkpoint_every`` steps with a state
that :func:`train` can resume from exactly (model, optimiser, step, RNG streams),
and ``report.on_end(result)`` with the held-out terms, the metrics and the
artifact files.  A non-finite term raises :class:`TrainingDiverged` naming the step
and the term.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from trainers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainers.config import ModelOptions, TrainConfig
from trainers.data import GroundTruthData, make_dataset
from trainers.images import tile, write_gif, write_png
from trainers.metrics import METRICS
from trainers.metrics.threads import metric_threads
from trainers.models import TRAVERSAL_VALUES
from trainers.objectives import Objective, make_objective
from trainers.precision import resolve_precision


class TrainingDiverged(RuntimeError):
    """A term became NaN or infinite."""

    def __init__(self, step: int, term: str) -> None:
        super().__init__(f"term {term!r} became non-finite at step {step}")
        self.step, self.term = step, term


@dataclass
class TrainResult:
    steps: int
    #: Held-out terms: each objective term averaged over ``eval.recon_points`` images.
    terms: dict[str, float]
    metrics: dict[str, float]
    artifacts: dict[str, Path] = field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    images_per_second: float = 0.0


class Reporter(Protocol):
    def on_terms(self, step: int, terms: Mapping[str, float]) -> None: ...
    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...
    def wants_checkpoint(self, step: int) -> bool:
        """A checkpoint now, off the ``checkpoint_every`` grid (a study being stopped asks for one)."""
        ...


def checkpoint_due(report: Reporter | Any, step: int, every: int, last: int) -> bool:
    """Whether to checkpoint after ``step``: every ``every`` steps, or when the reporter asks;
    never after the ``last`` step (the trial ends there)."""
    return step < last and ((bool(every) and step % every == 0) or report.wants_checkpoint(step))


class NullReporter:
    """Reports nowhere; for scripts and tests that only want the result."""

    def on_terms(self, step: int, terms: Mapping[str, float]) -> None:
        pass

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        pass

    def on_end(self, result: TrainResult) -> None:
        pass

    def wants_checkpoint(self, step: int) -> bool:
        return False


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def stream_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for parameter init, the data stream and the sampling noise."""
    init, data, noise = np.random.SeedSequence(seed).generate_state(3)
    return {"init": int(init), "data": int(data), "noise": int(noise)}


class TermAccumulator:
    """Sums terms on the device between reports, so logging costs no sync per step.

    It also keeps, per term, the first step at which it was non-finite, so a
    divergence is reported at its exact step and with the term that went first
    (later NaNs are consequences).  With ``members`` (a pack, trainers.pack) every
    term is a ``[members]`` tensor and each member is accounted for separately.
    """

    def __init__(self, members: int | None = None) -> None:
        self.shape = () if members is None else (members,)
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.first_bad: torch.Tensor | None = None
        self.count = 0

    def add(self, step: int, terms: Mapping[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float().reshape(self.shape) for v in terms.values()], dim=-1)
        if self.sums is None:
            self.names = list(terms)
            self.sums = torch.zeros_like(values)
            self.first_bad = torch.full_like(values, -1.0)
        self.sums += values
        unseen = (self.first_bad < 0) & ~torch.isfinite(values)
        self.first_bad = torch.where(unseen, torch.full_like(values, float(step)), self.first_bad)
        self.count += 1

    def pop_members(self) -> tuple[list[dict[str, float]], dict[int, TrainingDiverged]]:
        """Each member's means, and a :class:`TrainingDiverged` for each member that went non-finite."""
        assert self.sums is not None and self.first_bad is not None
        means = (self.sums / self.count).reshape(-1, len(self.names)).tolist()
        first_bad = self.first_bad.reshape(-1, len(self.names)).tolist()
        self.sums, self.first_bad, self.count = None, None, 0
        diverged = {}
        for member, row in enumerate(first_bad):
            bad = [(at, i) for i, at in enumerate(row) if at >= 0]
            if bad:
                at, i = min(bad)
                diverged[member] = TrainingDiverged(int(at), self.names[i])
        return [dict(zip(self.names, row, strict=True)) for row in means], diverged

    def pop(self) -> dict[str, float]:
        """The means of a single run; raises :class:`TrainingDiverged` if it went non-finite."""
        (means,), diverged = self.pop_members()
        if diverged:
            raise diverged[0]
        return means


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
            report.on_terms(done, accumulator.pop())
        if checkpoint_due(report, done, config.checkpoint_every, config.steps):
            report.on_checkpoint(done, training_state(done, config, model, optimizers, data_rng, noise_rng))
    train_seconds = time.perf_counter() - began

    began = time.perf_counter()
    terms, metrics = evaluate(model, objective, data, config, device)
    result = TrainResult(
        steps=config.steps,
        terms=terms,
        metrics=metrics,
        train_seconds=train_seconds,
        eval_seconds=time.perf_counter() - began,
        images_per_second=(config.steps - start) * config.batch_size / max(train_seconds, 1e-9),
    )
    if output_dir is not None:
        state = training_state(config.steps, config, model, optimizers, data_rng, noise_rng)
        result.artifacts = write_artifacts(Path(output_dir), model, data, config, device, state)
        result.artifacts["metrics"] = Path(output_dir) / "metrics.json"
        result.artifacts["metrics"].write_text(
            json.dumps({"steps": config.steps, "terms": terms, "metrics": metrics}, indent=2, sort_keys=True)
        )
    report.on_end(result)
    return result


def build(config: TrainConfig, data: GroundTruthData) -> tuple[Objective, torch.nn.Module]:
    """The objective and the freshly initialised network of ``config`` on ``data``."""
    objective = make_objective(
        config.variant,
        config.weights,
        data.size,
        config.estimator,
        config.variant_options,
        likelihood=config.likelihood(),
    )
    return objective, objective.new_model(config.latent_dim, data.observation_shape[0], config.kernels)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A trial's final model (``artifacts/model.pt``, or any checkpoint), in eval mode.

    Example::

        model = load_model(study_dir / results.loc[0, "checkpoint"])
        codes = model.representation(images)
    """
    saved = load_checkpoint(path, map_location=device)
    config = TrainConfig.from_dict(json.loads(saved["config"]))
    data = make_dataset(config.dataset, **config.dataset_options)
    _, model = build(config, data)
    model.load_state_dict(saved["model"])
    return model.to(device).eval()


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


#: Fields that must agree between a checkpoint and the run resuming it.
_STRUCTURAL = (
    "variant",
    "variant_options",
    "dataset",
    "dataset_options",
    "latent_dim",
    "kernels",
    "decoder",
    "decoder_sigma",
    "decoder_sigma_learned",
    "batch_size",
    "steps",
    "seed",
)


#: Defaults of the structural fields added after checkpoints were first written.
_FIELD_DEFAULTS = {name: getattr(ModelOptions, name) for name in ("decoder", "decoder_sigma", "decoder_sigma_learned")}


def _restore(
    state: Mapping[str, Any],
    config: TrainConfig,
    model: torch.nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    data_rng: torch.Generator,
    noise_rng: torch.Generator,
) -> int:
    try:
        saved = json.loads(state["config"])
        for name in _STRUCTURAL:
            # Checkpoints written before a field existed hold its default.
            if saved.get(name, _FIELD_DEFAULTS.get(name)) != getattr(config, name):
                raise CheckpointError(
                    f"checkpoint was written for {name}={saved[name]!r}, this run has {getattr(config, name)!r}"
                )
        model.load_state_dict(state["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        data_rng.set_state(state["data_rng"])
        noise_rng.set_state(state["noise_rng"])
        return int(state["step"])
    except (KeyError, TypeError, RuntimeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint does not fit this model: {type(error).__name__}: {error}") from None


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    objective: Objective,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
) -> tuple[dict[str, float], dict[str, float]]:
    """Held-out terms (same definitions as in training, at the final step) and metrics."""
    model.eval()
    rng = torch.Generator().manual_seed(config.eval.seed)
    noise = torch.Generator(device=device).manual_seed(config.eval.seed + 1)
    totals: dict[str, float] = {}
    seen = 0
    for start in range(0, config.eval.recon_points, config.batch_size):
        n = min(config.batch_size, config.eval.recon_points - start)
        if n < 2:
            break
        x = data.observations(data.sample_factors(n, rng), device, rng)
        terms = objective.forward_terms(model, x, config.steps, noise, "fp32")
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value) * n
        seen += n
    terms = {name: total / seen for name, total in totals.items()}
    metrics: dict[str, float] = {}
    for name in config.eval.metrics:
        metrics.update(compute_metric(name, model, data, config, device))
    return terms, metrics


def compute_metric(
    name: str, model: torch.nn.Module, data: GroundTruthData, config: TrainConfig, device: torch.device
) -> dict[str, float]:
    """Evaluate metric ``name`` on the representation kind it is defined on."""
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
    options = config.eval.metric_options.get(name, {})
    # The trial's CPU share, whatever set torch's threads since (a metric fitting on every core
    # beside training trials runs several times slower).
    with torch.no_grad(), metric_threads(config.num_threads):
        return metric.compute(representation, data, seed=seed, device=device, **options)


@torch.no_grad()
def write_artifacts(
    out: Path,
    model: torch.nn.Module,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
    state: dict[str, Any],
) -> dict[str, Path]:
    """Reconstruction grid, latent traversals (PNG, one row per latent; a GIF if asked), the
    codes for UDR, the latent and KL of each traversal row for the report
    (:func:`write_traversal_latents`), the config, and the final model (``model.pt``: step,
    config and weights, without the optimiser's state, which only a run that may resume needs)."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    rng = torch.Generator().manual_seed(config.eval.seed)
    x = data.observations(data.sample_factors(8, rng), device, rng)
    grid = torch.cat([x, model.reconstruct(x)])
    artifacts = {"reconstructions": write_png(out / "reconstructions.png", tile(grid, 2, 8))}
    rows = model.traverse(x)
    columns = len(TRAVERSAL_VALUES)
    latents = len(rows) // columns
    artifacts["traversals"] = write_png(out / "traversals.png", tile(rows, latents, columns))
    if config.eval.traversal_gif:
        # The animation: frame t shows every latent (one per column) at the t-th value, there and back.
        sweep = list(range(columns)) + list(range(columns - 2, 0, -1))
        frames = [tile(rows[t::columns], 1, latents) for t in sweep]
        artifacts["traversals_gif"] = write_gif(out / "traversals.gif", frames)
    artifacts["codes"] = write_codes(out / "codes.npz", model, data, config, device)
    # The report's row labels; in the trial folder only (not an artifact MLflow gets).
    labels = traversal_latents(model, x, latents)
    write_traversal_latents(out / TRAVERSAL_LATENTS_FILE, labels, tuple(x.shape[-2:]), artifacts["codes"])
    artifacts["config"] = out / "config.json"
    artifacts["config"].write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    final = {key: state[key] for key in ("step", "config", "model") if key in state}
    artifacts["checkpoint"] = save_checkpoint(out / "model.pt", final)
    return artifacts


#: Beside ``traversals.png``: what its rows are, for the report's labels (see :func:`write_traversal_latents`).
TRAVERSAL_LATENTS_FILE = "traversal_latents.npz"
#: Pixels between tiles in the PNG grids (:func:`trainers.images.tile`).
TILE_PAD = 2


def traversal_latents(model: torch.nn.Module, x: torch.Tensor, rows: int) -> list[int]:
    """The latent each row of ``model.traverse(x)`` sweeps; -1 for a row that sweeps no single
    latent (a JointVAE's discrete variables)."""
    if hasattr(model, "active_dims"):  # the IBP-VAE shows its active dimensions only
        dims = [int(d) for d in model.active_dims(x)]
    else:
        dims = list(range(min(rows, int(getattr(model, "latent_dim", rows)))))
    return dims + [-1] * (rows - len(dims))


def write_traversal_latents(path: Path, latents: list[int], image_size: tuple[int, int], codes: Path) -> Path:
    """``traversal_latents.npz`` (about 1 KB): ``latent`` (the latent row r of ``traversals.png``
    sweeps, -1: none), ``values`` (the value of each column), ``tile`` (height, width, pad of the
    PNG's tiles) and ``kl`` (per-latent KL from ``codes.npz``; absent without a Gaussian posterior).
    The pictures themselves are ``traversals.png`` and ``reconstructions.png``, stored once."""
    arrays = {
        "latent": np.asarray(latents, dtype=np.int32),
        "values": np.asarray(TRAVERSAL_VALUES, dtype=np.float32),
        "tile": np.asarray([*image_size, TILE_PAD], dtype=np.int32),
    }
    with np.load(codes) as saved:
        if "kl" in saved.files:
            arrays["kl"] = saved["kl"].astype(np.float32)
    with path.open("wb") as out:
        np.savez(out, **arrays)
    return path


@torch.no_grad()
def write_codes(
    path: Path, model: torch.nn.Module, data: GroundTruthData, config: TrainConfig, device: torch.device
) -> Path:
    """``codes.npz``: ``mean`` (N × d mean codes of ``eval.udr_points`` inputs) and, for
    Gaussian posteriors, ``kl`` (per-latent KL(q(z_i|x) ‖ N(0, 1)) averaged over them).

    The inputs are drawn from the evaluation seed, not the trial's, so every trial of a
    study encodes the same images: UDR compares codes of different seeds input by input.
    """
    rng = torch.Generator().manual_seed(config.eval.seed + 3)
    means, kls = [], []
    for start in range(0, config.eval.udr_points, config.batch_size):
        n = min(config.batch_size, config.eval.udr_points - start)
        x = data.observations(data.sample_factors(n, rng), device, rng)
        if hasattr(model, "posterior"):
            # The posterior mean is the representation of a Gaussian model: encode once.
            mu, logvar = (t.float() for t in model.posterior(x))
            means.append(mu.cpu())
            kls.append((0.5 * (mu.square() + logvar.exp() - logvar - 1)).sum(0).cpu())
        else:
            means.append(model.representation(x).float().cpu())
    arrays = {"mean": torch.cat(means).numpy()}
    if kls:
        arrays["kl"] = (torch.stack(kls).sum(0) / config.eval.udr_points).numpy()
    with path.open("wb") as out:
        np.savez(out, **arrays)
    return path
