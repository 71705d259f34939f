import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from scaffold import CHROMIUM_FLAGS, Cli, StudyRuns, chromium_path, free_port, tiny_spec

# Tests run on the CPU with few threads: the suite must fit 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)


SERVER = os.environ.get("VAE_STUDY_POSTGRES", "postgresql://root@127.0.0.1:5432")


@pytest.fixture()
def postgres_uri():
    """A fresh PostgreSQL database URL, dropped afterwards (skip, or fail in CI, without a server)."""
    try:
        import psycopg
    except ImportError:
        if os.environ.get("VAE_STUDY_REQUIRE_POSTGRES") == "1":
            pytest.fail("psycopg is not installed but PostgreSQL tests are required")
        pytest.skip("psycopg is not installed (pip install '.[postgres]')")
    name = f"vae_study_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"{SERVER}/postgres", connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as error:
        if os.environ.get("VAE_STUDY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable at {SERVER}: {error}")
        pytest.skip(f"no PostgreSQL at {SERVER}: {error}")
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        # MLflow's pooled connections would block DROP DATABASE: end them first.
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


class MlflowServer:
    """A real ``mlflow server`` on a loopback port with a SQLite backend; it can be
    stopped and started again on the same port and store (an outage)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        mlflow = Path(sys.executable).with_name("mlflow")
        log = (self.root / "server.log").open("a")
        self.proc = subprocess.Popen(
            [
                str(mlflow), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{self.root / 'backend.db'}",
                "--artifacts-destination", str(self.root / "artifacts"),
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # As infra/mlflow/start-mlflow.sh serves it: without MLflow's GenAI job runner (a runner
            # and seven huey consumer processes at every start), which tracking never uses.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"mlflow server did not start: {(self.root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is None:
            return
        # The server's workers are its children: end the whole process group.
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """The URL of a running ``mlflow server`` shared by a test module."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture()
def restartable_mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-outage"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(config, items):
    """Long tests first, then the other integration tests, then unit tests: with several
    workers the long ones start early and the short ones fill the gaps (the same order in
    every worker, as xdist requires)."""
    items.sort(key=lambda item: (not item.get_closest_marker("long"), not item.get_closest_marker("integration")))


@pytest.fixture()
def cli(tmp_path) -> Cli:
    """``vae-study`` as a user runs it, in the test's folder (see ``scaffold.Cli``)."""
    return Cli(tmp_path)


@pytest.fixture()
def make_spec():
    """The tiny spec factory (``scaffold.tiny_spec``): ``make_spec(training={"steps": 40})``."""
    return tiny_spec


@pytest.fixture()
def mlflow_runs():
    """The MLflow recorder: ``mlflow_runs(study_dir)`` gives a study's parent and nested runs."""
    return StudyRuns.of


@pytest.fixture()
def browser():
    """A headless Chromium (Playwright driving Debian's chromium); skips without one, or fails
    where VAE_STUDY_REQUIRE_BROWSER=1 (CI)."""
    path = chromium_path()
    if path is None:
        message = "needs Debian's chromium (apt-get install chromium) and playwright (pip install '.[dev]')"
        if os.environ.get("VAE_STUDY_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()
