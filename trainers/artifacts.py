"""A finished run's files (names in :mod:`trainers.outputs`): pictures, UDR codes, the
report's traversal labels, what MIG was computed from, config, metrics and the final
model; and loading that model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.config import TrainConfig
from trainers.data import GroundTruthData, make_dataset
from trainers.images import tile, write_gif, write_png
from trainers.models import TRAVERSAL_VALUES
from trainers.outputs import (
    CODES_NPZ,
    CONFIG_JSON,
    METRICS_JSON,
    MIG_NPZ,
    MODEL_PT,
    RECONSTRUCTIONS_PNG,
    TRAVERSAL_LATENTS_NPZ,
    TRAVERSALS_GIF,
    TRAVERSALS_PNG,
)
from trainers.setup import build

#: Pixels between tiles in the PNG grids (:func:`trainers.images.tile`).
TILE_PAD = 2


@torch.no_grad()
def write_artifacts(
    out: Path,
    model: torch.nn.Module,
    data: GroundTruthData,
    config: TrainConfig,
    device: torch.device,
    terms: dict[str, float],
    metrics: dict[str, float],
    details: dict[str, dict[str, np.ndarray]] | None = None,
) -> dict[str, Path]:
    """Reconstruction grid, latent traversals (PNG, one row per latent; a GIF if asked), the
    codes for UDR, the latent and KL of each traversal row for the report
    (:func:`write_traversal_latents`), the config, the final model (``model.pt``: step,
    config and weights, without the optimiser's state, which only a run that may resume
    needs), the held-out ``terms`` and ``metrics``, and, where the evaluation kept MIG's
    arrays (``details["mig"]``, :func:`trainers.evaluation.evaluate`), ``mig.npz``
    (:func:`write_mig`)."""
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    rng = torch.Generator().manual_seed(config.eval.seed)
    x = data.observations(data.sample_factors(8, rng), device, rng)
    grid = torch.cat([x, model.reconstruct(x)])
    artifacts = {"reconstructions": write_png(out / RECONSTRUCTIONS_PNG, tile(grid, 2, 8))}
    rows = model.traverse(x)
    columns = len(TRAVERSAL_VALUES)
    latents = len(rows) // columns
    artifacts["traversals"] = write_png(out / TRAVERSALS_PNG, tile(rows, latents, columns))
    if config.eval.traversal_gif:
        # The animation: frame t shows every latent (one per column) at the t-th value, there and back.
        sweep = list(range(columns)) + list(range(columns - 2, 0, -1))
        frames = [tile(rows[t::columns], 1, latents) for t in sweep]
        artifacts["traversals_gif"] = write_gif(out / TRAVERSALS_GIF, frames)
    artifacts["codes"] = write_codes(out / CODES_NPZ, model, data, config, device)
    # The report's row labels; in the trial folder only (not an artifact MLflow gets).
    labels = traversal_latents(model, x, latents)
    write_traversal_latents(out / TRAVERSAL_LATENTS_NPZ, labels, tuple(x.shape[-2:]), artifacts["codes"])
    if details and "mig" in details:
        artifacts["mig"] = write_mig(out / MIG_NPZ, details["mig"])
    artifacts["config"] = out / CONFIG_JSON
    artifacts["config"].write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    final = {
        "step": config.steps,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "model": model.state_dict(),
    }
    artifacts["checkpoint"] = save_checkpoint(out / MODEL_PT, final)
    artifacts["metrics"] = out / METRICS_JSON
    artifacts["metrics"].write_text(
        json.dumps({"steps": config.steps, "terms": terms, "metrics": metrics}, indent=2, sort_keys=True)
    )
    return artifacts


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A trial's final model (``artifacts/model.pt``, or any checkpoint of a plain run), in eval mode.

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


def write_mig(path: Path, details: dict[str, np.ndarray]) -> Path:
    """``mig.npz`` (about 1 KB), what the trial's MIG was computed from
    (:func:`trainers.metrics.mig.compute_mig`'s ``details``): ``matrix`` ``[d, K]``
    (``I(z_i; v_k)`` in nats, latent i of the mean code, factor k), ``entropy`` ``[K]``
    (``H(v_k)``), ``mig_per_factor`` ``[K]`` (``(I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)``,
    whose mean is the ``mig`` metric) and ``factor_names`` ``[K]``."""
    arrays = {
        "matrix": np.asarray(details["matrix"], dtype=np.float64),
        "entropy": np.asarray(details["entropy"], dtype=np.float64),
        "mig_per_factor": np.asarray(details["mig_per_factor"], dtype=np.float64),
        "factor_names": np.asarray(details["factor_names"], dtype=str),
    }
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
