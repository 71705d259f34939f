"""A trial's model pictures, labelled: reconstructions and latent traversals.

Every trial writes ``traversals.png`` (row r sweeps one latent over the traversal values,
every other latent held at the first input's mean code), ``reconstructions.png`` (8 inputs
above their reconstructions) and, beside them, ``traversal_latents.npz``
(``trainers.artifacts.write_traversal_latents``): which latent each row sweeps, the values,
the tile geometry and each latent's KL(q(z_i|x) ‖ N(0, 1)) averaged over the UDR inputs.
Here the rows are cut out of the PNG, sorted by KL (largest first), labelled ``z<i>``
with their KL, and the **inactive** latents, KL below :data:`analysis.udr.KL_ACTIVE`
(0.01 nats, the threshold UDR uses), are drawn greyed.  A trial with no active latent has
**collapsed** (its posterior is the prior: every traversal row is the same image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from analysis.folder import TrialFiles
from analysis.udr import KL_ACTIVE


@dataclass
class TrialPictures:
    """A trial's pictures (:func:`load_pictures`); images are float arrays in [0, 1]."""

    inputs: np.ndarray  # [N, H, W]
    reconstructions: np.ndarray  # [N, H, W]
    traversals: np.ndarray  # [rows, values, H, W]
    values: np.ndarray  # [values]
    latent: np.ndarray  # [rows]: the latent each row sweeps (-1: none, e.g. a discrete variable)
    kl: np.ndarray | None  # [latents] per-latent KL, None without a Gaussian posterior

    def row_kl(self) -> np.ndarray:
        """The KL of each traversal row's latent (NaN where unknown)."""
        out = np.full(len(self.latent), np.nan)
        if self.kl is not None:
            known = (self.latent >= 0) & (self.latent < len(self.kl))
            out[known] = self.kl[self.latent[known]]
        return out

    @property
    def active_units(self) -> int | None:
        """Latents with KL ≥ :data:`KL_ACTIVE` (None: no KL saved)."""
        return None if self.kl is None else int((self.kl >= KL_ACTIVE).sum())

    @property
    def collapsed(self) -> bool:
        """No active latent: the posterior collapsed to the prior."""
        return self.active_units == 0


def _tiles(grid: np.ndarray, rows: int, columns: int, height: int, width: int, pad: int) -> np.ndarray:
    """Cut a tiled PNG grid (``trainers.images.tile``) back into ``[rows, columns, H, W]``."""
    out = np.empty((rows, columns, height, width), dtype=np.float32)
    for r in range(rows):
        for c in range(columns):
            top, left = pad + r * (height + pad), pad + c * (width + pad)
            out[r, c] = grid[top : top + height, left : left + width]
    return out


def _gray(path: Path) -> np.ndarray:
    image = plt.imread(path)
    return image if image.ndim == 2 else image[..., 0]


def load_pictures(trial: TrialFiles) -> TrialPictures | None:
    """A trial's pictures, cut into tiles, with each traversal row's latent and KL.

    Args:
        trial: The trial's files (``StudyFiles(study_dir).trial(trial_id)``).

    Returns:
        The pictures, or None when the trial has none with row labels (it failed, or was
        trained before ``traversal_latents.npz`` was written).
    """
    files = [trial.traversal_latents, trial.traversals, trial.reconstructions]
    if not all(f.is_file() for f in files):
        return None
    with np.load(files[0]) as data:
        latent, values = data["latent"], data["values"]
        height, width, pad = (int(v) for v in data["tile"])
        kl = data["kl"] if "kl" in data.files else None
    traversals = _tiles(_gray(files[1]), len(latent), len(values), height, width, pad)
    pairs = _tiles(_gray(files[2]), 2, 8, height, width, pad)
    return TrialPictures(pairs[0], pairs[1], traversals, values, latent, kl)


def _strip(images: np.ndarray, columns: int, pad: int) -> np.ndarray:
    """``images`` [n, H, W] side by side with white gaps, white where fewer than ``columns``."""
    height, width = images.shape[1:]
    out = np.ones((height, columns * (width + pad) - pad))
    for c, image in enumerate(images[:columns]):
        out[:, c * (width + pad) : c * (width + pad) + width] = image
    return out


def _show(ax: plt.Axes, image: np.ndarray, alpha: float = 1.0) -> None:
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def traversal_figure(pictures: TrialPictures, title: str) -> plt.Figure:
    """Reconstructions above, traversals below: one row per latent, sorted by KL, labelled, inactive greyed.

    Each row is one image (its tiles side by side with white gaps) on one axes: a figure of
    rows × values axes spent most of a report's time drawing axes.

    Args:
        pictures: The trial's pictures.
        title: The figure's title (the trial's name).

    Returns:
        The matplotlib figure (close it after saving).
    """
    kl = pictures.row_kl()
    # Largest KL first; rows without a KL (discrete variables) last, in their order.
    order = sorted(range(len(kl)), key=lambda r: (np.isnan(kl[r]), -np.nan_to_num(kl[r], nan=0.0), r))
    columns = len(pictures.values)
    width = pictures.traversals.shape[-1]
    pad = max(1, width // 16)
    rows = 2 + len(order)
    fig, axes = plt.subplots(rows, 1, figsize=(0.62 * columns + 1.9, 0.62 * rows + 0.75), squeeze=False)
    axes = axes[:, 0]
    _show(axes[0], _strip(pictures.inputs, columns, pad))
    _show(axes[1], _strip(pictures.reconstructions, columns, pad))
    axes[0].set_ylabel("input", rotation=0, ha="right", va="center", fontsize=8)
    axes[1].set_ylabel("reconstructed", rotation=0, ha="right", va="center", fontsize=8)
    for i, r in enumerate(order, start=2):
        latent = int(pictures.latent[r])
        active = np.isnan(kl[r]) or kl[r] >= KL_ACTIVE
        _show(axes[i], _strip(pictures.traversals[r], columns, pad), alpha=1.0 if active else 0.3)
        name = f"z{latent}" if latent >= 0 else f"discrete {r - int((pictures.latent >= 0).sum())}"
        label = name if np.isnan(kl[r]) else f"{name}  KL {kl[r]:.3g}" + ("" if active else " (inactive)")
        axes[i].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8,
                           color="black" if active else "0.55")  # fmt: skip
    centres = [c * (width + pad) + (width - 1) / 2 for c in range(columns)]
    axes[-1].set_xticks(centres, [f"{v:+.1f}" for v in pictures.values], fontsize=7)
    axes[-1].tick_params(axis="x", length=0)
    units = pictures.active_units
    status = "" if units is None else f" — {units} of {len(pictures.kl)} latents active (KL ≥ {KL_ACTIVE} nats)"
    if pictures.collapsed:
        status += " — COLLAPSED (no active latent)"
    fig.suptitle(f"{title}{status}", fontsize=9, color="firebrick" if pictures.collapsed else "black")
    fig.text(0.5, 0.005, "latent value (others held at the first input's mean code)", ha="center", fontsize=7)
    fig.subplots_adjust(left=0.2, right=0.99, top=1 - 0.45 / (0.62 * rows + 0.75), bottom=0.6 / (0.62 * rows + 0.75),
                        wspace=0.05, hspace=0.08)  # fmt: skip
    return fig
