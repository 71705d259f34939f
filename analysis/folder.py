"""The study folder's file names, declared once, and its paths: the folder API analysis reads through.

:mod:`study.folder` owns the folder (it writes records, the lock, checkpoints) and builds
its :class:`~study.folder.StudyFolder` and :class:`~study.folder.TrialFolder` on
:class:`StudyFiles` and :class:`TrialFiles`; analysis reads a study through
``results.parquet``, ``history.parquet`` and these paths only.  The files a trained
model leaves in ``artifacts/`` are named by the trainer (:mod:`trainers.outputs`).
Layout::

    STUDY_DIR/
      study.lock                    the run or resume that owns the folder
      stop_requested                written on Ctrl+C: running trials checkpoint and stop
      spec.yaml, spec.json          the spec as given and as resolved
      study_run.json                the study's MLflow coordinates (paths relative to the folder)
      mlflow.db, mlartifacts/       the default MLflow store
      optuna.db                     the Optuna storage of ``search.storage: sqlite``
      rungs.json                    Pareto stopping's rungs: each trial's estimates and decision at each
                                    rung, in arrival order (``study.pareto_stopping``)
      results.parquet, history.parquet, pareto.png, report.html
      history.sources.json          the histories history.parquet was read from (size, mtime): a
                                    repeat export of unchanged histories skips rebuilding it
      run.log, ray-logs             what ``vae-study run`` printed, and a link to its local Ray's logs
      ray/                          Ray Tune's experiment state
      trials/<trial id>/            one per trial (a member of a pack is a trial):
        trial_config.json           its plan, written before training
        trial.json                  its MLflow run id and its worker (host, PID), written when the run opens
        history.jsonl               every logged term (train) and the held-out values
        result.json                 its record, written when it ends
        artifacts/                  model.pt, codes.npz, mig.npz, pictures, config, metrics (trainers.outputs);
                                    latent_kl.png, mutual_information.png (drawn by the trial when it ends)
        checkpoint/                 the checkpoint of a pack of one: state.pt and trial.json (its step)
        undelivered_tracking.jsonl  tracking the MLflow server did not take
      packs/<pack id>/checkpoint/   the checkpoint of a pack of several members
"""

from __future__ import annotations

from pathlib import Path

from trainers.outputs import MIG_NPZ, RECONSTRUCTIONS_PNG, TRAVERSAL_LATENTS_NPZ, TRAVERSALS_PNG

SPEC_YAML, SPEC_JSON, STUDY_RUN = "spec.yaml", "spec.json", "study_run.json"
MLFLOW_DB, MLFLOW_ARTIFACTS, OPTUNA_DB = "mlflow.db", "mlartifacts", "optuna.db"
RESULTS_PARQUET, HISTORY_PARQUET, HISTORY_SOURCES = "results.parquet", "history.parquet", "history.sources.json"
PARETO_PNG, REPORT_HTML, RUNGS_JSON = "pareto.png", "report.html", "rungs.json"
RAY_DIR, TRIALS_DIR, PACKS_DIR = "ray", "trials", "packs"
LOCK_FILE, STOP_FILE, RUN_LOG, RAY_LOGS = "study.lock", "stop_requested", "run.log", "ray-logs"
PLAN_FILE, META_FILE, HISTORY_JSONL, RESULT_FILE = "trial_config.json", "trial.json", "history.jsonl", "result.json"
ARTIFACTS_DIR, SPILL_FILE = "artifacts", "undelivered_tracking.jsonl"
#: The trial's views of what it learned, drawn when it ends (:func:`analysis.learning.write_learning_pictures`).
LATENT_KL_PNG, MIG_PNG = "latent_kl.png", "mutual_information.png"
CHECKPOINT_DIR, CHECKPOINT_STATE, CHECKPOINT_META = "checkpoint", "state.pt", "trial.json"


class TrialFiles:
    """``trials/<trial id>/``: the paths of one trial's files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.trial_id = self.path.name

    plan_file = property(lambda self: self.path / PLAN_FILE)
    meta_file = property(lambda self: self.path / META_FILE)
    history_file = property(lambda self: self.path / HISTORY_JSONL)
    result_file = property(lambda self: self.path / RESULT_FILE)
    artifacts = property(lambda self: self.path / ARTIFACTS_DIR)
    spill_file = property(lambda self: self.path / SPILL_FILE)
    #: The report's pictures of the trained model (:func:`analysis.pictures.load_pictures`).
    traversals = property(lambda self: self.artifacts / TRAVERSALS_PNG)
    reconstructions = property(lambda self: self.artifacts / RECONSTRUCTIONS_PNG)
    traversal_latents = property(lambda self: self.artifacts / TRAVERSAL_LATENTS_NPZ)
    #: What the trial's MIG was computed from (:func:`analysis.learning.load_mig`).
    mig = property(lambda self: self.artifacts / MIG_NPZ)
    #: Its per-latent KL over training and its MIG matrix, as pictures (logged to its MLflow run).
    latent_kl_png = property(lambda self: self.artifacts / LATENT_KL_PNG)
    mig_png = property(lambda self: self.artifacts / MIG_PNG)


class StudyFiles:
    """A study folder's paths (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    spec_yaml = property(lambda self: self.root / SPEC_YAML)
    spec_json = property(lambda self: self.root / SPEC_JSON)
    study_run = property(lambda self: self.root / STUDY_RUN)
    mlflow_db = property(lambda self: self.root / MLFLOW_DB)
    mlflow_artifacts = property(lambda self: self.root / MLFLOW_ARTIFACTS)
    optuna_db = property(lambda self: self.root / OPTUNA_DB)
    results = property(lambda self: self.root / RESULTS_PARQUET)
    history = property(lambda self: self.root / HISTORY_PARQUET)
    history_sources = property(lambda self: self.root / HISTORY_SOURCES)
    pareto = property(lambda self: self.root / PARETO_PNG)
    report = property(lambda self: self.root / REPORT_HTML)
    ray = property(lambda self: self.root / RAY_DIR)
    trials_dir = property(lambda self: self.root / TRIALS_DIR)
    packs_dir = property(lambda self: self.root / PACKS_DIR)
    lock_file = property(lambda self: self.root / LOCK_FILE)
    stop_file = property(lambda self: self.root / STOP_FILE)
    #: The study's run log (what ``vae-study run`` printed) and a link to its local Ray's logs.
    run_log = property(lambda self: self.root / RUN_LOG)
    ray_logs = property(lambda self: self.root / RAY_LOGS)
    #: Pareto stopping's rung state (``early_stopping: {kind: pareto}`` only).
    rungs = property(lambda self: self.root / RUNGS_JSON)

    def trial(self, trial_id: str) -> TrialFiles:
        return TrialFiles(self.trials_dir / trial_id)
