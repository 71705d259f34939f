"""Studies as Ray Jobs on an existing cluster: ``vae-study submit``, ``jobs``, ``logs``, ``stop``.

A submitted study's driver is an ordinary ``vae-study run`` (or ``resume``), started by
Ray's job supervisor on the cluster's head node (Ray's job submission API, through the
token-authenticated dashboard, ``http://HEAD:8265``), so it outlives the laptop that
submitted it.  The job carries the project (``study``, ``trainers``, ``analysis`` as
submitted) and the spec in its ``working_dir``; the cluster's Python provides the
dependencies (``infra/Dockerfile``).  The study folder is a path on the cluster's
shared filesystem, given absolute.

What the job's record holds, under ``metadata`` (:data:`METADATA_KEY` marks the jobs of
this tool): the study's name and folder, its number of trials, the submitting user and
host.  How far a study has got is read from its log: the run log's header
``[k/N done, …]`` (``study.progress``).

``stop`` asks Ray to stop the job: the supervisor sends SIGTERM, the driver stops the
study gracefully (``study.interrupt``: running trials checkpoint) and the job's own
``RAY_JOB_STOP_WAIT_TIME_S`` gives it :data:`STOP_WAIT_SECONDS` before Ray kills it.
``submit --resume STUDY_DIR`` then goes on with it as a new job.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import posixpath
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import PreflightError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from study.spec import StudySpec

#: Marks a job's metadata as a vae-study study (the value: the metadata's version).
METADATA_KEY = "vae_study"
#: The packages a job carries to the cluster (the project as submitted).
PACKAGES = ("study", "trainers", "analysis")
#: The spec's name in a job's working_dir (the job runs ``vae-study run JOB_SPEC``).
JOB_SPEC = "spec.yaml"
#: Seconds Ray waits after SIGTERM before it kills a stopped study's driver: the trials'
#: grace period (``study.interrupt.GRACE_SECONDS``, 120 s) and a minute for the driver to
#: close (a literal: ``jobs``, ``logs`` and ``stop`` do not import Ray Tune).
STOP_WAIT_SECONDS = 180
#: Seconds a submission waits for the head's job agent (a cluster that has just started).
AGENT_WAIT_SECONDS = 60.0
#: What a driver's exit code means (``study.cli.ExitCode``).
EXIT_MEANING = {0: "done", 1: "trials errored", 2: "bad input", 130: "stopped"}


@dataclass(frozen=True)
class StudyJob:
    """One study submitted as a Ray Job, as ``vae-study jobs`` lists it."""

    job_id: str
    study: str
    study_dir: str
    state: str  # Ray's JobStatus: PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    exit_code: int | None
    done: int | None  # trials ended, from the run log (None before the first ended trial)
    total: int | None
    started: datetime | None
    user: str
    message: str

    @property
    def ended(self) -> bool:
        return self.state in ("STOPPED", "SUCCEEDED", "FAILED")

    @property
    def outcome(self) -> str:
        """The state in words: ``FAILED (exit 2: bad input)``."""
        if self.state != "FAILED" or self.exit_code is None:
            return self.state
        return f"{self.state} (exit {self.exit_code}: {EXIT_MEANING.get(self.exit_code, 'crashed')})"


def dashboard_address(address: str | None) -> str:
    """``--address``, else ``RAY_API_SERVER_ADDRESS`` or an ``http(s)://`` ``RAY_ADDRESS`` (Ray's own order)."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise PreflightError(
            "--address: give the cluster's dashboard, e.g. --address http://127.0.0.1:8265 through an SSH tunnel "
            "to the head (or set RAY_API_SERVER_ADDRESS)"
        )
    if not address.startswith(("http://", "https://")):
        raise PreflightError(
            f"--address: jobs go through the cluster's dashboard, an http(s):// address such as "
            f"http://127.0.0.1:8265, not {address!r} (that is for `vae-study run --address`)"
        )
    return address.rstrip("/")


def connect(address: str | None) -> JobSubmissionClient:
    """A job client for the cluster's dashboard, with the cluster's token; PreflightError (exit 2)
    when the dashboard does not answer, has no job API or refuses the token."""
    from ray.exceptions import RayError
    from ray.job_submission import JobSubmissionClient

    address = dashboard_address(address)
    for name in ("ray.dashboard", "ray._private.runtime_env"):  # "Uploading package …" on every submission
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        client = JobSubmissionClient(address)
        client.list_jobs()  # the version probe needs no token; this does
    except (ConnectionError, RuntimeError, ValueError, RayError) as error:
        raise PreflightError(f"--address: cannot use Ray's job API at {address}: {explain(error)}") from None
    return client


def explain(error: BaseException) -> str:
    """What a job API error says, in one line (the token's absence spelled out)."""
    text = str(error).strip()
    if "Authentication" in text or "401" in text or "403" in text or "token" in text.lower():
        return (
            "the dashboard wants the cluster's token: export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> "
            "(or the token in ~/.ray/auth_token)"
        )
    # The job server answers errors with its traceback: its last line says what went wrong.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def network_errors() -> tuple[type[BaseException], ...]:
    """What a job command meets when the dashboard goes away part-way (a dropped tunnel, a head
    restarting): requests' errors are OSErrors, the SDK's are RuntimeErrors, the log tail's aiohttp's."""
    import aiohttp
    from ray.exceptions import RayError
    from ray.util.state.exception import RayStateApiException

    return (OSError, RuntimeError, RayError, RayStateApiException, aiohttp.ClientError)


def same_folder(a: str, b: str) -> bool:
    """Whether two paths on the cluster name one folder (``/x/y/`` and ``/x//y``)."""
    return posixpath.normpath(a) == posixpath.normpath(b)


def study_total(spec: StudySpec) -> int:
    """How many trials the study runs: the grid's points, else ``search.num_trials``."""
    if spec.search.mode == "grid":
        from study.space import grid_points

        return len(grid_points(spec))
    return spec.search.num_trials


def check_submission(client: JobSubmissionClient, spec: StudySpec | None, study_dir: str) -> str | None:
    """What can be checked from here before a job is submitted (PreflightError, exit 2): no live
    job of this tool uses ``study_dir``; the cluster's nodes (shared storage for several, room for
    a trial: ``study.preflight.check_cluster``).  Returns a note to print, if any."""
    for job in study_jobs(client, with_progress=False):
        if same_folder(job.study_dir, study_dir) and not job.ended:
            raise PreflightError(
                f"--study-dir: {study_dir} is in use by job {job.job_id} ({job.state}); "
                f"vae-study stop {job.job_id} first, or choose another folder"
            )
    if spec is None:
        return None
    from study.preflight import check_cluster

    return check_cluster(spec, _node_resources(client), autoscaler=None)


def _node_resources(client: JobSubmissionClient) -> list[dict[str, float]]:
    from ray.util.state import list_nodes

    nodes = list_nodes(
        address=client.get_address(), filters=[("state", "=", "ALIVE")], limit=10_000, raise_on_missing_output=False
    )
    return [dict(n.resources_total or {}) for n in nodes]


def submit(
    client: JobSubmissionClient,
    arguments: list[str],
    *,
    name: str,
    study_dir: str,
    total: int | None,
    spec_file: Path | None = None,
    forward_env: Iterable[str] = (),
) -> str:
    """Submit ``python -m study.cli ARGUMENTS`` as a Ray Job; returns its id.

    Args:
        client: the cluster's job client (:func:`connect`).
        arguments: ``vae-study``'s arguments on the cluster (``run spec.yaml --study-dir …``).
        name: the study's name (the job id starts with it).
        study_dir: the study folder on the cluster (recorded in the job's metadata).
        total: the study's number of trials, when known here.
        spec_file: the spec, copied into the job's working_dir as ``spec.yaml``.
        forward_env: names of variables of this environment to set in the job's (credentials
            the cluster lacks; they show in the job's record to whoever holds the token).
    """
    env = {"RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_SECONDS), "PYTHONUNBUFFERED": "1"}
    for var in forward_env:
        if var not in os.environ:
            raise PreflightError(f"--env: {var} is not set here")
        env[var] = os.environ[var]
    metadata = {
        METADATA_KEY: "1",
        "study": name,
        "study_dir": study_dir,
        "trials": "" if total is None else str(total),
        "user": _user(),
        "host": socket.gethostname(),
    }
    entrypoint = shlex.join(["python", "-m", "study.cli", *arguments])
    with tempfile.TemporaryDirectory(prefix="vae-study-job-") as staging:
        working_dir = _stage(Path(staging), spec_file)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        suffix, deadline = 1, time.monotonic() + AGENT_WAIT_SECONDS
        while True:
            job_id = f"{name}-{stamp}" + (f"-{suffix}" if suffix > 1 else "")
            try:
                return client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=job_id,
                    runtime_env={"working_dir": str(working_dir), "env_vars": env},
                    metadata=metadata,
                )
            except RuntimeError as error:
                if "already" in str(error) and suffix < 100:
                    suffix += 1  # a study of the same name submitted in the same second
                elif "No available agent" in str(error) and time.monotonic() < deadline:
                    time.sleep(1.0)  # a head that has just started: its job agent registers within seconds
                else:
                    raise PreflightError(f"--address: the cluster refused the job: {explain(error)}") from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container without a passwd entry for its uid
        return str(os.getuid())


def _stage(root: Path, spec_file: Path | None) -> Path:
    """The job's working_dir: the project's packages as installed here, and the spec."""
    import importlib

    for package in PACKAGES:
        source = Path(importlib.import_module(package).__file__).parent
        shutil.copytree(source, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if spec_file is not None:
        shutil.copyfile(spec_file, root / JOB_SPEC)
    return root


def study_jobs(client: JobSubmissionClient, with_progress: bool = True) -> list[StudyJob]:
    """The cluster's studies (jobs submitted by this tool), oldest first.

    Args:
        client: the cluster's job client.
        with_progress: read each study's log for its trials done (one request per job).
    """
    from study.progress import last_progress  # with Ray Tune: only where logs are read

    jobs = []
    for details in client.list_jobs():
        meta = details.metadata or {}
        if METADATA_KEY not in meta:
            continue
        done = total = None
        if meta.get("trials"):
            total = int(meta["trials"])
        if with_progress and details.submission_id:
            progress = last_progress(client.get_job_logs(details.submission_id))
            if progress is not None:
                done, total = progress
        jobs.append(
            StudyJob(
                job_id=details.submission_id or details.job_id or "?",
                study=meta.get("study", "?"),
                study_dir=meta.get("study_dir", "?"),
                state=str(details.status.value if hasattr(details.status, "value") else details.status),
                exit_code=getattr(details, "driver_exit_code", None),
                done=done,
                total=total,
                started=datetime.fromtimestamp(details.start_time / 1000) if details.start_time else None,
                user=meta.get("user", "?"),
                message=(details.message or "").strip(),
            )
        )
    return sorted(jobs, key=lambda job: job.started or datetime.min)


def find_job(client: JobSubmissionClient, reference: str) -> StudyJob:
    """The job ``reference`` names: its id, else the latest job of the study of that name."""
    jobs = study_jobs(client, with_progress=False)
    for job in jobs:
        if job.job_id == reference:
            return job
    named = [job for job in jobs if job.study == reference]
    if named:
        return named[-1]
    raise PreflightError(f"JOB: no study job or study named {reference!r} on this cluster (vae-study jobs lists them)")


def jobs_table(jobs: list[StudyJob]) -> str:
    """``vae-study jobs``: one line per study."""
    if not jobs:
        return "no studies on this cluster (vae-study submit SPEC --address ... starts one)"
    rows = [("job", "study", "state", "trials", "started", "user", "study folder")]
    for job in jobs:
        trials = f"{job.done if job.done is not None else 0}/{job.total}" if job.total is not None else "?"
        started = job.started.strftime("%Y-%m-%d %H:%M") if job.started else "-"
        rows.append((job.job_id, job.study, job.outcome, trials, started, job.user, job.study_dir))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in rows)  # fmt: skip


def follow_logs(client: JobSubmissionClient, job_id: str) -> None:
    """Print the job's log as it grows, until the job ends."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    asyncio.run(tail())


def wait_until_ended(client: JobSubmissionClient, job_id: str, timeout: float) -> Any:
    """The job's status once it has ended (or when ``timeout`` seconds have passed)."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal() or time.monotonic() > deadline:
            return status
        time.sleep(1.0)
