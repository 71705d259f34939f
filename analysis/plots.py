"""Figures of a results table (matplotlib, Agg backend, readable without the code)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from analysis.pareto import pareto_rank

_ARROW = {"min": "lower is better", "max": "higher is better"}
_LABELS = {
    "recon": "reconstruction −log p(x|z) (nats per image)",
    "mig": "MIG (mutual information gap)",
}


def plot_pareto(
    df: pd.DataFrame,
    x: tuple[str, str],
    y: tuple[str, str],
    path: str | Path | BinaryIO,
    group: str | None = "variant",
    title: str | None = None,
) -> str | Path | BinaryIO:
    """Scatter every completed trial on ``x`` vs ``y`` and draw each group's Pareto front.

    ``x`` and ``y`` are ``(column, "min"|"max")``.  Non-dominated trials are
    drawn filled and joined by the front's staircase; dominated ones hollow.
    """
    (xname, xmode), (yname, ymode) = x, y
    if xname in df.columns and yname in df.columns:
        data = df.dropna(subset=[xname, yname])
    else:
        data = df.iloc[0:0].assign(**{xname: [], yname: []})
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    groups = data.groupby(group, sort=True) if group and group in data.columns else [("trials", data)]
    for i, (label, part) in enumerate(groups):
        color = f"C{i % 10}"
        on_front = pareto_rank(part, [(xname, xmode), (yname, ymode)]) == 1
        ax.scatter(
            part.loc[~on_front, xname], part.loc[~on_front, yname], facecolors="none", edgecolors=color, label=None
        )
        front = part[on_front].sort_values(xname)
        ax.scatter(front[xname], front[yname], color=color, label=f"{label} (front: {len(front)} of {len(part)})")
        ax.step(
            front[xname],
            front[yname],
            where="post" if (xmode == "min") == (ymode == "max") else "pre",
            color=color,
            alpha=0.6,
        )
    ax.set_xlabel(f"{_LABELS.get(xname, xname)} — {_ARROW[xmode]}")
    ax.set_ylabel(f"{_LABELS.get(yname, yname)} — {_ARROW[ymode]}")
    ax.set_title(title or f"Pareto front: {xname} vs {yname} ({len(data)} trials; filled = non-dominated)")
    ax.grid(alpha=0.3)
    if len(data):
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")  # a path or a binary file object
    plt.close(fig)
    return path
