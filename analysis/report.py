"""The study report: one self-contained HTML page of figures and tables (``report.html``).

In order: the trial counts; the Pareto front of the first two objectives, its points
labelled with their trials; the non-dominated trials (on all objectives) with their
parameters, effective weights, objectives and a link to each MLflow run when the
tracking server is an http(s) one; for each front trial (at most
:data:`MAX_PICTURED`, the first by the first objective) its reconstructions and
latent traversals (rows labelled by latent and KL, sorted by KL, inactive latents
greyed, collapsed trials flagged; :mod:`analysis.pictures`); the front trials'
training curves; every objective against each weight's effective weight
(:mod:`analysis.weights`: constant and scheduled weights on one axis); for the same
front trials, each latent's KL over training and the latent × factor mutual information
MIG is computed from, with MIG per factor (:mod:`analysis.learning`); the spread
across seeds; variance explained (η²) where configurations were repeated with
several seeds; per-variant distributions; rank correlations between metrics; and
configurations ranked by UDR where seeds were replicated; with Pareto stopping, the rungs
(how many trials reached each, went on and were stopped there).

Per-trial pictures are drawn for front trials only, so the page stays small and
quick to write for any number of trials (10,000 trials: a few MB, a few seconds).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from analysis.folder import StudyFiles
from analysis.learning import latent_kl_curves, latent_kl_figure, load_mig, mig_figure, trial_history
from analysis.pareto import front_mask, normalize_objectives
from analysis.pictures import load_pictures, traversal_figure
from analysis.plots import plot_pareto, readable
from analysis.results import load_results
from analysis.summaries import (
    config_columns,
    configuration_key,
    metric_distributions,
    rank_correlations,
    variance_explained,
)
from analysis.udr import configuration_columns
from analysis.weights import effective_weight, weight_names

#: Numeric columns that are not metrics of a trial's model.
NOT_METRICS = {"seed", "steps", "failed_step", "train_seconds", "eval_seconds", "images_per_second", "started_at",
               "finished_at", "resumed_from_step", "undelivered_metrics", "optuna_number", "duration_s", "pack_size",
               "on_front"}  # fmt: skip
#: Front trials shown with pictures and training curves (the first by the first objective).
MAX_PICTURED = 12
#: Rows of the non-dominated table.
MAX_FRONT_ROWS = 200
DPI = 90


def _png(fig: plt.Figure, tight: bool = True) -> bytes:
    buffer = io.BytesIO()
    if tight:
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _figure(anchor: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    alt = html.escape(caption, quote=True)
    image = f'<img alt="{alt}" src="data:image/png;base64,{data}">'
    return f'<figure id="{anchor}">{image}<figcaption>{html.escape(caption)}</figcaption></figure>'


def _completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "completed"] if "status" in df.columns else df


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def mlflow_links(study_dir: str | Path | None, df: pd.DataFrame) -> pd.Series:
    """The MLflow UI address of each trial's run, when the study was tracked by an http(s) server.

    Args:
        study_dir: The study folder (its ``study_run.json`` names the experiment, and the
            tracking URI unless the folder's own store was used; else ``spec.json``'s
            ``tracking.uri``).
        df: The results table (``mlflow_run_id``).

    Returns:
        A Series of ``<uri>/#/experiments/<experiment id>/runs/<run id>`` on ``df``'s index;
        None where there is no run, and everywhere for a local store (no server to open).
    """
    none = pd.Series([None] * len(df), index=df.index, dtype=object)
    if study_dir is None or "mlflow_run_id" not in df.columns:
        return none
    folder = StudyFiles(study_dir)
    try:
        run = json.loads(folder.study_run.read_text())
        uri = run.get("tracking_uri")
        if uri is None and folder.spec_json.is_file():
            uri = (json.loads(folder.spec_json.read_text()).get("tracking") or {}).get("uri")
        experiment = run.get("experiment_id")
    except (OSError, ValueError, AttributeError):
        return none
    if not isinstance(uri, str) or not uri.startswith(("http://", "https://")) or not experiment:
        return none
    base = uri.rstrip("/")
    return (
        df["mlflow_run_id"]
        .map(
            lambda run_id: (
                f"{base}/#/experiments/{experiment}/runs/{run_id}" if isinstance(run_id, str) and run_id else None
            )
        )
        .astype(object)
    )


def front_table(df: pd.DataFrame, objectives: Sequence[tuple[str, str]], links: pd.Series) -> pd.DataFrame:
    """The non-dominated trials with their parameters, effective weights, objectives and metrics.

    Args:
        df: The front's rows of the results table.
        objectives: ``[(name, mode)]``.
        links: The MLflow address of each row (:func:`mlflow_links`), or None.

    Returns:
        A display table with readable column names; the first column is the trial's name
        (HTML, a link to its MLflow run where there is one).
    """
    names = [n for n, _ in objectives]
    params = [c for c in df.columns if "." in c and not c.startswith("mlflow") and df[c].notna().any()]
    params.sort(key=lambda c: (c.split(".", 1)[0], not c.endswith(".schedule")))  # each weight's family first
    extra = [c for c in ("udr", "active_units") if c in df.columns and c not in names and df[c].notna().any()]
    out = pd.DataFrame(index=df.index)
    label = (
        df["trial_name"].where(df["trial_name"].astype(str) != "", df["trial_id"])
        if "trial_name" in df
        else df["trial_id"]
    )
    out["trial"] = [
        f'<a href="{html.escape(link, quote=True)}">{html.escape(str(name))}</a>' if link else html.escape(str(name))
        for name, link in zip(label, links.reindex(df.index), strict=True)
    ]
    for column in ("variant", "seed", "optuna_number"):
        if column in df.columns and df[column].notna().any():
            out[readable(column) if column != "optuna_number" else "Optuna trial"] = df[column]
    for column in params:
        out[readable(column)] = df[column]
    for weight in weight_names(df):
        out[f"{readable(weight)} effective"] = effective_weight(df, weight).round(3)
    for column in [*names, *extra]:
        if column in df.columns:
            out[readable(column)] = df[column]
    return out


def _front_order(front: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    name, mode = objectives[0]
    return front.sort_values(name, ascending=mode == "min", kind="mergesort")


def _trial_label(row: pd.Series) -> str:
    name = row.get("trial_name")
    return str(name) if isinstance(name, str) and name else str(row["trial_id"])


def pictures_section(study_dir: Path | None, pictured: pd.DataFrame, front_size: int) -> str:
    """HTML: each pictured front trial's reconstructions and labelled traversals.

    Args:
        study_dir: The study folder (pictures are read from ``trials/<id>/artifacts/``).
        pictured: The front trials to show (at most :data:`MAX_PICTURED`).
        front_size: How many trials the front has (to say how many are left out).

    Returns:
        The section's HTML.
    """
    intro = (
        f"<p>Each front trial's reconstructions (inputs above, reconstructions below) and latent traversals: "
        f"one row per latent, labelled with its index and its KL divergence from the prior (nats, averaged over "
        f"the evaluation inputs), sorted by KL, largest first.  Latents with KL below 0.01 are inactive and drawn "
        f"greyed; a trial with no active latent has collapsed and is flagged.  Pictures are shown for at most "
        f"{MAX_PICTURED} front trials"
        + (
            f" (here the first {len(pictured)} of {front_size}, by the first objective)"
            if front_size > len(pictured)
            else ""
        )
        + ".</p>"
    )
    parts = ["<h2>Front trials: reconstructions and traversals</h2>", intro]
    for _, row in pictured.iterrows():
        label = _trial_label(row)
        anchor = f"pictures-{row['trial_id']}"
        pictures = load_pictures(StudyFiles(study_dir).trial(str(row["trial_id"]))) if study_dir else None
        if pictures is None:
            parts.append(f"<p id='{html.escape(anchor)}'><b>{html.escape(label)}</b>: no pictures saved "
                         "(a trial trained before the report's pictures were saved).</p>")  # fmt: skip
            continue
        fig = traversal_figure(pictures, label)
        units = pictures.active_units
        state = "" if units is None else f"; {units} of {len(pictures.kl)} latents active"
        if pictures.collapsed:
            state += " — collapsed: the posterior is the prior, every traversal row is the same image"
        caption = f"{label}: reconstructions and latent traversals{state}."
        parts.append(_figure(anchor, _png(fig, tight=False), caption))
    return "\n".join(parts)


def learning_section(study_dir: Path, pictured: pd.DataFrame, history: pd.DataFrame) -> str:
    """HTML: each pictured front trial's per-latent KL over training and its MIG matrix.

    Per trial, where its files hold them: the KL of each latent against the step
    (``kl_z<i>`` of the training history; Burgess et al. 2018's emergence plot) and the
    latent × factor mutual information ``I(z_i; v_k) / H(v_k)`` with MIG per factor,
    ``(I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)`` (Chen et al. 2018), from its ``mig.npz``
    (:mod:`analysis.learning`).

    Args:
        study_dir: The study folder.
        pictured: The front trials to show (those with pictures).
        history: Their training history (``history.parquet`` rows).

    Returns:
        The section's HTML; empty where no trial has either view.
    """
    parts = []
    for _, row in pictured.iterrows():
        trial_id, label = str(row["trial_id"]), _trial_label(row)
        curves = latent_kl_curves(history, trial_id)
        if not curves.empty:
            caption = (
                f"{label}: KL(q(z_i|x) ‖ N(0, 1)) of each latent over training (nats, batch mean at each logging "
                f"step). A latent that carries information rises from 0; latents that stay near 0 are unused."
            )
            parts.append(_figure(f"latent-kl-{trial_id}", _png(latent_kl_figure(curves, label)), caption))
        mig = load_mig(StudyFiles(study_dir).trial(trial_id))
        if mig is not None:
            gaps = ", ".join(f"{n} {v:.3f}" for n, v in zip(mig.factor_names, mig.per_factor, strict=True))
            caption = (
                f"{label}: mutual information of each latent (discretised mean code) with each factor, as a share "
                f"of the factor's entropy, I(z_i; v_k) / H(v_k); below, MIG per factor, the gap between the two "
                f"most informative latents: {gaps}; their mean, the MIG, is {mig.mig:.3f}."
            )
            parts.append(_figure(f"mutual-information-{trial_id}", _png(mig_figure(mig, label), tight=False), caption))
    if not parts:
        return ""
    intro = (
        "<p>What each front trial's latents learned. Per-latent KL over training: the emergence plot of Burgess "
        "et al. (2018), from the KL of each latent logged at every logging step (Gaussian variants). Mutual "
        "information matrix: I(z_i; v_k) between each latent of the mean code, discretised as MIG does, and each "
        "ground-truth factor (Chen et al. 2018), divided by the factor's entropy H(v_k); latents sorted by the "
        "factor they tell most about. A disentangled code shows one bright cell per factor column, and MIG per "
        "factor, (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k), near 1.</p>"
    )
    return "<h2>Front trials: per-latent KL and mutual information</h2>" + intro + "\n".join(parts)


def _history(study_dir: Path, trial_ids: list[str]) -> pd.DataFrame:
    """The training history of ``trial_ids``: history.parquet's rows, else the trials' history.jsonl."""
    folder = StudyFiles(study_dir)
    path = folder.history
    if path.is_file():
        return pq.read_table(path, filters=[("trial_id", "in", trial_ids)]).to_pandas()
    histories = [h for h in (trial_history(folder.trial(trial_id)) for trial_id in trial_ids) if len(h)]
    if not histories:
        return pd.DataFrame(columns=["trial_id", "step", "split", "term", "value"])
    return pd.concat(histories, ignore_index=True)


def curves_figure(
    history: pd.DataFrame, labels: dict[str, str], objectives: Sequence[str], weights: Sequence[str]
) -> bytes | None:
    """Training curves of some trials: the objective terms, the KL and each weight's schedule against the step.

    Args:
        history: ``history.parquet`` rows (``trial_id``, ``step``, ``split``, ``term``, ``value``).
        labels: Trial id → the name shown in the legend (also which trials, in order).
        objectives: Objective names (those logged during training are drawn).
        weights: Weight names (their scheduled value is drawn).

    Returns:
        The PNG, or None when there is nothing to draw.
    """
    train = history[history["split"] == "train"]
    logged = set(train["term"])
    terms = [t for t in dict.fromkeys([*objectives, "kl", *weights, "loss"]) if t in logged][:4]
    if not terms:
        return None
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms) + 1.0, 3.2), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        part = train[train["term"] == term]
        for i, (trial_id, label) in enumerate(labels.items()):
            curve = part[part["trial_id"] == trial_id].sort_values("step")
            if len(curve):
                ax.plot(curve["step"], curve["value"], color=f"C{i % 10}", lw=1.2, label=label)
        ax.set_xlabel("training step")
        ax.set_title(readable(term) if term not in weights else f"{readable(term)} (scheduled weight)", fontsize=9)
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


_MARKERS = {"constant": "o", "linear": "^", "step": "s", "cyclical": "D"}


def effective_weight_figures(done: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> list[tuple[str, bytes, str]]:
    """Each objective against each weight's effective weight, per variant and schedule family.

    Args:
        done: The completed trials.
        objectives: ``[(name, mode)]``.

    Returns:
        ``[(anchor, png, caption)]``, one figure per weight.
    """
    out = []
    names = [(n, m) for n, m in objectives if n in done.columns]
    for weight in weight_names(done):
        x = effective_weight(done, weight)
        if not names or x.notna().sum() == 0:
            continue
        fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.6), squeeze=False)
        for ax, (name, mode) in zip(axes[0], names, strict=True):
            for i, (variant, part) in enumerate(done.groupby("variant", sort=True)):
                for family, marker in _MARKERS.items():
                    rows = part[part[f"{weight}.schedule"] == family]
                    if len(rows):
                        ax.scatter(x[rows.index], _numeric(rows[name]), s=16, marker=marker, color=f"C{i % 10}",
                                   alpha=0.75, label=f"{variant}, {family}")  # fmt: skip
            ax.set_xlabel(f"effective {readable(weight)} (mean weight over training)")
            ax.set_title(f"{readable(name)}\n({'lower' if mode == 'min' else 'higher'} is better)", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        caption = (
            f"Objectives against the effective {readable(weight)}: the schedule's mean weight over training "
            f"(a constant's value; a ramp weighs its start, its slope and its end by the time spent in each), "
            f"so constant and scheduled trials share one axis. Colour: variant; marker: schedule family."
        )
        out.append((f"objectives-vs-effective-{weight}", _png(fig), caption))
    return out


def seed_spread_figure(done: pd.DataFrame, name: str, mode: str) -> bytes:
    """Box plot of one objective per variant, every trial drawn on it.

    Args:
        done: The completed trials.
        name: The objective.
        mode: ``"min"`` or ``"max"``.

    Returns:
        The PNG.
    """
    fig, ax = plt.subplots(figsize=(6, 3.4))
    groups = [(variant, _numeric(part[name])) for variant, part in done.groupby("variant")]
    groups = [(v, values[~np.isnan(values)]) for v, values in groups]
    ax.boxplot([g for _, g in groups], tick_labels=[v for v, _ in groups])
    for i, (_, values) in enumerate(groups, start=1):
        ax.scatter(np.full(len(values), i), values, s=10, alpha=0.6)
    ax.set_ylabel(f"{readable(name)}\n({'lower' if mode == 'min' else 'higher'} is better)", fontsize=8)
    ax.set_xlabel("variant")
    return _png(fig)


def correlation_figure(done: pd.DataFrame, metrics: Sequence[str]) -> bytes:
    """Spearman rank correlation between metrics, as a labelled heat map.

    Args:
        done: The completed trials.
        metrics: The metric columns.

    Returns:
        The PNG.
    """
    corr = rank_correlations(done.astype({m: "float64" for m in metrics}), metrics)
    labels = [readable(m) for m in metrics]
    fig, ax = plt.subplots(figsize=(2.5 + 0.8 * len(metrics), 1.5 + 0.6 * len(metrics)))
    image = ax.imshow(corr.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(metrics)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(metrics)), labels, fontsize=8)
    for (i, j), value in np.ndenumerate(corr.to_numpy()):
        ax.text(j, i, "" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="Spearman ρ")
    return _png(fig)


def repeated_configurations(df: pd.DataFrame) -> pd.DataFrame:
    """The completed trials whose configuration (variant and every schedule parameter) was run with ≥ 2 seeds.

    Args:
        df: The results table.

    Returns:
        Those rows (empty when no configuration was repeated).
    """
    done = _completed(df)
    columns = config_columns(done)
    if not len(done) or "seed" not in done.columns:
        return done.iloc[0:0]
    key = configuration_key(done, columns)
    seeds = done.groupby(key)["seed"].transform("nunique")
    return done[seeds >= 2]


def variance_section(df: pd.DataFrame, names: Sequence[str]) -> str:
    """HTML: η² of each objective by configuration and by seed, over the repeated configurations only.

    Args:
        df: The results table.
        names: The objectives.

    Returns:
        The section's HTML: the table, or one sentence saying why there is none.
    """
    head = "<h2>Variance explained (η²)</h2>"
    repeated = repeated_configurations(df)
    if repeated.empty:
        return head + (
            "<p>Not shown: no configuration was trained with more than one seed, so the seed's share of the "
            "variance cannot be told apart from the hyperparameters' (every configuration would explain 100 %). "
            "Repeat configurations with several <code>seeds</code> (or a grid) to see it.</p>"
        )
    configurations = configuration_key(repeated, config_columns(repeated)).nunique()
    table = pd.DataFrame({readable(n): variance_explained(repeated, n) for n in names if n in repeated}).T
    table = table.rename(columns={"hyperparameters": "by configuration", "seed": "by seed",
                                  "within_config": "between seeds of one configuration"})  # fmt: skip
    return head + (
        f"<p>Share of each objective's variance explained by the configuration and by the seed, over the "
        f"{len(repeated)} completed trials of the {configurations} configurations run with several seeds.</p>"
        + table.to_html(float_format="%.3f")
    )


def udr_table(df: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """Per configuration with a UDR: seeds, median UDR and the objectives' medians, best first.

    Args:
        df: The results table (``udr``).
        objectives: Objective columns to summarise too.

    Returns:
        One row per configuration, sorted by median UDR, highest first.
    """
    scored = df[df["udr"].notna()]
    keys = configuration_columns(scored)
    labels = pd.Series("", index=scored.index, dtype=object)
    for i, key in enumerate(keys):
        labels = labels + ("" if i == 0 else ", ") + scored[key].astype(object).map(str)
    labels = labels.rename("configuration")
    table = scored.groupby(labels).agg(
        seeds=("udr", "size"), udr=("udr", "median"), **{n: (n, "median") for n in objectives if n in df.columns}
    )
    return table.sort_values("udr", ascending=False)


def _metrics(df: pd.DataFrame, names: Sequence[str]) -> list[str]:
    numeric = [
        c for c in df.columns
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) and "." not in c
        and c not in NOT_METRICS and df[c].notna().any()
    ]  # fmt: skip
    return list(dict.fromkeys([*names, *[c for c in numeric if c not in names]]))


def rungs_table(study_dir: Path) -> pd.DataFrame | None:
    """Pareto stopping's rungs (``rungs.json``), one row per rung: its step, the trials that
    reached it, went on and were stopped there (by id, in arrival order).  None: the study
    stops nothing by Pareto rank (no such file)."""
    path = StudyFiles(study_dir).rungs
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    rows = []
    for rung, step in enumerate(state["steps"]):
        arrived = state.get("rungs", {}).get(str(step), [])
        stopped = [d["trial_id"] for d in arrived if not d["go_on"]]
        rows.append(
            {
                "rung": rung,
                "step": step,
                "reached": len(arrived),
                "went on": len(arrived) - len(stopped),
                "stopped": len(stopped),
                "stopped trials": " ".join(stopped),
            }
        )
    return pd.DataFrame(rows)


def rungs_section(study_dir: Path) -> str:
    """The rungs table with the rule in a sentence; empty without Pareto stopping."""
    table = rungs_table(study_dir)
    if table is None:
        return ""
    state = json.loads(StudyFiles(study_dir).rungs.read_text())
    intro = (
        f"<p>Pareto stopping (MOASHA, Schmucker et al. 2021): at each rung a trial went on only if it ranked in "
        f"the best 1/η (η = {state['eta']:g}) of the trials that had reached the rung, by non-dominated front and "
        f"then crowding distance (Deb et al. 2002), on cheap estimates of the objectives.  A stopped trial's "
        f"reason and estimates are in its record.</p>"
    )
    return "<h2>Rungs</h2>" + intro + table.to_html(index=False)


def report_html(df: pd.DataFrame, title: str, study_dir: str | Path | None = None) -> str:
    """The report page.

    Args:
        df: The results table (:func:`analysis.results.load_results`); its ``attrs["objectives"]``
            name the objectives (default: reconstruction, minimised).
        title: The page's title.
        study_dir: The study folder, for pictures, training curves and MLflow links (None: tables
            and summary figures only).

    Returns:
        The HTML page, self-contained (figures embedded as PNG).
    """
    study_dir = Path(study_dir) if study_dir is not None else None
    if "variant" not in df.columns:  # figures and tables are per variant
        df = df.assign(variant="all")
    objectives = normalize_objectives(df.attrs.get("objectives") or [("recon", "min")])
    names = [n for n, _ in objectives if n in df.columns]
    present = [(n, m) for n, m in objectives if n in df.columns]
    done = _completed(df)
    metrics = _metrics(done, names)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    counts = df["status"].value_counts() if "status" in df.columns else pd.Series(dtype=int)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    parts.append(f"<p>{len(df)} trials: {summary or 'none ended yet'}. Objectives: "
                 + "; ".join(f"{html.escape(readable(n))} ({'minimised' if m == 'min' else 'maximised'})"
                             for n, m in objectives) + ".</p>")  # fmt: skip

    front = done.iloc[0:0]
    if present and len(done):
        front = _front_order(done[front_mask(done, present)], present)
    if len(present) >= 2 and len(done):
        buffer = io.BytesIO()
        (x, y) = present[0], present[1]
        plot_pareto(done, x, y, buffer, label="trial_name" if "trial_name" in done else "trial_id")
        note = (
            "" if len(present) == 2
            else f" The front in the table below is on all {len(present)} objectives; the plot shows the first two."
        )  # fmt: skip
        caption = (
            f"Pareto front of {readable(x[0])} and {readable(y[0])}, per variant: filled points are non-dominated "
            f"within their variant and labelled with their trial; hollow points are dominated.{note}"
        )
        parts.append("<h2>Pareto front</h2>" + _figure("pareto", buffer.getvalue(), caption))

    if len(front):
        shown = front.head(MAX_FRONT_ROWS)
        table = front_table(shown, present, mlflow_links(study_dir, shown))
        more = f" The first {MAX_FRONT_ROWS} of {len(front)} are listed." if len(front) > MAX_FRONT_ROWS else ""
        link = " Each trial links to its MLflow run." if mlflow_links(study_dir, shown.head(1)).notna().any() else ""
        parts.append(
            f"<h2>Non-dominated trials</h2><p>{len(front)} completed trials that no other completed trial beats on "
            f"every objective, ordered by {html.escape(readable(present[0][0]))}.{more}{link}</p>"
            + table.to_html(index=False, escape=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        )
        pictured = front.head(MAX_PICTURED)
        parts.append(pictures_section(study_dir, pictured, len(front)))
        if study_dir is not None:
            labels = {str(r["trial_id"]): _trial_label(r) for _, r in pictured.iterrows()}
            history = _history(study_dir, list(labels))
            parts.append(learning_section(study_dir, pictured, history))
            png = curves_figure(history, labels, names, weight_names(df))
            if png is not None:
                caption = (
                    f"Training curves of the front trials shown above (terms averaged over each logging interval; "
                    f"at most {MAX_PICTURED} trials)."
                )
                parts.append("<h2>Training curves</h2>" + _figure("training-curves", png, caption))

    if len(done) and present:
        figures = effective_weight_figures(done, present)
        if figures:
            parts.append("<h2>Objectives against the effective weight</h2>")
            parts += [_figure(anchor, png, caption) for anchor, png, caption in figures]
        parts.append("<h2>Spread across seeds and configurations</h2>")
        for name, mode in present:
            caption = f"{readable(name)} of every completed trial, per variant (box: quartiles; dots: trials)."
            parts.append(_figure(f"spread-{name}", seed_spread_figure(done, name, mode), caption))

    if names and len(done):
        parts.append(variance_section(df, names))
        distributions = metric_distributions(df.astype({n: "float64" for n in names}), names)
        distributions.columns = [f"{readable(m)}: {stat}" for m, stat in distributions.columns]
        parts.append("<h2>Distributions per variant</h2>" + distributions.to_html(float_format="%.4g"))
    if len(metrics) >= 2 and len(done) >= 2:
        caption = "Spearman rank correlation between the objectives and the other metrics over the completed trials."
        parts.append(
            "<h2>Rank correlations</h2>" + _figure("rank-correlation", correlation_figure(done, metrics), caption)
        )
    if "udr" in df.columns and df["udr"].notna().any():
        parts.append(
            "<h2>UDR: configurations ranked without labels (Duan et al. 2020)</h2>"
            + udr_table(df, names).to_html(float_format="%.4g")
        )
    if study_dir is not None:
        parts.append(rungs_section(study_dir))
    parts.append("<h2>All trials</h2><p>Counts by status:</p>" + counts.rename("trials").to_frame().to_html())
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px} img{max-width:100%} table{border-collapse:collapse}"
        " td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px} figure{margin:1.5em 0}"
        " figcaption{font-size:13px;color:#333;max-width:900px}"
    )
    body = "\n".join(parts)
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def write_report(study_dir: str | Path) -> Path:
    """Write ``STUDY_DIR/report.html`` from its ``results.parquet`` (and the front trials' pictures and histories).

    Args:
        study_dir: The study folder.

    Returns:
        The report's path.
    """
    study_dir = Path(study_dir)
    df = load_results(study_dir)
    target = StudyFiles(study_dir).report
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(report_html(df, f"Study report: {study_dir.name}", study_dir))
    tmp.replace(target)
    return target
