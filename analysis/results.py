"""The results parquet's schema, declared once, and loading it into pandas (versions 1 and 2).

:func:`study.export.results_table` writes the table with the column types declared here
(:data:`COLUMN_TYPES`, in the order :data:`META_COLUMNS` … :data:`TAIL_COLUMNS`);
:func:`load_results` reads it.

Migration note for readers of version 1
---------------------------------------
Version 2 changes ``results.parquet`` as follows:

* **Types.** Every column has one type whatever its values: integers (``seed``,
  ``steps``, ``failed_step``, ``resumed_from_step``, ``pack_size``,
  ``undelivered_metrics``, integer schedule parameters such as ``beta.end_step``)
  are ``int64`` and read as pandas' nullable ``Int64`` (missing: ``<NA>``, not NaN);
  measurements (terms, metrics, ``udr``, seconds) are ``float64`` (missing: NaN)
  even when every value is missing (version 1 wrote such a column as Arrow ``null``,
  read as ``object`` of None); text is ``string``.
* **Times.** ``started_at`` and ``finished_at`` are ``timestamp[us, UTC]``
  (pandas ``datetime64[us, UTC]``), not Unix seconds.  For seconds:
  ``df.started_at.astype("int64") / 1e6`` (after dropping nulls).
* **Order.** Rows are ordered by ``started_at``, then ``trial_id`` (version 1: by trial id).
* **New columns.** ``optuna_number`` (Int64: the Optuna trial number; null in a
  grid), ``on_front`` (bool: completed and non-dominated among the completed
  trials on all of the study's objectives), ``duration_s`` (float64:
  ``finished_at − started_at``).  ``udr`` is always present.
* **Metadata.** ``vae_study.schema_version`` is ``2``; the objectives are still under
  ``vae_study.objectives``.

To read both, use :func:`load_results`: it accepts version 1 and 2 files and returns
the version-2 shape either way (a version-1 table is converted in memory: times to
UTC timestamps, integer columns to ``Int64``, ``duration_s`` and ``on_front``
computed, ``optuna_number`` null, rows reordered).  ``df.attrs["schema_version"]``
says what the file was.  Plain ``pd.read_parquet`` also reads both, but gives each
file as it was written.  ``vae-study export STUDY_DIR`` rewrites a study's file as
version 2 from its trial folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.folder import StudyFiles

#: The version :func:`study.export.results_table` writes, and those :func:`load_results` reads.
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = {1, SCHEMA_VERSION}
#: Keys of the file's metadata: the schema version, and the study's objectives (JSON).
SCHEMA_VERSION_KEY, OBJECTIVES_KEY = "vae_study.schema_version", "vae_study.objectives"

#: The first columns of the table, in order; then ``<weight>.<param>``, terms and metrics, ``udr``.
META_COLUMNS = (
    "trial_id", "trial_name", "optuna_number", "status", "failure_reason", "failed_step", "failed_term",
    "variant", "seed", "steps",
)  # fmt: skip
#: The last columns of the table, in order (those present).
TAIL_COLUMNS = (
    "on_front", "mlflow_run_id", "mlflow_parent_run_id", "checkpoint", "codes", "train_seconds", "eval_seconds",
    "images_per_second", "started_at", "finished_at", "duration_s", "resumed_from_step", "pack_id", "pack_size",
    "undelivered_metrics",
)  # fmt: skip
TIMESTAMP = pa.timestamp("us", tz="UTC")
#: The type of every fixed column; ``<weight>.<param>`` columns take the type of their values,
#: terms and metrics are float64.
COLUMN_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(
        ("trial_id", "trial_name", "status", "failure_reason", "failed_term", "variant", "mlflow_run_id",
         "mlflow_parent_run_id", "checkpoint", "codes", "pack_id"),
        pa.string(),
    ),
    **dict.fromkeys(
        ("optuna_number", "failed_step", "seed", "steps", "resumed_from_step", "pack_size", "undelivered_metrics"),
        pa.int64(),
    ),
    **dict.fromkeys(("udr", "train_seconds", "eval_seconds", "images_per_second", "duration_s"), pa.float64()),
    "started_at": TIMESTAMP,
    "finished_at": TIMESTAMP,
    "on_front": pa.bool_(),
}  # fmt: skip

#: Integer columns of a results table (besides ``<weight>.<param>`` columns whose values are integers).
INTEGER_COLUMNS = tuple(name for name, kind in COLUMN_TYPES.items() if kind == pa.int64())
#: Schedule parameters counted in steps (``<weight>.<param>`` columns of integers).
STEP_PARAMETERS = ("start_step", "end_step", "at_step", "period")


def nullable_dtype(kind: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    """pandas' dtype for an Arrow type: nullable ``Int64`` for integers (NaN-free), else the default."""
    return pd.Int64Dtype() if kind == pa.int64() else None


def load_results(path: str | Path) -> pd.DataFrame:
    """Read ``results.parquet`` (or a study folder holding one) into a DataFrame.

    Args:
        path: The parquet file, or the study folder that holds ``results.parquet``.

    Returns:
        One row per trial in the version-2 shape (see the module docstring), whatever
        the file's version.  ``df.attrs["objectives"]`` holds the study's objectives as
        ``[{"name", "mode"}]`` and ``df.attrs["schema_version"]`` the file's version.

    Raises:
        FileNotFoundError: no results parquet at ``path``.
        ValueError: the file's schema version is not one this code reads.
    """
    path = Path(path)
    if path.is_dir():
        path = StudyFiles(path).results
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results parquet here")
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    version = int(meta.get(SCHEMA_VERSION_KEY, "0"))
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(f"{path}: results schema version {version} is not supported")
    objectives = json.loads(meta.get(OBJECTIVES_KEY, "[]"))
    df = table.to_pandas(types_mapper=nullable_dtype)
    if version == 1:
        df = upgrade_version_1(df, objectives)
    df.attrs["objectives"] = objectives
    df.attrs["schema_version"] = version
    return df


def upgrade_version_1(df: pd.DataFrame, objectives: list[dict[str, str]]) -> pd.DataFrame:
    """A version-1 results table in the version-2 shape (a copy).

    Args:
        df: The table as read from a version-1 file.
        objectives: The study's objectives (``[{"name", "mode"}]``), for ``on_front``.

    Returns:
        The table with UTC timestamps, ``Int64`` integer columns (and integer-valued
        ``<weight>.<param>`` columns), float64 for all-null columns, ``duration_s``,
        ``on_front``, a null ``optuna_number``, ordered by start then trial id.
    """
    from analysis.pareto import front_mask

    df = df.copy()
    for name in df.columns:
        column = df[name]
        integer = name in INTEGER_COLUMNS or name.rsplit(".", 1)[-1] in STEP_PARAMETERS
        if column.dtype == object and column.isna().all():
            df[name] = column.astype("Int64" if integer else "float64")
        elif integer and pd.api.types.is_numeric_dtype(column):
            df[name] = column.astype("Int64")
    if "optuna_number" not in df.columns:
        df.insert(min(2, len(df.columns)), "optuna_number", pd.array([pd.NA] * len(df), dtype="Int64"))
    seconds = {}
    for name in ("started_at", "finished_at"):
        if name in df.columns and not isinstance(df[name].dtype, pd.DatetimeTZDtype):
            seconds[name] = pd.to_numeric(df[name], errors="coerce").astype(float)
            df[name] = pd.to_datetime(seconds[name], unit="s", utc=True).astype("datetime64[us, UTC]")
    if len(seconds) == 2:
        df["duration_s"] = seconds["finished_at"] - seconds["started_at"]
    names = [o["name"] for o in objectives]
    on_front = pd.Series(False, index=df.index)
    if names and all(n in df.columns for n in names) and "status" in df.columns:
        done = df[df["status"] == "completed"]
        on_front.loc[done.index] = front_mask(done, objectives)
    df["on_front"] = on_front.astype(bool)
    if "udr" not in df.columns:
        df["udr"] = np.nan
    if "started_at" in df.columns and "trial_id" in df.columns:
        df = df.sort_values(["started_at", "trial_id"], na_position="last", kind="mergesort").reset_index(drop=True)
    return df
