"""Views of what a trial learned, per latent: the emergence of each latent's KL over
training, and the latent × factor mutual information that MIG is computed from.

**Per-latent KL over training** (Burgess et al. 2018, "Understanding disentangling in
β-VAE", the emergence plot): Gaussian variants log ``kl_z<i>``, each latent's
``KL(q(z_i|x) ‖ N(0, 1)) = ½ (μ_i² + σ_i² − log σ_i² − 1)`` averaged over the batch, at every
``log_every`` (``history.parquet``, split ``train``).  A latent that carries information
rises from 0; with a capacity schedule the latents open one after another, the factor
that most reduces the reconstruction error (position on dSprites) first.

**Mutual-information matrix** (Chen et al. 2018, MIG): ``I(z_i; v_k)`` of each
discretised mean-code latent ``z_i`` and factor ``v_k``, in nats, with the factor
entropies ``H(v_k)``, as the trial's MIG evaluation computed them once (``mig.npz``,
``trainers.artifacts.write_mig``).  MIG per factor is the normalised gap

    MIG_k = (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)

between the two latents most informative about ``v_k``; their mean over the factors is
the trial's ``mig``.  A disentangled code shows one bright cell per factor column.

The report draws both for its front trials; each trial also leaves them as
``latent_kl.png`` and ``mutual_information.png`` beside its files, logged to its MLflow
run (:func:`write_learning_pictures`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.folder import TrialFiles

#: A history term holding one latent's KL: ``kl_z<i>``.
LATENT_KL = re.compile(r"kl_z(\d+)")


@dataclass
class MigMatrix:
    """What a trial's MIG was computed from (:func:`load_mig`)."""

    matrix: np.ndarray  # [d, K]: I(z_i; v_k), nats
    entropy: np.ndarray  # [K]: H(v_k), nats
    per_factor: np.ndarray  # [K]: (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)
    factor_names: list[str]

    @property
    def mig(self) -> float:
        """The trial's MIG: ``1/K Σ_k per_factor[k]``."""
        return float(np.mean(self.per_factor))

    @property
    def normalized(self) -> np.ndarray:
        """``I(z_i; v_k) / H(v_k)``: the share of each factor's entropy a latent holds, in [0, 1]."""
        return self.matrix / self.entropy[None, :]

    def latent_order(self) -> list[int]:
        """The heat map's rows: for each factor, the most captured first (largest
        ``max_i I(z_i; v_k) / H(v_k)``), its most informative latent ``z_(1)`` (the one MIG
        credits; each latent once); then the other latents by their largest share, largest first."""
        share = self.normalized
        order: list[int] = []
        for k in sorted(range(share.shape[1]), key=lambda k: -float(share[:, k].max())):
            best = int(share[:, k].argmax())
            if best not in order:
                order.append(best)
        rest = sorted(set(range(len(share))) - set(order), key=lambda i: (-float(share[i].max()), i))
        return order + rest


def load_mig(trial: TrialFiles) -> MigMatrix | None:
    """A trial's MIG matrix, entropies, per-factor gaps and factor names.

    Args:
        trial: The trial's files (``StudyFiles(study_dir).trial(trial_id)``).

    Returns:
        The matrix, or None where the trial has no ``mig.npz`` (no ``mig`` metric, failed,
        or trained before the file was written).
    """
    if not trial.mig.is_file():
        return None
    with np.load(trial.mig) as data:
        return MigMatrix(
            matrix=data["matrix"],
            entropy=data["entropy"],
            per_factor=data["mig_per_factor"],
            factor_names=[str(n) for n in data["factor_names"]],
        )


def trial_history(trial: TrialFiles) -> pd.DataFrame:
    """A trial's ``history.jsonl`` as ``history.parquet``'s rows.

    Args:
        trial: The trial's files.

    Returns:
        Rows ``trial_id``, ``step``, ``split``, ``term``, ``value``; a line cut short is skipped,
        and a file not there gives none.
    """
    rows = []
    if trial.history_file.is_file():
        for line in trial.history_file.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows += [(trial.trial_id, entry["step"], entry["split"], t, v) for t, v in entry["terms"].items()]
    return pd.DataFrame(rows, columns=["trial_id", "step", "split", "term", "value"])


def latent_kl_curves(history: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    """One trial's per-latent KL against the training step.

    Args:
        history: ``history.parquet`` rows (``trial_id``, ``step``, ``split``, ``term``, ``value``).
        trial_id: The trial.

    Returns:
        A table indexed by step with one column per latent, ``z0, z1, ...`` in latent order
        (nats, the training batches' ``kl_z<i>``); empty where none was logged.
    """
    rows = history[(history["trial_id"] == trial_id) & (history["split"] == "train")]
    rows = rows.assign(term=rows["term"].astype(str))
    rows = rows[rows["term"].str.fullmatch(LATENT_KL.pattern)]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index="step", columns="term", values="value", aggfunc="last").sort_index()
    order = sorted(table.columns, key=lambda t: int(LATENT_KL.fullmatch(t).group(1)))
    table = table[order]
    table.columns = [f"z{LATENT_KL.fullmatch(t).group(1)}" for t in order]
    return table


def latent_kl_figure(curves: pd.DataFrame, title: str) -> plt.Figure:
    """Each latent's KL against the training step, labelled ``z<i>`` (Burgess et al. 2018's emergence plot).

    Args:
        curves: :func:`latent_kl_curves`'s table (steps × latents).
        title: The figure's title (the trial's name).

    Returns:
        The matplotlib figure (close it after saving); the legend lists the latents by their
        final KL, largest first.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    final = curves.iloc[-1]
    for column in sorted(curves.columns, key=lambda c: -float(np.nan_to_num(final[c], nan=-1.0))):
        i = int(column[1:])
        ax.plot(curves.index, curves[column], color=f"C{i % 10}", lw=1.3, label=column,
                ls="-" if i < 10 else "--")  # fmt: skip
    ax.set_xlabel("training step")
    ax.set_ylabel("KL(q(z_i|x) ‖ N(0,1)) (nats)", fontsize=8)
    ax.set_title(f"{title}: per-latent KL", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False, title="latent",
              title_fontsize=7)  # fmt: skip
    fig.tight_layout()
    return fig


def mig_figure(mig: MigMatrix, title: str) -> plt.Figure:
    """The latent × factor mutual information as a heat map, and MIG per factor below it.

    The heat map shows ``I(z_i; v_k) / H(v_k)`` (each cell annotated), one column per
    factor (named, with ``H(v_k)``), latents in :meth:`MigMatrix.latent_order`; the
    bars below are ``MIG_k = (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)``, with their mean, the
    trial's MIG, as a line.

    Args:
        mig: The trial's matrix (:func:`load_mig`).
        title: The figure's title (the trial's name).

    Returns:
        The matplotlib figure (close it after saving).
    """
    order = mig.latent_order()
    share = mig.normalized[order]
    latents, factors = share.shape
    fig, (heat, bars) = plt.subplots(
        2, 1, figsize=(1.1 * factors + 2.6, 0.36 * latents + 3.2), sharex=True, layout="constrained",
        gridspec_kw={"height_ratios": [max(latents, 2), 3.2]},
    )  # fmt: skip
    image = heat.imshow(share, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, k), value in np.ndenumerate(share):
        heat.text(k, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                  color="black" if value > 0.6 else "white")  # fmt: skip
    heat.set_yticks(range(latents), [f"z{i}" for i in order], fontsize=8)
    heat.set_ylabel("latent", fontsize=8)
    heat.set_title(f"{title}: I(z_i; v_k) / H(v_k)", fontsize=9)
    fig.colorbar(image, ax=heat, fraction=0.04, pad=0.02, label="share of H(v_k)")
    bars.bar(range(factors), mig.per_factor, color="C0")
    bars.axhline(mig.mig, color="firebrick", lw=1, ls="--", label=f"MIG = {mig.mig:.3f}")
    for k, value in enumerate(mig.per_factor):
        bars.text(k, value, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
    top = float(max(np.max(mig.per_factor), mig.mig, 0.05))
    bars.set_ylim(min(0.0, float(np.min(mig.per_factor))), top * 1.3)
    bars.set_ylabel("MIG per factor", fontsize=8)
    bars.legend(fontsize=7, loc="upper right", frameon=False)
    bars.set_xticks(
        range(factors), [f"{n}\nH={h:.2f}" for n, h in zip(mig.factor_names, mig.entropy, strict=True)], fontsize=8
    )
    bars.grid(alpha=0.3, axis="y")
    fig.colorbar(image, ax=bars, fraction=0.04, pad=0.02).ax.set_visible(False)  # keep the columns aligned
    return fig


def write_learning_pictures(trial: TrialFiles, title: str, dpi: int = 90) -> list[Path]:
    """Draw the trial's per-latent KL (from its ``history.jsonl``) and MIG matrix (from its
    ``mig.npz``) into ``artifacts/latent_kl.png`` and ``artifacts/mutual_information.png``.

    Args:
        trial: The trial's files.
        title: The figures' title (the trial's name).
        dpi: The PNGs' resolution.

    Returns:
        The pictures written: none where the trial logged no ``kl_z<i>`` and kept no MIG matrix.
    """
    written = []
    curves = latent_kl_curves(trial_history(trial), trial.trial_id)
    if not curves.empty:
        fig = latent_kl_figure(curves, title)
        fig.savefig(trial.latent_kl_png, dpi=dpi)
        plt.close(fig)
        written.append(trial.latent_kl_png)
    mig = load_mig(trial)
    if mig is not None:
        fig = mig_figure(mig, title)
        fig.savefig(trial.mig_png, dpi=dpi)
        plt.close(fig)
        written.append(trial.mig_png)
    return written
