"""MLflow wiring: the study's parent run (driver) and each trial's nested run (trial process).

Trials log through :class:`TrialTracker`: terms are buffered and sent with one
``log_batch`` every ``flush_every`` steps from a background thread, so training
never waits on the tracking server.  Batches respect MLflow's limits (1,000
metrics, 100 params or tags per call) by construction.  A batch that cannot be
delivered after retries is kept and, at the end, written as JSON lines beside
the trial's artifacts, never dropped silently.

Ray's ``MLflowLoggerCallback`` is deliberately not used: it logs from the driver
(≈1 s per result) and cannot nest runs.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
PARENT_TAG = "mlflow.parentRunId"


def default_tracking_uri(study_dir: Path) -> str:
    return f"sqlite:///{(study_dir / 'mlflow.db').resolve()}"


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def log_params_and_tags(client: MlflowClient, run_id: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
    """Params and tags in batches of at most 100 entries together."""
    entries: list[Param | RunTag] = [Param(k, str(v)) for k, v in params.items()]
    entries += [RunTag(k, str(v)) for k, v in tags.items()]
    for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(
            run_id,
            params=[e for e in chunk if isinstance(e, Param)],
            tags=[e for e in chunk if isinstance(e, RunTag)],
        )


@dataclass(frozen=True)
class StudyRun:
    """Where trials log: tracking URI, experiment and the study's parent run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def open_study_run(
    tracking_uri: str, name: str, artifact_dir: Path, tags: Mapping[str, Any], spec_file: Path
) -> StudyRun:
    """Create (or reuse) the experiment ``name`` and start the study's parent run."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        # A tracking server decides where artifacts go; with a database or file store the
        # study folder holds them (MLflow's default would be ./mlruns in the working directory).
        server = tracking_uri.startswith(("http://", "https://", "databricks"))
        location = None if server else artifact_dir.resolve().as_uri()
        experiment_id = client.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    run = client.create_run(experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
    client.log_artifact(run.info.run_id, str(spec_file))
    return StudyRun(tracking_uri, experiment_id, run.info.run_id)


def close_study_run(study: StudyRun, artifacts: Iterable[Path], summary: Mapping[str, float], status: str) -> None:
    client = MlflowClient(study.tracking_uri)
    for path in artifacts:
        if path.exists():
            client.log_artifact(study.parent_run_id, str(path))
    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, 0) for k, v in summary.items()]
    for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
        client.log_batch(study.parent_run_id, metrics=chunk)
    client.set_terminated(study.parent_run_id, status)


class TrialTracker:
    """A trial's nested run, fed asynchronously in batches (see the module docstring)."""

    def __init__(
        self,
        study: StudyRun,
        run_name: str,
        tags: Mapping[str, Any],
        params: Mapping[str, Any],
        run_id: str | None = None,
        flush_every: int = 100,
        retries: int = 5,
    ) -> None:
        self.client = MlflowClient(study.tracking_uri)
        self.flush_every = flush_every
        self.retries = retries
        if run_id is None:
            run = self.client.create_run(
                study.experiment_id,
                run_name=run_name,
                tags={PARENT_TAG: study.parent_run_id, **{k: str(v) for k, v in tags.items()}},
            )
            run_id = run.info.run_id
            log_params_and_tags(self.client, run_id, params, {})
        else:
            # A retried trial re-attaches to the run it started; params are already there.
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        self._pending: list[Metric] = []
        self._last_flush_step = 0
        self._undelivered: list[Metric] = []
        self._queue: queue.Queue[list[Metric] | None] = queue.Queue()
        self._sender = threading.Thread(target=self._send_loop, name="mlflow-sender", daemon=True)
        self._sender.start()

    def log_terms(self, step: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in values.items())
        if step - self._last_flush_step >= self.flush_every:
            self.flush(step)

    def flush(self, step: int | None = None) -> None:
        if self._pending:
            self._queue.put(self._pending)
            self._pending = []
        if step is not None:
            self._last_flush_step = step

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        log_params_and_tags(self.client, self.run_id, {}, tags)

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def _send_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            for chunk in _chunks(batch, MAX_METRICS_PER_BATCH):
                if not self._send(chunk):
                    self._undelivered.extend(chunk)

    def _send(self, metrics: list[Metric]) -> bool:
        delay = 0.5
        for attempt in range(self.retries):
            try:
                self.client.log_batch(self.run_id, metrics=metrics)
                return True
            except Exception as error:
                log.warning("MLflow log_batch failed (attempt %d/%d): %s", attempt + 1, self.retries, error)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        return False

    def close(self, status: str, undelivered_file: Path | None = None) -> int:
        """Deliver what is buffered, end the run with ``status``; returns metrics not delivered."""
        self.flush()
        self._queue.put(None)
        self._sender.join()
        lost = len(self._undelivered)
        if lost and undelivered_file is not None:
            with undelivered_file.open("a") as out:
                for m in self._undelivered:
                    out.write(
                        json.dumps({"key": m.key, "value": m.value, "step": m.step, "timestamp": m.timestamp}) + "\n"
                    )
            log.error("%d metrics could not be delivered to MLflow; written to %s", lost, undelivered_file)
        self.client.set_terminated(self.run_id, status)
        return lost
