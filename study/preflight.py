"""Checks a study must pass before anything is written: the preflight.

A spec can be valid and still fail at run time: a storage URL that does not
connect, a tracking server that does not answer, GPUs the cluster lacks, a device
the machine lacks, a study folder that cannot be written.  Each of these is
checked here, by connecting where that is the only way to know, and reported as a
:class:`PreflightError` (``field: cause``, exit code 2) before the study folder,
the MLflow experiment or the Optuna study exist.  The data set's files are checked
with the spec (``study.spec.check_spec`` opens them), since ``validate`` can too.

Every connection has a short timeout (:data:`CONNECT_SECONDS`), so a port that
accepts but never answers fails the check in seconds rather than hanging the run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ray
import sqlalchemy
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from study.errors import PreflightError
from study.folder import StudyFolder
from study.spec import StudySpec

#: Seconds a storage or tracking server has to answer.
CONNECT_SECONDS = 10
#: Where Ray's cluster launcher leaves its config on the head node: Ray Tune's own
#: sign that an autoscaler may add nodes (``ray.tune.execution.cluster_info``).
AUTOSCALER_CONFIG = Path("~/ray_bootstrap_config.yaml")


def check_study_dir(folder: StudyFolder, option: str = "--study-dir") -> None:
    """The folder exists as a writable folder, or can be created: its nearest existing
    ancestor is a folder we can write in (probed with a file removed at once)."""
    root = folder.root
    if root.exists() and not root.is_dir():
        raise PreflightError(f"{option}: {root} is a file, not a folder")
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PreflightError(f"{option}: {root} cannot be created: {existing} is a file")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".vae-study-probe-")
    except OSError as error:
        raise PreflightError(f"{option}: cannot write in {existing} ({error.strerror})") from None
    os.close(handle)
    os.unlink(probe)


def check_device(spec: StudySpec, local: bool) -> None:
    """A CUDA device the spec asks for exists: a GPU per trial, and on a local Ray, CUDA here."""
    device = spec.training.device
    if not device.startswith("cuda"):
        return
    if spec.resources.gpus <= 0:
        raise PreflightError(
            f"training.device: {device} needs a GPU per trial, but resources.gpus is 0 (set resources.gpus, "
            "e.g. 1 or 0.25 to share one)"
        )
    if not local:
        return  # the cluster's GPUs are checked with its resources
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"
        raise PreflightError(
            f"training.device: {device}, but this machine has no usable CUDA device (torch {torch.__version__}, "
            f"built with {build}); use device: cpu or auto, or run on a GPU machine or cluster (--address)"
        )
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise PreflightError(f"training.device: {device}, but this machine has {torch.cuda.device_count()} GPU(s)")


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other URLs or an in-memory database)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def _engine(url: str) -> Iterator[sqlalchemy.Engine]:
    connect_args: dict[str, object] = {}
    if url.startswith(("postgresql", "mysql")):
        connect_args["connect_timeout"] = CONNECT_SECONDS
    engine = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def _short(error: BaseException) -> str:
    """The first line of a driver's error, without SQLAlchemy's background link."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _check_database(field: str, url: str) -> list[str]:
    """Connect to ``url`` (a SQLite file must exist or be creatable); the table names, or a problem."""
    sqlite = _sqlite_path(url)
    if sqlite is not None and not sqlite.exists():
        parent = sqlite.parent if sqlite.parent != Path("") else Path(".")
        if not parent.is_dir():
            raise PreflightError(f"{field}: {url}: folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise PreflightError(f"{field}: {url}: cannot create a database in {parent}")
        return []  # a new file: created by the run
    try:
        with _engine(url) as engine, engine.connect() as connection:
            return sqlalchemy.inspect(connection).get_table_names()
    except ModuleNotFoundError as error:
        raise PreflightError(f"{field}: {url}: the database driver is not installed ({error.name})") from None
    except (sqlalchemy.exc.SQLAlchemyError, OSError, ValueError) as error:
        raise PreflightError(f"{field}: cannot connect to {_redacted(url)} ({_short(error)})") from None


def _redacted(url: str) -> str:
    """``url`` without its password."""
    with contextlib.suppress(Exception):
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    return url


def check_storage(spec: StudySpec, folder: StudyFolder) -> None:
    """``search.storage`` connects, and an Optuna schema already there is one this Optuna reads."""
    from study.searchers import storage_url  # Ray Tune loads here, not where `submit` checks a cluster

    url = storage_url(spec, folder.root)
    if url is None or spec.search.storage == "sqlite":
        return  # in memory, or optuna.db inside the study folder (checked with the folder)
    tables = _check_database("search.storage", url)
    if "version_info" in tables:
        import optuna

        try:
            optuna.storages.RDBStorage(url, skip_table_creation=True)
        except (RuntimeError, sqlalchemy.exc.SQLAlchemyError) as error:
            raise PreflightError(
                f"search.storage: {_redacted(url)} holds an Optuna schema this Optuna cannot use ({_short(error)}; "
                "upgrade it with `optuna storage upgrade --storage URL`)"
            ) from None


@contextlib.contextmanager
def _fail_fast_http() -> Iterator[None]:
    """MLflow's HTTP client without its minutes of retries, for one probe."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CONNECT_SECONDS)}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_tracking(spec: StudySpec) -> None:
    """``tracking.uri`` answers: a server within :data:`CONNECT_SECONDS` and with these
    credentials, a database that connects, a file store that can be written."""
    uri = spec.tracking.uri
    if uri is None:
        return  # the study folder's own SQLite store
    if uri.startswith(("http://", "https://")):
        with _fail_fast_http():
            try:
                MlflowClient(uri).search_experiments(max_results=1)
            except Exception as error:  # MlflowException wrapping requests' errors, or those themselves
                raise PreflightError(f"tracking.uri: {uri} {_why_no_answer(error)}") from None
        return
    if "://" in uri and not uri.startswith("file:"):
        if uri.startswith("databricks"):
            return
        _check_database("tracking.uri", uri)
        return
    path = Path(uri.removeprefix("file://").removeprefix("file:"))
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise PreflightError(f"tracking.uri: cannot write the file store {path} (in {existing})")


def check_before_ray(spec: StudySpec, folder: StudyFolder, local: bool, option: str = "--study-dir") -> None:
    """Everything but the cluster: the study folder, the device, the storage, the tracking."""
    check_study_dir(folder, option)
    check_device(spec, local)
    check_storage(spec, folder)
    check_tracking(spec)


def check_cluster(
    spec: StudySpec, nodes: list[dict[str, float]] | None = None, autoscaler: bool | None = None
) -> str | None:
    """The cluster: shared storage for several nodes, and room for one trial
    (:func:`check_resources`, whose note it returns).

    Args:
        spec: the study.
        nodes: the resources of each live node (default: the connected cluster's, ``ray.nodes()``).
        autoscaler: whether an autoscaler may add nodes (default: :func:`autoscaler_present`);
            None from where it cannot be told (a laptop submitting a job): a trial that fits no
            node then gets a note, and the study's driver on the cluster decides.
    """
    if nodes is None:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        autoscaler = autoscaler_present()
    if len(nodes) > 1 and not spec.storage.shared:
        raise PreflightError(
            f"storage.shared: this Ray cluster has {len(nodes)} nodes; trials on every node write to the study "
            "folder, so put --study-dir on a filesystem all nodes mount (and storage.path on it or in the cloud, "
            "e.g. s3://bucket/studies), then set storage.shared: true"
        )
    return check_resources(spec, nodes, autoscaler)


def _why_no_answer(error: BaseException) -> str:
    """What an MLflow client error says about the server, in a few words."""
    text = str(error)
    if "timed out" in text.lower() or "Timeout" in type(error).__name__:
        return f"did not answer within {CONNECT_SECONDS} s"
    if "Connection refused" in text or "NewConnectionError" in text or "Failed to resolve" in text:
        return "refused the connection (nothing listens there)"
    if isinstance(error, MlflowException) and any(code in text for code in ("401", "403", "Unauthorized")):
        return (
            "refused the credentials; set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
            "or MLFLOW_TRACKING_TOKEN"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"did not answer as an MLflow server ({first[:200]})"


def autoscaler_present() -> bool:
    """Whether an autoscaler may add nodes (Ray Tune's own test: the launcher's config on the head)."""
    return AUTOSCALER_CONFIG.expanduser().exists()


def check_resources(spec: StudySpec, nodes: list[dict[str, float]], autoscaler: bool | None) -> str | None:
    """Some node (``nodes``: each live node's resources) can hold one trial (``resources``), or an
    autoscaler may add one; returns a note to print in that case (None: a node fits now)."""
    cpus, gpus = spec.resources.cpus, spec.resources.gpus
    if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        return None
    largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
    if largest.get("GPU", 0) < gpus:
        field, asked = "resources.gpus", f"{gpus:g} GPU(s)"
    else:
        field, asked = "resources.cpus", f"{cpus:g} CPU(s)"
    have = f"{largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs"
    if autoscaler:
        return (
            f"{field}: no node has {asked} for a trial yet (largest: {have}); trials wait until the autoscaler adds one"
        )
    if autoscaler is None:
        return (
            f"{field}: no node has {asked} for a trial now (largest: {have}); the study's driver checks again on "
            "the cluster: its trials wait if an autoscaler can add a node, else it stops with exit 2"
        )
    raise PreflightError(
        f"{field}: each trial asks for {asked}, but no node of the cluster has them (largest of {len(nodes)} "
        f"node(s): {have}) and no autoscaler can add one; lower {field} or use another cluster (--address)"
    )
