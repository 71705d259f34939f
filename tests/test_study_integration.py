"""A tiny study through the real thing: `vae-study run` → local Ray Tune + Optuna → MLflow SQLite → parquet.

The tiny study packs its three trials two to a Ray trial: one pack of two (the stacked
trainer) and one pack of one (the plain loop), so every check below holds for both.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from scaffold import Cli, StudyRuns, tiny_spec

from analysis import load_results
from analysis.pareto import front_mask
from study.folder import StudyFolder
from trainers.checkpoint import load_checkpoint

pytestmark = pytest.mark.integration


#: Hypervolume reference point of the tiny study's objectives (recon in nats, mig).
REFERENCE = {"recon": 5000.0, "mig": -1.0}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    objectives = [{"name": n, "mode": m, "reference": REFERENCE[n]} for n, m in (("recon", "min"), ("mig", "max"))]
    spec = tiny_spec(training={"pack_size": 2}, objectives=objectives, evaluation={"metrics": ["mig", "active_units"]})
    return Cli(tmp_path_factory.mktemp("tiny")).study(spec, "--progress-every", 0.5)


def test_the_run_log_is_one_line_per_event_and_ends_with_the_summary(tiny_study):
    proc, study_dir = tiny_study
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 160
    assert "Traceback" not in proc.stdout + proc.stderr and "Exception ignored" not in proc.stdout + proc.stderr
    # Ray's own status tables and per-trial config dumps are off.
    assert "Trial status" not in proc.stdout and "Configuration for experiment" not in proc.stdout
    df = load_results(study_dir)
    assert sum(" started  " in line for line in lines) == 2  # a pack of two and a pack of one
    for name in df["trial_name"]:
        assert any(f" finished {name} in " in line for line in lines), name
    headers = [line for line in lines if re.search(r"\[\d/3 done, \d running, 0 failed\] front \d", line)]
    assert any("[3/3 done, 0 running, 0 failed]" in line for line in headers)
    assert any(" · ETA " in line for line in headers) and any(" step " in line for line in headers)
    # The summary comes last and says where everything is, relative to where the study was run.
    summary = lines[lines.index("Study 'tiny' done: 3 completed.") :]
    assert "  report       : study/report.html" in summary
    assert "  browse runs  : mlflow ui --backend-store-uri sqlite:///study/mlflow.db" in summary
    experiment = StudyRuns.of(study_dir).parent.info.experiment_id
    runs_page = f"http://127.0.0.1:5000/#/experiments/{experiment}?workflowType=machine_learning"  # the runs table
    assert f"                 then {runs_page}" in summary
    assert summary[-1] == "  status       : vae-study status study"
    assert (study_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (study_dir / "run.log").read_text().splitlines() == [line for line in lines if line[:2].isdigit()]
    assert (study_dir / "ray-logs").is_dir()  # Ray's own logs, out of the run log
    assert not list((study_dir / "ray").rglob("progress.csv"))  # Tune's per-trial loggers: off unless asked


def test_results_parquet_has_one_row_per_trial(tiny_study):
    _, study_dir = tiny_study
    df = load_results(study_dir)
    assert len(df) == 3 and (df["status"] == "completed").all()
    terms = ["recon", "kl", "index_code_mi", "total_correlation", "dimwise_kl", "loss", "beta", "mig"]
    for column in [*terms, "beta.schedule", "seed", "mlflow_run_id", "checkpoint", "images_per_second"]:
        assert column in df.columns, column
    assert df[terms].notna().all().all()
    assert set(df["seed"]) <= {0, 1}
    assert set(df["beta.schedule"]) <= {"constant", "linear"}
    assert df.attrs["objectives"] == [
        {"name": "recon", "mode": "min", "reference": REFERENCE["recon"]},
        {"name": "mig", "mode": "max", "reference": REFERENCE["mig"]},
    ]
    # The decomposition sums to the single-sample KL, which is close to the analytic KL.
    decomposed = df["index_code_mi"] + df["total_correlation"] + df["dimwise_kl"]
    assert (decomposed - df["kl"]).abs().max() < 0.5 + 0.2 * df["kl"].max()
    for path in df["checkpoint"]:  # recorded relative to the study folder, which may move
        assert not Path(path).is_absolute()
        assert load_checkpoint(study_dir / path)["step"] == 20


def test_mlflow_has_a_parent_run_and_one_nested_run_per_trial(tiny_study):
    _, study_dir = tiny_study
    runs = StudyRuns.of(study_dir)
    client, children = runs.client, runs.children
    assert len(children) == 3
    parent = runs.parent
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["search_algorithm"] == "optuna-tpe"
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on the runs table
    # The parent carries the spec as params and the study's summary as metrics.
    assert parent.data.params["training.steps"] == "20" and parent.data.params["model.latent_dim"] == "4"
    df = load_results(study_dir)
    summary = parent.data.metrics
    assert summary["trials_completed"] == 3 and summary["front_size"] == df["on_front"].sum()
    assert summary["best_recon"] == pytest.approx(df["recon"].min())
    assert summary["best_mig"] == pytest.approx(df["mig"].max())
    # Two objectives: the area the front dominates up to the reference, by a sweep written out here.
    front = sorted(zip(df["recon"], df["mig"], strict=True))
    area, best_mig = 0.0, REFERENCE["mig"]
    for (recon, mig), next_recon in zip(front, [*(r for r, _ in front[1:]), REFERENCE["recon"]], strict=True):
        best_mig = max(best_mig, mig)
        area += (next_recon - recon) * (best_mig - REFERENCE["mig"])
    assert summary["hypervolume"] == pytest.approx(area)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "spec.yaml",
        "results.parquet",
        "pareto.png",
        "report.html",
    }
    assert {c.info.run_id for c in children} == set(df["mlflow_run_id"])
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.data.tags["status"] == "completed"
        params = child.data.params
        assert params["variant"] == "beta_vae" and "beta.schedule" in params
        assert (params["lr"], params["steps"], params["latent_dim"], params["batch_size"]) == ("0.001", "20", "4", "16")
        assert {"kernels", "precision", "eval.recon_points", "decoder", "dataset"} <= set(params)
        # A readable name: id, variant, weight, seed.
        assert re.fullmatch(r"t\d{4}-beta_vae-beta=[\w.()]+-s[01]", child.info.run_name), child.info.run_name
        assert [m.step for m in client.get_metric_history(child.info.run_id, "recon")] == [5, 10, 15, 20]
        heldout = client.get_metric_history(child.info.run_id, "heldout/recon")  # its own key
        assert [m.step for m in heldout] == [20]
        # The final model and the codes stay in the trial folder, once; the run's tag names the model.
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {
            "reconstructions.png",
            "traversals.png",
            "config.json",
            "metrics.json",
            "mig.npz",
            "latent_kl.png",
            "mutual_information.png",
        }
        trial_id = child.data.tags["trial_id"]
        assert child.data.tags["model"] == f"trials/{trial_id}/artifacts/model.pt"
        row = df[df["mlflow_run_id"] == child.info.run_id].iloc[0]
        assert child.info.run_name == row["trial_name"]
        assert child.data.metrics["mig"] == pytest.approx(row["mig"])
        assert child.data.metrics["heldout/recon"] == pytest.approx(row["recon"])
        # The views of what it learned: each latent's KL over training, MIG per factor (their mean: the MIG).
        assert [m.step for m in client.get_metric_history(child.info.run_id, "kl_z3")] == [5, 10, 15, 20]
        per_factor = [child.data.metrics[f"mig/{n}"] for n in ("shape", "scale", "orientation", "posX", "posY")]
        assert np.mean(per_factor) == pytest.approx(row["mig"], rel=1e-9)
        with np.load(study_dir / "trials" / trial_id / "artifacts" / "mig.npz") as saved:
            assert saved["matrix"].shape == (4, 5) and saved["mig_per_factor"].tolist() == pytest.approx(per_factor)


def test_history_parquet_holds_every_logged_term(tiny_study):
    _, study_dir = tiny_study
    history = pd.read_parquet(study_dir / "history.parquet")
    df = load_results(study_dir)
    assert set(history["trial_id"]) == set(df["trial_id"])
    train = history[history["split"] == "train"]
    for _, rows in train.groupby("trial_id"):
        assert sorted(rows[rows["term"] == "recon"]["step"]) == [5, 10, 15, 20]
        assert {"recon", "kl", "total_correlation", "beta", "loss"} <= set(rows["term"])
    heldout = history[(history["split"] == "heldout") & (history["term"] == "mig")].set_index("trial_id")["value"]
    assert heldout.to_dict() == pytest.approx(df.set_index("trial_id")["mig"].to_dict())


def test_status_of_a_finished_study(tiny_study, cli):
    _, study_dir = tiny_study
    proc = cli.call("status", study_dir)
    assert proc.returncode == 0, proc.stderr
    assert "3 planned: 3 completed, 0 failed, 0 crashed, 0 running, 0 pending" in proc.stdout
    assert "best      mig = " in proc.stdout


def test_trials_are_packed_and_each_member_is_its_own_trial(tiny_study):
    _, study_dir = tiny_study
    df = load_results(study_dir)
    packs = df.groupby("pack_id")["trial_id"].apply(sorted).to_dict()
    assert sorted(len(members) for members in packs.values()) == [1, 2]
    # Short ids in the order asked: a pack of two (p0000: t0000, t0001), then a pack of one (t0002, its own id).
    assert packs == {"p0000": ["t0000", "t0001"], "t0002": ["t0002"]}
    for pack_id, members in packs.items():
        assert (df.loc[df["pack_id"] == pack_id, "pack_size"] == len(members)).all()
    assert sorted(p.name for p in (study_dir / "ray").iterdir() if p.is_dir()) == ["p0000", "t0002"]  # Ray's folders
    assert len({round(v, 4) for v in df["recon"]}) == 3  # three trainings, not one thrice


def test_the_searchers_history_is_in_the_optuna_storage(tiny_study):
    import optuna

    _, study_dir = tiny_study
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    trials = {t.number: t for t in study.trials}
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials.values())
    # Each member was told the values it wrote, as the Optuna trial its plan names.
    folder = StudyFolder(study_dir)
    for row in load_results(study_dir).itertuples():
        plan = folder.trial(row.trial_id).read_plan()
        told = trials[plan.optuna["number"]]
        assert told.values == [row.recon, row.mig] and told.params == plan.optuna["params"]
        assert told.user_attrs["seed"] == row.seed


def test_export_is_idempotent(tiny_study, cli):
    _, study_dir = tiny_study
    before = pq.read_table(study_dir / "results.parquet")
    history = pq.read_table(study_dir / "history.parquet")
    proc = cli.call("export", study_dir)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(study_dir / "results.parquet").equals(before)
    assert pq.read_table(study_dir / "history.parquet").equals(history)


def test_a_copied_folder_resumes_exports_and_reports_into_itself(tiny_study, cli, tmp_path):
    """Every path the folder records is relative to it: a copy works on its own, the original untouched."""
    _, study_dir = tiny_study
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(study_dir, copy)
    assert json.loads((copy / "study_run.json").read_text())["tracking_uri"] is None
    original = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}").get_experiment_by_name("tiny")

    proc = cli.call("resume", copy)  # nothing left to train: it re-exports and reports, into the copy
    assert proc.returncode == 0 and "3 completed" in proc.stdout, proc.stderr[-3000:]
    runs = StudyRuns.of(copy)
    moved = runs.client.get_experiment_by_name("tiny").artifact_location
    assert moved == (copy / "mlartifacts").resolve().as_uri()
    assert all(r.info.artifact_uri.startswith(moved) for r in [*runs.parents, *runs.children])
    assert runs.parent.info.status == "FINISHED" and runs.parent.data.tags["study_dir"] == str(copy.resolve())
    assert list(copy.glob(f"mlartifacts/{runs.parent.info.run_id}/artifacts/report.html"))
    unchanged = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}").get_experiment_by_name("tiny")
    assert unchanged.artifact_location == original.artifact_location

    df = load_results(copy)
    assert all(not Path(p).is_absolute() and (copy / p).is_file() for p in df["codes"])
    for path in df["checkpoint"]:
        assert load_checkpoint(copy / path)["step"] == 20
    assert not (copy / "study.lock").exists()


def test_a_grid_over_variants_runs_every_combination(cli):
    spec = tiny_spec(
        variant=None,
        weights=None,
        variants={"beta_tcvae": {"weights": {"beta": [2, 6]}}, "factor_vae": {"weights": {"gamma": [10]}}},
        seeds=[3, 4],
        search={"mode": "grid", "max_concurrent": 2, "storage": None},
        tracking={"tune_loggers": True},
    )
    proc, study_dir = cli.study(spec)
    assert "6 completed" in proc.stdout
    assert list((study_dir / "ray").glob("*/progress.csv"))  # Tune's own logs, asked for
    df = load_results(study_dir)
    assert sorted(
        zip(df["variant"], df["beta.value"].fillna(0), df["gamma.value"].fillna(0), df["seed"], strict=True)
    ) == [
        ("beta_tcvae", 2.0, 0.0, 3),
        ("beta_tcvae", 2.0, 0.0, 4),
        ("beta_tcvae", 6.0, 0.0, 3),
        ("beta_tcvae", 6.0, 0.0, 4),
        ("factor_vae", 0.0, 10.0, 3),
        ("factor_vae", 0.0, 10.0, 4),
    ]
    factor = df[df["variant"] == "factor_vae"].iloc[0]
    assert 0.0 <= factor["discriminator_accuracy"] <= 1.0 and factor["tc_discriminator"] == factor["tc_discriminator"]
    # Two seeds of each configuration: UDR compares them; with two, both get the pair's score.
    assert df["udr"].between(0, 1).all()
    for _, pair in df.groupby(["variant", df["beta.value"].fillna(0)]):
        assert pair["udr"].nunique() == 1
    assert "UDR" in (study_dir / "report.html").read_text()
    runs = StudyRuns.of(study_dir)
    assert runs.parent.data.tags["search_algorithm"] == "grid" and len(runs.children) == 6
    assert "report.html" in runs.artifacts(runs.parent)


def test_the_parquet_has_typed_columns_on_front_and_optuna_numbers(tiny_study):
    _, study_dir = tiny_study
    df = load_results(study_dir)
    assert df.attrs["schema_version"] == 2 and len(df) == 3
    assert str(df["optuna_number"].dtype) == "Int64" and sorted(df["optuna_number"]) == [0, 1, 2]
    assert df["on_front"].dtype == bool and df["on_front"].any()
    assert df["on_front"].tolist() == front_mask(df, {"recon": "min", "mig": "max"}).tolist()
    assert str(df["started_at"].dtype) == "datetime64[us, UTC]" and df["started_at"].is_monotonic_increasing
    assert str(df["seed"].dtype) == "Int64" and (df["duration_s"] > 0).all()
    assert df["udr"].dtype == "float64" and str(df["failed_step"].dtype) == "Int64"


#: report.html's limit at any study size.
MAX_PAGE_BYTES = 20_000_000


def test_the_report_shows_the_front_trials_pictures_in_a_browser(tiny_study, browser, tmp_path):
    _, study_dir = tiny_study
    page_file = study_dir / "report.html"
    assert page_file.stat().st_size <= MAX_PAGE_BYTES
    text = page_file.read_text()
    front = load_results(study_dir).query("on_front")
    for trial_id in front["trial_id"]:
        assert f'<figure id="pictures-{trial_id}">' in text, trial_id  # traversals of every front trial
    assert "training-curves" in text and "no pictures saved" not in text
    for trial_id in front["trial_id"]:  # each latent's KL over training, the MI heat map named by factor
        assert f'<figure id="latent-kl-{trial_id}">' in text and f'<figure id="mutual-information-{trial_id}">' in text

    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(page_file.resolve().as_uri(), wait_until="load")
    script = "() => Array.from(document.images, i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth}))"
    images = page.evaluate(script)
    assert len(images) >= 2 + 3 * len(front), images  # Pareto plot, curves, three per front trial, ...
    broken = [i["alt"] for i in images if not i["complete"] or i["w"] == 0]
    assert not broken, broken
    assert page.title() == f"Study report: {study_dir.name}"
    headings = page.locator("h2").all_inner_texts()
    assert "Front trials: reconstructions and traversals" in headings and "Pareto front" in headings
    size = page.evaluate("() => document.documentElement.outerHTML.length")
    assert 0 < size <= MAX_PAGE_BYTES
    assert "Front trials: per-latent KL and mutual information" in headings
    first = front["trial_id"].iloc[0]
    heat = page.locator(f"#mutual-information-{first} img")
    assert all(name in heat.get_attribute("alt") for name in ("shape", "scale", "orientation", "posX", "posY"))
    assert heat.evaluate("i => i.naturalWidth") > 300 and heat.bounding_box()["width"] > 300
    page.locator(f"#pictures-{first}").screenshot(path=str(tmp_path / "traversal.png"))
    page.locator(f"#latent-kl-{first}").screenshot(path=str(tmp_path / "latent-kl.png"))
    heat.screenshot(path=str(tmp_path / "mutual-information.png"))
    assert not errors, errors
    for name in ("traversal.png", "latent-kl.png", "mutual-information.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
