"""The study report: one self-contained HTML page of figures and tables.

Figures (matplotlib, embedded as PNG): the Pareto front of the first two
objectives per variant; each objective against each searched schedule parameter;
the spread of each objective across seeds per variant; the rank correlation
between objectives and the other metrics.  Tables: trial counts, per-variant
distributions, variance explained by hyperparameters vs seed, the non-dominated
trials, and configurations ranked by UDR where seeds were replicated.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.pareto import normalize_objectives, pareto_front
from analysis.plots import plot_pareto
from analysis.results import REPORT_FILE, load_results
from analysis.summaries import metric_distributions, rank_correlations, variance_explained
from analysis.udr import configuration_columns

NOT_METRICS = {"seed", "steps", "failed_step", "train_seconds", "eval_seconds", "images_per_second",
               "started_at", "finished_at", "resumed_from_step", "undelivered_metrics"}  # fmt: skip


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _parameter_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if "." in c and pd.api.types.is_numeric_dtype(df[c]) and df[c].notna().any()]


def figures(df: pd.DataFrame, objectives: Sequence[tuple[str, str]], metrics: Sequence[str]) -> dict[str, bytes]:
    """Figure name → PNG bytes."""
    done = df[df["status"] == "completed"] if "status" in df.columns else df
    out: dict[str, bytes] = {}
    if len(objectives) >= 2:
        buffer = io.BytesIO()
        plot_pareto(done, objectives[0], objectives[1], buffer)
        out["pareto"] = buffer.getvalue()
    params = _parameter_columns(done)
    for name, mode in objectives:
        if params:
            fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.4), squeeze=False)
            for ax, param in zip(axes[0], params, strict=True):
                for i, (variant, part) in enumerate(done.groupby("variant")):
                    ax.scatter(part[param], part[name], s=14, color=f"C{i}", label=variant)
                ax.set_xlabel(param)
                ax.set_ylabel(f"{name} ({mode}imise)")
                ax.grid(alpha=0.3)
            axes[0][0].legend(fontsize="small")
            out[f"{name}_vs_parameters"] = _png(fig)
        fig, ax = plt.subplots(figsize=(6, 3.4))
        groups = [(variant, part[name].dropna().to_numpy()) for variant, part in done.groupby("variant")]
        ax.boxplot([g for _, g in groups], tick_labels=[v for v, _ in groups])
        for i, (_, values) in enumerate(groups, start=1):
            ax.scatter(np.full(len(values), i), values, s=10, alpha=0.6)
        ax.set_ylabel(name)
        ax.set_title(f"{name} across seeds and configurations, per variant")
        out[f"{name}_seed_spread"] = _png(fig)
    if len(metrics) >= 2:
        corr = rank_correlations(done, metrics)
        fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(metrics), 0.8 + 0.6 * len(metrics)))
        image = ax.imshow(corr.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(metrics)), metrics, rotation=45, ha="right")
        ax.set_yticks(range(len(metrics)), metrics)
        for (i, j), value in np.ndenumerate(corr.to_numpy()):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax, label="Spearman ρ")
        out["rank_correlation"] = _png(fig)
    return out


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    image = f'<img alt="{name}" src="data:image/png;base64,{data}">'
    return f'<figure id="{name}">{image}<figcaption>{name}</figcaption></figure>'


def udr_table(df: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """Per configuration with a UDR: seeds, median UDR and the objectives' medians, best first."""
    scored = df[df["udr"].notna()]
    keys = configuration_columns(scored)
    labels = scored[keys].map(str).agg(", ".join, axis=1).rename("configuration")
    table = scored.groupby(labels).agg(
        seeds=("udr", "size"), udr=("udr", "median"), **{n: (n, "median") for n in objectives if n in df.columns}
    )
    return table.sort_values("udr", ascending=False)


def report_html(df: pd.DataFrame, title: str) -> str:
    objectives = normalize_objectives(df.attrs.get("objectives") or [("recon", "min")])
    names = [n for n, _ in objectives if n in df.columns]
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and "." not in c and c not in NOT_METRICS]
    metrics = list(dict.fromkeys([*names, *[c for c in numeric if c not in names]]))
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append("<h2>Trials</h2>" + df["status"].value_counts().to_frame("trials").to_html())
    if names:
        parts.append(
            "<h2>Distributions per variant</h2>" + metric_distributions(df, names).to_html(float_format="%.4g")
        )
        explained = pd.DataFrame({n: variance_explained(df, n) for n in names}).T
        parts.append("<h2>Variance explained (η²)</h2>" + explained.to_html(float_format="%.3f"))
        front = pareto_front(df[df["status"] == "completed"], objectives)
        shown = [c for c in ["trial_id", "variant", "seed", *names, *df.columns] if c in front.columns][
            : 8 + len(names)
        ]
        parts.append("<h2>Non-dominated trials</h2>" + front[list(dict.fromkeys(shown))].to_html(index=False))
    if "udr" in df.columns and df["udr"].notna().any():
        parts.append(
            "<h2>UDR: configurations ranked without labels (Duan et al. 2020)</h2>"
            + udr_table(df, names).to_html(float_format="%.4g")
        )
    parts.append("<h2>Figures</h2>")
    parts += [_img(name, png) for name, png in figures(df, objectives, metrics).items()]
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px} img{max-width:100%} table{border-collapse:collapse}"
    )
    style += " td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
    body = "\n".join(parts)
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def write_report(study_dir: str | Path) -> Path:
    """``STUDY_DIR/report.html`` from its ``results.parquet``."""
    study_dir = Path(study_dir)
    df = load_results(study_dir)
    target = study_dir / REPORT_FILE
    target.write_text(report_html(df, f"Study report: {study_dir.name}"))
    return target
