"""Loading a study's results parquet into pandas."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

SUPPORTED_SCHEMA_VERSIONS = {1}
#: File names inside a study folder (study.folder owns the folder; analysis reads and writes these).
RESULTS_FILE, HISTORY_FILE, REPORT_FILE = "results.parquet", "history.parquet", "report.html"


def load_results(path: str | Path) -> pd.DataFrame:
    """Read ``results.parquet`` (or a study folder holding one) into a DataFrame.

    The study's objectives are in ``df.attrs["objectives"]`` as ``[{"name", "mode"}]``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results parquet here")
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    version = int(meta.get("vae_study.schema_version", "0"))
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(f"{path}: results schema version {version} is not supported")
    df = table.to_pandas()
    df.attrs["objectives"] = json.loads(meta.get("vae_study.objectives", "[]"))
    return df
