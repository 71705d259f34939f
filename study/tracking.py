"""MLflow wiring: the study's parent run (driver) and each trial's nested run (trial process).

Trials log through :class:`TrialTracker`.  Every tracking call of a trial (its params,
metric batches, tags, artifacts, the run's reopening on a resume and its end) is an
:class:`Operation` on one ordered queue,
sent by a background thread, so training never waits on the tracking server.
Metrics go as one ``log_batch`` every ``flush_every`` steps; batches respect
MLflow's limits (1,000 metrics, 100 params or tags per call) by construction.

When the server is unreachable the sender keeps retrying, with backoff capped at
``max_backoff`` seconds, for as long as the trial trains: a trial that outlives
an outage delivers everything once the server is back.  What is waiting is
bounded (``max_buffered`` metrics); past the bound new batches go straight to the
trial's spill file instead of memory.  When the trial ends, the tracker waits up to
``close_timeout`` seconds for the queue to drain, then writes what is left to the
spill file (JSON lines, one operation each) and reports the count: nothing is
silently lost, and ``vae-study sync STUDY_DIR`` (:func:`replay_spill`) delivers
spilled operations later.

Ray's ``MLflowLoggerCallback`` is deliberately not used: it logs from the driver
(≈1 s per result) and cannot nest runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from study.folder import RecordError, StudyFolder, read_json, write_json_atomic

log = logging.getLogger(__name__)

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
PARENT_TAG = "mlflow.parentRunId"


def default_tracking_uri(study_dir: Path) -> str:
    """The MLflow store of a study without ``tracking.uri``: SQLite inside the study folder."""
    return f"sqlite:///{StudyFolder(study_dir).mlflow_db.resolve()}"


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def log_params_and_tags(client: MlflowClient, run_id: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> None:
    """Params and tags in batches of at most 100 entries together."""
    entries: list[Param | RunTag] = [Param(k, _param_value(v)) for k, v in params.items()]
    entries += [RunTag(k, str(v)) for k, v in tags.items()]
    for chunk in _chunks(entries, MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(
            run_id,
            params=[e for e in chunk if isinstance(e, Param)],
            tags=[e for e in chunk if isinstance(e, RunTag)],
        )


def dotted(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings flattened to dotted keys, as MLflow params:
    ``{"training": {"lr": 1e-3}}`` → ``{"training.lr": 1e-3}`` (lists and empty mappings stay whole)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(dotted(value, name + "."))
        else:
            flat[name] = value
    return flat


#: The experiment tag MLflow 3's UI reads to open an experiment on its runs table
#: (without it, a new experiment opens on the GenAI "Traces" page).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
#: MLflow's limit on a param's value (longer values are cut, with a mark).
MAX_PARAM_LENGTH = 6000


@dataclass(frozen=True)
class StudyRun:
    """Where trials log: tracking URI, experiment and the study's parent run."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def save(self, folder: StudyFolder) -> None:
        """``study_run.json``; the folder's own store is recorded as ``null`` (it moves with the folder)."""
        own = self.tracking_uri == default_tracking_uri(folder.root)
        data = {"tracking_uri": None if own else self.tracking_uri, "experiment_id": self.experiment_id}
        write_json_atomic(folder.study_run, {**data, "parent_run_id": self.parent_run_id})

    @classmethod
    def load(cls, folder: StudyFolder, spec_uri: str | None) -> StudyRun:
        """The study's coordinates; with no ``tracking.uri`` in the spec, the store is the folder's own
        wherever the folder now is (older folders recorded its absolute path)."""
        data = read_json(folder.study_run)
        if not isinstance(data, dict) or not data.get("experiment_id") or not data.get("parent_run_id"):
            raise RecordError(f"{folder.study_run}: lacks experiment_id or parent_run_id")
        uri = spec_uri or default_tracking_uri(folder.root)
        return cls(uri, str(data["experiment_id"]), str(data["parent_run_id"]))


def rebase_artifact_store(study: StudyRun, folder: StudyFolder) -> None:
    """Point the folder's own MLflow store at the folder's ``mlartifacts/`` after the folder moved.

    MLflow keeps absolute artifact locations; for the SQLite store inside the study
    folder they are rewritten (experiment and runs), so a copied folder logs into its
    own artifacts, never the original's.  Other stores are left alone."""
    if study.tracking_uri != default_tracking_uri(folder.root):
        return
    import sqlalchemy

    new = folder.mlflow_artifacts.resolve().as_uri()
    engine = sqlalchemy.create_engine(study.tracking_uri)
    try:
        with engine.begin() as db:
            old = db.execute(
                sqlalchemy.text("SELECT artifact_location FROM experiments WHERE experiment_id = :id"),
                {"id": study.experiment_id},
            ).scalar()
            if old is None or old == new:
                return
            db.execute(
                sqlalchemy.text("UPDATE experiments SET artifact_location = :new WHERE experiment_id = :id"),
                {"new": new, "id": study.experiment_id},
            )
            db.execute(
                sqlalchemy.text(
                    "UPDATE runs SET artifact_uri = :new || substr(artifact_uri, :n + 1) "
                    "WHERE experiment_id = :id AND substr(artifact_uri, 1, :n) = :old"
                ),
                {"new": new, "old": old, "n": len(old), "id": study.experiment_id},
            )
        log.warning("the study folder moved: MLflow artifacts now go to %s (were %s)", new, old)
    finally:
        engine.dispose()


def store_template() -> Path | None:
    """An empty SQLite MLflow store of this MLflow version, made once per machine and user in
    ``$XDG_CACHE_HOME/vae-study`` (default ``~/.cache``); None where that cannot be written.

    MLflow builds a new SQLite store by running every schema migration, ≈ 2.5 s of CPU on
    the 2-core host for each study; a copy of the result takes milliseconds."""
    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vae-study"
    template = cache / f"mlflow-{mlflow.__version__}.db"
    if template.is_file():
        return template
    try:
        cache.mkdir(parents=True, exist_ok=True)
        staging = cache / f".{template.name}.{os.getpid()}"
        staging.unlink(missing_ok=True)
        MlflowClient(f"sqlite:///{staging}").search_experiments(max_results=1)  # runs the migrations
        os.replace(staging, template)  # whole or not at all: another process may be making it too
    except (OSError, sqlite3.Error) as error:
        log.info("no MLflow store template in %s: %s", cache, error)
        return None
    return template


def create_sqlite_store(db: Path, artifacts: Path) -> None:
    """A new, empty MLflow store at ``db`` (a copy of :func:`store_template`), its Default
    experiment's artifacts in ``artifacts/0``; left to MLflow where no template can be made."""
    if db.exists():
        return
    template = store_template()
    if template is None:
        return
    staging = db.with_name(db.name + ".new")
    shutil.copyfile(template, staging)
    with contextlib.closing(sqlite3.connect(staging)) as store, store:
        store.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0", (str(artifacts / "0"),))
    os.replace(staging, db)


def open_study_run(
    tracking_uri: str,
    name: str,
    artifact_dir: Path,
    tags: Mapping[str, Any],
    spec_file: Path,
    params: Mapping[str, Any] | None = None,
) -> StudyRun:
    """Create (or reuse) the experiment ``name`` (opening on its runs table in MLflow's UI) and
    start the study's parent run, with the spec as ``params`` and as an artifact."""
    if tracking_uri.startswith("sqlite:///"):
        create_sqlite_store(Path(tracking_uri.removeprefix("sqlite:///")), artifact_dir.resolve())
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
    if experiment is None or EXPERIMENT_KIND[0] not in experiment.tags:
        client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
    run = client.create_run(experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
    if params:
        log_params_and_tags(client, run.info.run_id, params, {})
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


def find_trial_run(study: StudyRun, trial_id: str) -> str | None:
    """The nested run a trial opened, by its ``trial_id`` tag (None: it has none)."""
    runs = MlflowClient(study.tracking_uri).search_runs(
        [study.experiment_id],
        f"tags.trial_id = '{trial_id}' and tags.`{PARENT_TAG}` = '{study.parent_run_id}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


#: MLflow's client retries a failed HTTP call 7 times with exponential backoff
#: (minutes); the tracker retries itself and must see failures quickly.
FAIL_FAST_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


@dataclass(frozen=True)
class Operation:
    """One tracking call (:data:`OPERATION_KINDS`)."""

    kind: str
    payload: Any

    @property
    def metric_count(self) -> int:
        return len(self.payload) if self.kind == "metrics" else 0

    def to_json(self) -> dict[str, Any]:
        if self.kind == "metrics":
            return {"op": "metrics", "metrics": [[m.key, m.value, m.timestamp, m.step] for m in self.payload]}
        return {"op": self.kind, **self.payload}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Operation:
        kind = record["op"]
        if kind == "metrics":
            return cls(kind, [Metric(k, float(v), int(t), int(s)) for k, v, t, s in record["metrics"]])
        return cls(kind, {k: v for k, v in record.items() if k not in ("op", "run_id")})


#: Every kind of :class:`Operation`: params, metric batches, tags, an artifact file, the
#: run set running again (a resumed trial) and the run's end with its status.
OPERATION_KINDS = ("params", "metrics", "tags", "artifact", "resume", "terminate")


def apply_operation(client: MlflowClient, run_id: str, op: Operation) -> None:
    """Send one operation (any of :data:`OPERATION_KINDS`)."""
    if op.kind == "metrics":
        client.log_batch(run_id, metrics=op.payload)
    elif op.kind == "params":
        log_params_and_tags(client, run_id, op.payload["params"], {})
    elif op.kind == "tags":
        log_params_and_tags(client, run_id, {}, op.payload["tags"])
    elif op.kind == "artifact":
        client.log_artifact(run_id, op.payload["path"], op.payload.get("artifact_path"))
    elif op.kind == "resume":
        client.update_run(run_id, status="RUNNING")
    elif op.kind == "terminate":
        client.set_terminated(run_id, op.payload["status"])
    else:
        raise ValueError(f"unknown tracking operation {op.kind!r}")


def with_retries(
    call: Callable[[], Any],
    deadline: Callable[[], float],
    what: str,
    max_backoff: float = 30.0,
    wake: threading.Event | None = None,
) -> bool:
    """Call ``call`` until it succeeds (True) or time passes ``deadline()`` (False).

    ``deadline`` is re-read after every failure: closing the tracker shortens it."""
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            call()
            return True
        except Exception as error:
            remaining = deadline() - time.monotonic()
            if remaining <= 0:
                log.error("MLflow %s failed %d times, giving up: %s", what, attempt, error)
                return False
            if attempt == 1 or attempt % 10 == 0:
                log.warning("MLflow %s failed (attempt %d), retrying: %s", what, attempt, error)
            pause = min(delay, remaining)
            if wake is not None:
                if wake.wait(pause):
                    wake.clear()  # woken to re-read the deadline; later pauses are full again
            else:
                time.sleep(pause)
            delay = min(delay * 2, max_backoff)


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
        spill_file: Path | None = None,
        max_buffered: int = 200_000,
        close_timeout: float = 120.0,
        connect_timeout: float = 120.0,
        max_backoff: float = 30.0,
    ) -> None:
        for key, value in FAIL_FAST_HTTP_ENV.items():
            os.environ.setdefault(key, value)
        self.client = MlflowClient(study.tracking_uri)
        self.flush_every = flush_every
        self.spill_file = spill_file
        self.max_buffered = max_buffered
        self.close_timeout = close_timeout
        self.max_backoff = max_backoff
        self._deadline = float("inf")
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._buffered = 0
        self._spilled_metrics = 0
        self._queue: queue.Queue[Operation | None] = queue.Queue()
        if run_id is None:
            created: list[str] = []

            def create() -> None:
                run = self.client.create_run(
                    study.experiment_id,
                    run_name=run_name,
                    tags={PARENT_TAG: study.parent_run_id, **{k: str(v) for k, v in tags.items()}},
                )
                created.append(run.info.run_id)

            connect_deadline = time.monotonic() + connect_timeout
            if not with_retries(create, lambda: connect_deadline, "create_run", max_backoff):
                raise ConnectionError(f"MLflow at {study.tracking_uri} unreachable for {connect_timeout:.0f} s")
            run_id = created[0]
            for chunk in _chunks([*params.items()], MAX_PARAMS_TAGS_PER_BATCH):
                self._queue.put(Operation("params", {"params": {k: str(v) for k, v in chunk}}))
        else:
            # A retried trial re-attaches to the run it started; params are already there.
            self._queue.put(Operation("resume", {}))
        self.run_id = run_id
        self._pending: list[Metric] = []
        self._last_flush_step = 0
        self._sender = threading.Thread(target=self._send_loop, name="mlflow-sender", daemon=True)
        self._sender.start()

    # -- the training thread's side ------------------------------------------------
    def log_terms(self, step: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step) for k, v in values.items())
        if step - self._last_flush_step >= self.flush_every:
            self.flush(step)

    def flush(self, step: int | None = None) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            for chunk in _chunks(batch, MAX_METRICS_PER_BATCH):
                self._enqueue(Operation("metrics", chunk))
        if step is not None:
            self._last_flush_step = step

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._enqueue(Operation("tags", {"tags": {k: str(v) for k, v in tags.items()}}))

    def log_artifacts(self, paths: Iterable[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self._enqueue(Operation("artifact", {"path": str(path), "artifact_path": artifact_path}))

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for queued metrics to reach the server (before a
        report after which Tune may stop the trial); False if some are still waiting."""
        deadline = time.monotonic() + timeout
        while self._buffered and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._buffered

    @property
    def backlog(self) -> int:
        """Metrics waiting for the server."""
        return self._buffered

    def _enqueue(self, op: Operation) -> None:
        with self._lock:
            if op.metric_count and self._buffered + op.metric_count > self.max_buffered and self.spill_file:
                # The server has been away long enough to fill the buffer: to disk, not memory.
                self._spill([op])
                return
            self._buffered += op.metric_count
        self._queue.put(op)

    # -- the sender thread -----------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                return
            delivered = with_retries(
                lambda op=op: apply_operation(self.client, self.run_id, op),
                lambda: self._deadline,
                op.kind,
                self.max_backoff,
                self._wake,
            )
            with self._lock:
                self._buffered -= op.metric_count
                if not delivered:
                    rest = [op]
                    while (later := self._queue.get()) is not None:
                        rest.append(later)
                        self._buffered -= later.metric_count
                    self._spill(rest)
                    return

    def _spill(self, ops: list[Operation]) -> None:
        """Append ``ops`` to the spill file (caller holds the lock)."""
        self._spilled_metrics += sum(op.metric_count for op in ops)
        if self.spill_file is None:
            log.error("MLflow unreachable and no spill file: %d operations dropped", len(ops))
            return
        with self.spill_file.open("a") as out:
            for op in ops:
                out.write(json.dumps({"run_id": self.run_id, **op.to_json()}) + "\n")

    def close(self, status: str, timeout: float | None = None) -> int:
        """Deliver what is queued and end the run with ``status``, waiting at most
        ``timeout`` (default ``close_timeout``) seconds for the server; returns the
        number of metrics written to the spill file instead of MLflow."""
        self.flush()
        self._queue.put(Operation("terminate", {"status": status}))
        self._queue.put(None)
        self._deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
        self._wake.set()  # cut a long backoff short: the deadline changed
        self._sender.join()
        if self._spilled_metrics:
            log.error(
                "%d metrics could not be delivered to MLflow; kept in %s (deliver with `vae-study sync`)",
                self._spilled_metrics,
                self.spill_file,
            )
        return self._spilled_metrics


def replay_spill(tracking_uri: str, spill_file: Path, max_seconds: float = 30.0) -> tuple[int, int]:
    """Deliver a trial's spilled operations in order; returns ``(delivered, left)``.

    What cannot be delivered within ``max_seconds`` stays in the file (rewritten
    atomically); a fully delivered file is removed."""
    records = [json.loads(line) for line in spill_file.read_text().splitlines() if line.strip()]
    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + max_seconds
    done = 0
    for record in records:
        op = Operation.from_json(record)

        def call(run_id: str = record["run_id"], op: Operation = op) -> None:
            apply_operation(client, run_id, op)

        if not with_retries(call, lambda: deadline, f"replay {record['op']}"):
            break
        done += 1
    left = records[done:]
    if left:
        tmp = spill_file.with_name(spill_file.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in left))
        os.replace(tmp, spill_file)
    else:
        spill_file.unlink()
    return done, len(left)


def spilled_metric_count(spill_file: Path) -> int:
    if not spill_file.exists():
        return 0
    return sum(len(json.loads(line).get("metrics", [])) for line in spill_file.read_text().splitlines() if line.strip())
