"""results.parquet schema version 2: typed nullable columns, UTC times, start order, the new
columns, and version-1 files still read (in the version-2 shape)."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import load_results, pareto_front
from analysis.report import write_report
from study.export import export_results
from study.folder import TrialFolder, TrialPlan, write_json_atomic

OBJECTIVES = [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}]


def _study(root, n=9):
    rng = np.random.default_rng(3)
    for i in range(n):
        trial_id = f"t{i:04d}"
        linear = i % 3 == 0
        params = (
            {"beta.schedule": "linear", "beta.start": 0.0, "beta.end": 4.0, "beta.start_step": 0, "beta.end_step": 50}
            if linear
            else {"beta.schedule": "constant", "beta.value": float(rng.uniform(1, 8))}
        )
        failed = i == 4
        record = {
            "trial_id": trial_id, "trial_name": f"{trial_id}-beta_vae-s{i % 2}", "variant": "beta_vae",
            "status": "failed" if failed else "completed", "seed": i % 2, "steps": 100, "params": params,
            "terms": {} if failed else {"recon": float(rng.uniform(50, 100)), "kl": 3.0},
            "metrics": {} if failed else {"mig": float(rng.uniform(0, 0.5))},
            "failure_reason": "recon is nan at step 7" if failed else None, "failed_step": 7 if failed else None,
            # started in reverse id order; trial 8 never started (a crash before training)
            "started_at": None if i == 8 else 1_800_000_000.0 + 100 * (n - i),
            "finished_at": 1_800_000_000.0 + 100 * (n - i) + 42.5,
        }  # fmt: skip
        folder = TrialFolder(root / "trials" / trial_id).create()
        write_json_atomic(folder.result_file, record)
        if i % 2 == 0:  # an Optuna member: its plan holds its number
            optuna = {"number": 100 + i, "params": {}, "distributions": {}}
            folder.write_plan(TrialPlan(trial_id, {"variant": "beta_vae", "seed": 0}, trial_id, optuna=optuna))
    return export_results(root, OBJECTIVES)


def test_version_2_columns_are_typed_ordered_and_complete(tmp_path):
    path = _study(tmp_path)
    schema = pq.read_schema(path)
    assert schema.metadata[b"vae_study.schema_version"] == b"2"
    expected = {
        "udr": pa.float64(), "failed_step": pa.int64(), "beta.end_step": pa.int64(), "beta.start_step": pa.int64(),
        "beta.value": pa.float64(), "seed": pa.int64(), "optuna_number": pa.int64(), "on_front": pa.bool_(),
        "duration_s": pa.float64(), "started_at": pa.timestamp("us", tz="UTC"), "failure_reason": pa.string(),
        "finished_at": pa.timestamp("us", tz="UTC"), "recon": pa.float64(), "pack_id": pa.string(),
    }  # fmt: skip
    for name, kind in expected.items():
        assert schema.field(name).type == kind, name

    # A plain pandas read gives the nullable dtypes too (pandas metadata in the file).
    plain = pd.read_parquet(path)
    assert str(plain["failed_step"].dtype) == "Int64" and str(plain["beta.end_step"].dtype) == "Int64"
    assert plain["udr"].dtype == np.float64 and plain["udr"].isna().all()

    df = load_results(tmp_path)
    assert df.attrs["schema_version"] == 2 and df.attrs["objectives"] == OBJECTIVES
    assert str(df["started_at"].dtype) == "datetime64[us, UTC]"
    assert df["started_at"].iloc[0] == pd.Timestamp(1_800_000_000 + 200, unit="s", tz="UTC")
    # Ordered by start (the reverse of the ids here), the never-started trial last.
    assert df["trial_id"].tolist() == [f"t{i:04d}" for i in (7, 6, 5, 4, 3, 2, 1, 0, 8)]
    assert df.loc[df["trial_id"] == "t0004", "failed_step"].tolist() == [7]
    assert df.loc[df["trial_id"] != "t0004", "failed_step"].isna().all()
    assert df["beta.end_step"].dropna().tolist() == [50, 50, 50]
    numbers = dict(zip(df["trial_id"], df["optuna_number"], strict=True))
    assert numbers["t0002"] == 102 and numbers["t0000"] == 100 and numbers["t0001"] is pd.NA
    assert df.loc[df["trial_id"] == "t0003", "duration_s"].item() == pytest.approx(42.5)
    assert df.loc[df["trial_id"] == "t0008", "duration_s"].isna().all()

    front = pareto_front(df[df["status"] == "completed"], OBJECTIVES)
    assert set(df.loc[df["on_front"], "trial_id"]) == set(front["trial_id"]) and len(front) >= 1
    assert not df.loc[df["status"] != "completed", "on_front"].any()


def _write_version_1(path, rows, objectives):
    """A results file as version 1 wrote it (pa.array's own inference, epoch seconds, id order)."""
    columns = dict.fromkeys(k for row in rows for k in row)
    table = pa.table({name: pa.array([row.get(name) for row in rows]) for name in columns})
    meta = {"vae_study.schema_version": "1", "vae_study.objectives": json.dumps(objectives)}
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_version_1_files_still_load_in_the_version_2_shape(tmp_path):
    rows = [
        {"trial_id": "a", "status": "completed", "seed": 0, "failed_step": None, "beta.end_step": 50,
         "recon": 80.0, "mig": 0.2, "udr": None, "started_at": 1_800_000_200.0, "finished_at": 1_800_000_260.0},
        {"trial_id": "b", "status": "completed", "seed": 1, "failed_step": None, "beta.end_step": None,
         "recon": 70.0, "mig": 0.1, "udr": None, "started_at": 1_800_000_100.0, "finished_at": 1_800_000_130.0},
        {"trial_id": "c", "status": "completed", "seed": 1, "failed_step": None, "beta.end_step": None,
         "recon": 90.0, "mig": 0.05, "udr": None, "started_at": 1_800_000_000.0, "finished_at": 1_800_000_010.0},
    ]  # fmt: skip
    _write_version_1(tmp_path / "results.parquet", rows, OBJECTIVES)
    assert pd.read_parquet(tmp_path / "results.parquet")["udr"].dtype == object  # version 1's all-None column

    df = load_results(tmp_path)
    assert df.attrs["schema_version"] == 1
    assert df["trial_id"].tolist() == ["c", "b", "a"]  # by start
    assert str(df["started_at"].dtype) == "datetime64[us, UTC]"
    assert str(df["beta.end_step"].dtype) == "Int64" and str(df["failed_step"].dtype) == "Int64"
    assert df["udr"].dtype == np.float64 and df["optuna_number"].isna().all()
    assert df["duration_s"].tolist() == [10.0, 30.0, 60.0]
    assert dict(zip(df["trial_id"], df["on_front"], strict=True)) == {"a": True, "b": True, "c": False}
    # The report reads it too.
    page = write_report(tmp_path).read_text()
    assert "<h2>Non-dominated trials" in page and page.count("no pictures saved") == 2


def test_an_unknown_version_is_refused(tmp_path):
    table = pa.table({"trial_id": ["a"]}).replace_schema_metadata({"vae_study.schema_version": "9"})
    pq.write_table(table, tmp_path / "results.parquet")
    with pytest.raises(ValueError, match="version 9"):
        load_results(tmp_path)
