"""``results.parquet``: one row per trial, and ``history.parquet``, read from what the trials wrote.

Schema (version 1; the version is stored in the file's metadata under
``vae_study.schema_version``):

==========================  ======================================================
column                      meaning
==========================  ======================================================
``trial_id``                Tune's trial id (also the trial's folder name)
``trial_name``              Tune's trial name (the MLflow run name)
``status``                  ``completed``, ``failed`` (diverged), ``error`` (crashed) or
                            ``pruned`` (stopped early by the scheduler)
``failure_reason``          why a trial did not complete (null otherwise)
``failed_step``             step at which a term became non-finite
``failed_term``             the term that became non-finite
``variant``, ``seed``       the trial's variant and seed
``steps``                   training steps
``<weight>.<param>``        schedule of each weight, e.g. ``beta.schedule``, ``beta.end``
``<term>``                  held-out value of each objective term (``recon``, ``kl``,
                            ``index_code_mi``, ``total_correlation``, ``dimwise_kl``,
                            ``loss``, schedule values such as ``beta``)
``<metric>``                each metric, e.g. ``mig``
``udr``                     UDR (Duan et al. 2020) among the completed seeds of the
                            trial's configuration; null for a configuration run once
``mlflow_run_id``           the trial's nested MLflow run
``mlflow_parent_run_id``    the study's MLflow run
``checkpoint``              path of the final checkpoint, relative to the study folder
``codes``                   path of the trial's ``codes.npz`` (mean codes for UDR),
                            relative to the study folder
``train_seconds``, ``eval_seconds``, ``images_per_second``, ``started_at``,
``finished_at`` (Unix seconds), ``resumed_from_step``
``pack_id``, ``pack_size``  the Ray trial (pack) that trained the trial, and the
                            pack's size (an unpacked trial is a pack of one: its own id, 1)
``undelivered_metrics``     metrics of the trial still waiting in its spill file for
                            the tracking server (``vae-study sync`` delivers them)
==========================  ======================================================

``history.parquet`` (same schema version) is the long form of every trial's term
histories, read from each trial's ``history.jsonl``: columns ``trial_id``, ``step``,
``split`` (``train``: averaged over the ``log_every`` steps ending at ``step``;
``heldout``: the final evaluation), ``term``, ``value``.  A resumed trial re-logs the
steps after its checkpoint; the last value of each (trial, split, step, term) is kept.

Writes go to a temporary file renamed into place: readers never see half a file,
and exporting twice gives the same table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.udr import udr_by_configuration
from study.folder import StudyFolder
from study.tracking import spilled_metric_count

SCHEMA_VERSION = 1
META_COLUMNS = (
    "trial_id", "trial_name", "status", "failure_reason", "failed_step", "failed_term",
    "variant", "seed", "steps",
)  # fmt: skip
TAIL_COLUMNS = (
    "mlflow_run_id", "mlflow_parent_run_id", "checkpoint", "codes", "train_seconds", "eval_seconds",
    "images_per_second", "started_at", "finished_at", "resumed_from_step", "pack_id", "pack_size",
    "undelivered_metrics",
)  # fmt: skip


def trial_rows(study_dir: Path) -> list[dict[str, Any]]:
    """The record of every ended trial, flattened, in trial-id order."""
    rows = []
    for trial in StudyFolder(study_dir).trials():
        record = trial.read_record()
        if record is None:
            continue
        row = record.row()
        # Counted now, not when the trial ended: `vae-study sync` may have delivered them since.
        row["undelivered_metrics"] = spilled_metric_count(trial.spill_file)
        rows.append(row)
    if any(row.get("codes") for row in rows):
        udr = udr_by_configuration(pd.DataFrame(rows), root=study_dir)
        for row, value in zip(rows, udr.tolist(), strict=True):
            row["udr"] = None if value != value else value  # null, not NaN: no score
    return rows


def _column_order(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    middle = sorted(k for k in seen if k not in META_COLUMNS and k not in TAIL_COLUMNS and "." in k)
    middle += [k for k in seen if k not in META_COLUMNS and k not in TAIL_COLUMNS and "." not in k]
    return [*META_COLUMNS, *middle, *(k for k in TAIL_COLUMNS if k in seen)]


def results_table(rows: list[dict[str, Any]], objectives: list[dict[str, str]] | None = None) -> pa.Table:
    columns = _column_order(rows)
    arrays = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        if name in META_COLUMNS and name not in ("seed", "steps", "failed_step"):
            arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        else:
            arrays[name] = pa.array(values)
    table = pa.table(arrays) if rows else pa.table({name: pa.array([], pa.string()) for name in META_COLUMNS})
    metadata = {
        "vae_study.schema_version": str(SCHEMA_VERSION),
        "vae_study.objectives": json.dumps(objectives or []),
    }
    return table.replace_schema_metadata(metadata)


def history_table(study_dir: Path) -> pa.Table:
    latest: dict[tuple[str, str, int, str], float] = {}
    for trial in StudyFolder(study_dir).trials():
        for entry in trial.history():
            for term, value in entry["terms"].items():
                latest[(trial.trial_id, entry["split"], int(entry["step"]), term)] = float(value)
    keys = sorted(latest)
    table = pa.table(
        {
            "trial_id": pa.array([k[0] for k in keys], pa.string()),
            "step": pa.array([k[2] for k in keys], pa.int64()),
            "split": pa.array([k[1] for k in keys], pa.string()),
            "term": pa.array([k[3] for k in keys], pa.string()),
            "value": pa.array([latest[k] for k in keys], pa.float64()),
        }
    )
    return table.replace_schema_metadata({"vae_study.schema_version": str(SCHEMA_VERSION)})


def _write_atomic(table: pa.Table, target: Path) -> Path:
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, target)
    return target


def export_results(study_dir: str | Path, objectives: list[dict[str, str]] | None = None) -> Path:
    """Write ``STUDY_DIR/results.parquet`` from the trials' ``result.json`` files."""
    folder = StudyFolder(study_dir)
    if objectives is None:
        objectives = folder.read_spec().get("objectives", []) if folder.spec_json.exists() else []
    _write_atomic(history_table(folder.root), folder.history)
    return _write_atomic(results_table(trial_rows(folder.root), objectives), folder.results)
