"""Ray for a study: the cluster the driver connects to, or a local Ray closed to the network.

:func:`connect` is the last of the preflight (:mod:`study.preflight`): it starts or
joins Ray (:func:`init_ray`) and checks that the cluster can hold a trial.  Every trial
process gets its environment through Ray's ``runtime_env``: the malloc tunables and
MLflow's fail-fast HTTP settings (:data:`WORKER_ENV`), and the credentials the driver
holds for cloud storage and the tracking server (:data:`FORWARDED_ENV`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import ray
from ray._private import ray_constants

from study.folder import StudyFolder
from study.preflight import PreflightError, check_cluster
from study.spec import StudySpec
from study.tracking import FAIL_FAST_HTTP_ENV

log = logging.getLogger(__name__)

#: Keeps glibc from handing activation memory back to the OS after every step
#: (1.4–2× CPU training speed measured on 2-core hosts); set before workers start.
WORKER_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296",
    **FAIL_FAST_HTTP_ENV,
}
#: Ray's switch for single-machine hosts: nodes use the loopback address (see init_ray).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: What trials need from the driver's environment to reach cloud storage and a
#: password-protected tracking server; it travels in the runtime_env, not the shell.
FORWARDED_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
)  # fmt: skip
#: Ray's own ``ENABLE_RAY_CLUSTER`` as imported: a local Ray turns it off, a cluster address restores it.
_CLUSTER_DEFAULT = ray_constants.ENABLE_RAY_CLUSTER


def ray_address(address: str | None) -> str | None:
    """The cluster to connect to: ``--address``, else ``RAY_ADDRESS`` (None: a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def init_ray(address: str | None, dashboard: bool = False, verbose: bool = False) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray in-process.

    A local Ray is closed to the network: its node address is the loopback, so the GCS,
    raylet, driver and workers listen on 127.0.0.1 only (Ray's own single-machine mode,
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), every connection needs Ray's token (a new
    local Ray's default unless ``RAY_AUTH_MODE`` says otherwise; the token is generated
    into ``~/.ray/auth_token``), and the dashboard
    runs only with ``dashboard`` (on 127.0.0.1:8265, behind the same token).  A cluster
    given by address keeps its own settings.  ``verbose``: Ray's own log lines and the
    trials' output reach the driver's terminal too.
    """
    if ray.is_initialized():
        return
    address = ray_address(address)
    env = {**WORKER_ENV, **{k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
    # A driver started as a Ray Job (vae-study submit) already has the job's runtime_env, which
    # Ray merges with this one and refuses if both set a variable: the job's values stand.
    env = {k: v for k, v in env.items() if k not in _job_env_vars()}
    options: dict[str, Any] = {
        "runtime_env": {"env_vars": env},
        "logging_level": logging.INFO if verbose else logging.ERROR,
        # The trials' own output stays in Ray's logs (linked from the study folder) unless --verbose.
        "log_to_driver": verbose,
    }
    if not verbose:
        for name in ("ray", "ray.tune", "ray.train", "mlflow"):
            logging.getLogger(name).setLevel(logging.ERROR if name.startswith("ray") else logging.WARNING)
    if not address:
        os.environ[LOOPBACK_ENV] = "0"  # inherited by the GCS, raylet and workers this driver starts
        ray_constants.ENABLE_RAY_CLUSTER = False  # the constant was read when ray was imported
        options["include_dashboard"] = dashboard
    else:
        ray_constants.ENABLE_RAY_CLUSTER = _CLUSTER_DEFAULT
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        if not address:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PreflightError(f"--address: cannot connect to the Ray cluster at {address} ({first})") from None


def _job_env_vars() -> dict[str, str]:
    """The environment variables of the Ray Job this driver runs as (empty outside a job)."""
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    config = os.environ.get(RAY_JOB_CONFIG_JSON_ENV_VAR)
    if not config:
        return {}
    return (json.loads(config).get("runtime_env") or {}).get("env_vars") or {}


def link_ray_logs(folder: StudyFolder, address: str | None) -> None:
    """``ray-logs`` in the study folder: a link to the local Ray's logs (the trials' own output,
    Ray's components), which the run log leaves out.  A cluster keeps its logs on its nodes."""
    if ray_address(address) is not None:
        return
    try:
        logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
        folder.ray_logs.unlink(missing_ok=True)
        folder.ray_logs.symlink_to(logs, target_is_directory=True)
    except (AttributeError, OSError) as error:
        log.info("no link to Ray's logs: %s", error)


def connect(spec: StudySpec, address: str | None, dashboard: bool, verbose: bool = False) -> None:
    """The last of the preflight (``study.preflight``): connect to Ray, then check the cluster."""
    init_ray(address, dashboard, verbose)
    note = check_cluster(spec)
    if note:
        print(f"note: {note}", file=sys.stderr)
