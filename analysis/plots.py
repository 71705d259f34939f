"""Figures of a results table (matplotlib, Agg backend, readable without the code)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from analysis.pareto import front_mask

_ARROW = {"min": "lower is better", "max": "higher is better"}
_LABELS = {
    "recon": "reconstruction −log p(x|z) (nats per image)",
    "kl": "KL(q(z|x) ‖ p(z)) (nats)",
    "loss": "training loss",
    "mig": "MIG (mutual information gap)",
    "udr": "UDR (unsupervised disentanglement ranking)",
    "active_units": "active latents",
    "index_code_mi": "index-code mutual information (nats)",
    "total_correlation": "total correlation (nats)",
    "dimwise_kl": "dimension-wise KL (nats)",
    "dci_disentanglement": "DCI disentanglement",
    "sap": "SAP score",
    "factor_vae_score": "FactorVAE score",
    "beta_vae_score": "BetaVAE score",
    "duration_s": "wall time (s)",
}
_GREEK = {"beta": "β", "gamma": "γ", "alpha": "α", "lambda": "λ", "capacity": "capacity C"}


def readable(name: str) -> str:
    """A column's name as a reader would say it: ``recon`` → "reconstruction −log p(x|z) (nats per image)",
    ``beta.end_step`` → "β end step".

    Args:
        name: A results column or term name.

    Returns:
        The label (the name itself, underscores as spaces, when nothing better is known).
    """
    if name in _LABELS:
        return _LABELS[name]
    if "." in name:
        weight, param = name.split(".", 1)
        return f"{_GREEK.get(weight, weight)} {param.replace('_', ' ')}"
    return _GREEK.get(name, name.replace("_", " "))


def plot_pareto(
    df: pd.DataFrame,
    x: tuple[str, str],
    y: tuple[str, str],
    path: str | Path | BinaryIO,
    group: str | None = "variant",
    title: str | None = None,
    label: str | None = None,
    max_labels: int = 30,
) -> str | Path | BinaryIO:
    """Scatter every completed trial on ``x`` vs ``y`` and draw each group's Pareto front.

    Non-dominated trials are drawn filled and joined by the front's staircase;
    dominated ones hollow.

    Args:
        df: The trials to draw (completed ones: rows missing ``x`` or ``y`` are left out).
        x: ``(column, "min"|"max")`` on the horizontal axis.
        y: ``(column, "min"|"max")`` on the vertical axis.
        path: Where the PNG goes: a path or a binary file object.
        group: A front per value of this column (default: per variant).
        title: The figure's title.
        label: A column (e.g. ``trial_name``) to write beside each front point, for at most
            ``max_labels`` front points (the first along ``x``).
        max_labels: See ``label``.

    Returns:
        ``path``.
    """
    (xname, xmode), (yname, ymode) = x, y
    if xname in df.columns and yname in df.columns:
        data = df.dropna(subset=[xname, yname])
    else:
        data = df.iloc[0:0].assign(**{xname: [], yname: []})
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    groups = data.groupby(group, sort=True) if group and group in data.columns else [("trials", data)]
    labelled = 0
    for i, (name, part) in enumerate(groups):
        color = f"C{i % 10}"
        on_front = front_mask(part, [(xname, xmode), (yname, ymode)])
        ax.scatter(
            part.loc[~on_front, xname], part.loc[~on_front, yname], facecolors="none", edgecolors=color, label=None
        )
        front = part[on_front].sort_values(xname)
        ax.scatter(front[xname], front[yname], color=color, label=f"{name} (front: {len(front)} of {len(part)})")
        ax.step(
            front[xname],
            front[yname],
            where="post" if (xmode == "min") == (ymode == "max") else "pre",
            color=color,
            alpha=0.6,
        )
        if label and label in front.columns:
            for _, point in front.head(max(0, max_labels - labelled)).iterrows():
                labelled += 1
                ax.annotate(str(point[label]), (point[xname], point[yname]), xytext=(4, 3),
                            textcoords="offset points", fontsize=6.5, color=color)  # fmt: skip
    ax.set_xlabel(f"{readable(xname)} — {_ARROW[xmode]}")
    ax.set_ylabel(f"{readable(yname)} — {_ARROW[ymode]}")
    ax.set_title(
        title or f"Pareto front ({len(data)} trials; filled = non-dominated)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    if len(data):
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")  # a path or a binary file object
    plt.close(fig)
    return path
