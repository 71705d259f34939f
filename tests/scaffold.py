"""Scaffolding the tests share (through the fixtures in conftest.py): the tiny spec factory,
the CLI runner, the MLflow recorder, the whole-study kill and the training loops' recorder."""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from study.folder import StudyFolder, checkpoint_dir, checkpoint_step
from trainers.reporting import NullReporter, TrainingDiverged, TrainResult

#: A study small enough for the suite: 20 steps of a 4-latent β-VAE, three trials.
TINY: dict[str, Any] = {
    "name": "tiny",
    "variant": "beta_vae",
    "model": {"latent_dim": 4},
    "training": {"steps": 20, "batch_size": 16, "lr": 1e-3, "log_every": 5, "checkpoint_every": 10},
    "evaluation": {"recon_points": 64, "udr_points": 100, "metric_options": {"mig": {"num_points": 500}}},
    "seeds": [0, 1],
    "weights": {
        "beta": {
            "schedule": ["constant", "linear"],
            "value": {"low": 0.5, "high": 8, "log": True},
            "end": {"low": 0.5, "high": 8, "log": True},
            "end_step": {"low": 5, "high": 15},
        }
    },
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "search": {"num_trials": 3, "max_concurrent": 2, "storage": "sqlite"},
    "tracking": {"flush_every": 10},
}

#: Sections merged key by key by :func:`tiny_spec`; any other field is replaced whole.
MERGED = ("model", "training", "evaluation", "search", "tracking", "resources", "storage")


def tiny_spec(**overrides: Any) -> dict[str, Any]:
    """:data:`TINY` with ``overrides``: sections in :data:`MERGED` are updated key by key,
    other fields replaced; ``None`` removes a field."""
    spec = copy.deepcopy(TINY)
    for key, value in overrides.items():
        if value is None:
            spec.pop(key, None)
        elif key in MERGED and isinstance(value, dict):
            spec[key] = {**spec.get(key, {}), **value}
        else:
            spec[key] = value
    return spec


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cli:
    """Runs ``vae-study`` as a user would: a subprocess of this interpreter, in ``cwd``."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.cwd, self.env = cwd, env

    def command(self, *args: Any) -> list[str]:
        return [sys.executable, "-m", "study.cli", *map(str, args)]

    def run(self, *args: Any, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, cwd=self.cwd, timeout=timeout, env=env or self.env
        )

    def call(self, *args: Any) -> subprocess.CompletedProcess:
        """The same command in this process (``study.cli.main``), for commands that start no study:
        no interpreter start-up, the same exit code and output."""
        from study.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return subprocess.CompletedProcess(self.command(*args), code, out.getvalue(), err.getvalue())

    def popen(self, *args: Any, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Started in a session of its own, so that :func:`kill_study` can end it with its local Ray."""
        return subprocess.Popen(
            self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.cwd,
            env=env or self.env, start_new_session=True,
        )  # fmt: skip

    def write_spec(self, spec: dict[str, Any], name: str = "spec.yaml") -> Path:
        path = self.cwd / name
        path.write_text(yaml.safe_dump(spec))
        return path

    def study(
        self, spec: dict[str, Any], *extra: Any, study_dir: Path | None = None, expect: int = 0
    ) -> tuple[subprocess.CompletedProcess, Path]:
        """``vae-study run`` of ``spec`` into ``study_dir`` (default ``cwd/study``); asserts the exit code."""
        study_dir = study_dir or self.cwd / "study"
        proc = self.run("run", self.write_spec(spec), "--study-dir", study_dir, *extra)
        assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-5000:]
        return proc, study_dir


class StudyRuns:
    """A study's MLflow runs, as recorded: the parent run and the nested run of each trial."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        assert found is not None, f"no experiment {experiment!r} at {tracking_uri}"
        runs = self.client.search_runs([found.experiment_id])
        self.parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        self.children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        self.by_trial = {r.data.tags["trial_id"]: r for r in self.children}

    @classmethod
    def of(cls, study_dir: Path, experiment: str = "tiny") -> StudyRuns:
        """The runs of a study tracked in its own folder (``mlflow.db``)."""
        return cls(f"sqlite:///{StudyFolder(study_dir).mlflow_db}", experiment)

    @property
    def parent(self) -> Any:
        assert len(self.parents) == 1, [r.info.run_name for r in self.parents]
        return self.parents[0]

    def history(self, run: Any, key: str) -> list[int]:
        return [m.step for m in self.client.get_metric_history(run.info.run_id, key)]

    def artifacts(self, run: Any) -> set[str]:
        return {a.path for a in self.client.list_artifacts(run.info.run_id)}


def wait_for(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Poll ``condition`` until it holds (True), ``timeout`` passes or ``proc`` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def session_processes(leader: int) -> set[int]:
    """The processes of the session ``leader`` started (``Cli.popen`` starts each study in its own):
    the driver, its local Ray (GCS, raylet, agents) and the trial workers."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == leader:  # the session id
            pids.add(int(stat.parent.name))
    return pids


def listening_addresses(pids: set[int]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local address of every listening TCP socket (IPv4 and IPv6) that ``pids`` hold, from /proc."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            found.append(ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))))
    return found


def is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def checkpoint_steps(study_dir: Path) -> dict[str, int]:
    """The step of every Ray trial's checkpoint: a pack's under ``packs/``, a pack of one's in its trial folder."""
    folder = StudyFolder(study_dir)
    runs = [*folder.packs_dir.glob("*"), *(t.path for t in folder.trials())]
    steps = {run.name: checkpoint_step(checkpoint_dir(run)) for run in runs}
    return {name: step for name, step in steps.items() if step is not None}


def ended_trials(study_dir: Path) -> list[str]:
    return [t.trial_id for t in StudyFolder(study_dir).trials() if t.result_file.exists()]


def kill_study(driver: subprocess.Popen, study_dir: Path) -> None:
    """The driver, its local Ray and the trial workers die at once, as on a lost machine
    (every process of the driver's session: workers may leave its process group)."""
    members = session_processes(driver.pid)
    os.killpg(driver.pid, signal.SIGKILL)
    for pid in members:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    driver.wait()


def interrupted_runs(study_dir: Path, steps: int, packs: bool) -> dict[str, int]:
    """The checkpoint step of each Ray trial that has one and has not ended (packs: by pack id)."""
    folder = StudyFolder(study_dir)
    ended = ended_trials(study_dir)
    plans = [folder.trial(t).read_plan() for t in ended]
    ended_runs = {p.pack_id for p in plans if p is not None} if packs else set(ended)
    return {k: v for k, v in checkpoint_steps(study_dir).items() if k not in ended_runs and v < steps}


def kill_midway(cli: Cli, spec: dict[str, Any], packs: bool) -> tuple[Path, list[str], dict[str, int]]:
    """Run ``spec`` until a trial has ended and another Ray trial has a checkpoint, then kill the
    driver, its local Ray and the workers; return the study folder, the ended trials and the
    interrupted Ray trials with their checkpoint steps."""
    study_dir = cli.cwd / "study"
    driver = cli.popen("run", cli.write_spec(spec), "--study-dir", study_dir)
    steps = spec["training"]["steps"]
    reached = wait_for(lambda: bool(ended_trials(study_dir) and interrupted_runs(study_dir, steps, packs)), 400, driver)
    assert reached and driver.poll() is None, driver.communicate()[0][-3000:] if driver.poll() is not None else ""
    kill_study(driver, study_dir)
    interrupted = interrupted_runs(study_dir, steps, packs)
    assert interrupted, "killed with no Ray trial interrupted after a checkpoint"
    return study_dir, ended_trials(study_dir), interrupted


class ResumeCheck:
    """``vae-study resume`` of a killed study, and the checks every resumed study must pass."""

    def __init__(self, cli: Cli, study_dir: Path, name: str) -> None:
        self.cli, self.study_dir, self.name = cli, study_dir, name

    def resume(self, expected: int) -> Any:
        """Resume; exactly ``expected`` trials end, all completed, each once; returns the parquet."""
        from analysis import load_results

        # The killed driver's lock stays: resume names it and refuses, until told to take over.
        refused = self.cli.call("resume", self.study_dir)
        assert refused.returncode == 2 and "which is no longer running" in refused.stderr, refused.stderr
        assert f"vae-study resume {self.study_dir} --take-over" in refused.stderr
        proc = self.cli.run("resume", self.study_dir, "--take-over")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert f"{expected} completed" in proc.stdout, proc.stdout[-2000:]
        df = load_results(self.study_dir)
        assert len(df) == expected and df["trial_id"].is_unique and (df["status"] == "completed").all()
        return df

    def one_finished_run_per_trial(self, df: Any) -> StudyRuns:
        runs = StudyRuns.of(self.study_dir, self.name)
        assert runs.parent.info.status == "FINISHED"
        assert sorted(runs.by_trial) == sorted(df["trial_id"]) and len(runs.children) == len(df)  # no duplicates
        assert {c.info.run_id for c in runs.children} == set(df["mlflow_run_id"])
        assert all(c.info.status == "FINISHED" for c in runs.children)
        return runs

    def optuna_matches_the_parquet(self, df: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        study = optuna.load_study(study_name=self.name, storage=f"sqlite:///{StudyFolder(self.study_dir).optuna_db}")
        states = [t.state for t in study.get_trials()]
        assert states.count(TrialState.COMPLETE) == len(df) and TrialState.RUNNING not in states
        told = sorted(tuple(t.values) for t in study.get_trials() if t.state == TrialState.COMPLETE)
        assert told == sorted(zip(df["recon"], df["mig"], strict=True))


#: Headless Chromium in a container: no sandbox, GPU, shared memory or background traffic.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--no-first-run"]  # fmt: skip


def chromium_path() -> str | None:
    """Debian's chromium for Playwright (no browser download; ``VAE_STUDY_CHROMIUM`` overrides),
    or None where it or Playwright is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    return os.environ.get("VAE_STUDY_CHROMIUM") or shutil.which("chromium")


RAY = str(Path(sys.executable).with_name("ray"))


class LoopbackCluster:
    """A real Ray cluster on loopback with token auth: each node is its own ``ray start --block``
    process group with its own temp dir, so killing a group kills that node's raylet and the
    workers it started, as when a machine is lost."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = secrets.token_hex(16)
        # Every node and the driver share the token; trials inherit it from their node.
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        # A job's entrypoint runs `python` from the node's PATH: this interpreter.
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.dashboard_url = ""
        self.nodes: dict[str, subprocess.Popen] = {}
        # Ray's socket paths must stay under 107 bytes: a short folder, not pytest's.
        self.temp = tempfile.mkdtemp(prefix="vs-ray-", dir="/tmp")

    def start_head(self, dashboard: bool = False, cpus: int = 1) -> None:
        """The head node; with ``dashboard``, Ray's dashboard and job API on 127.0.0.1 (``dashboard_url``)."""
        if dashboard:
            self.dashboard_url = f"http://127.0.0.1:{free_port()}"
            port = self.dashboard_url.rsplit(":", 1)[1]
            options = ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={port}"]
        else:
            options = ["--include-dashboard=false"]
        self.start_node("head", "--head", f"--port={self.port}", *options, cpus=cpus)

    def start_node(self, name: str, *args: str, cpus: int = 1) -> None:
        # The node's agents get free ports: Ray's fixed defaults (52365, …) clash with another Ray
        # on this machine (a test on the other xdist worker), and a node without its dashboard
        # agent takes no jobs ("No available agent to submit job").
        agents = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port")
        agent_ports = [f"--{option}={free_port()}" for option in (*agents, "metrics-export-port")]
        log = (self.root / f"{name}.log").open("w")
        self.nodes[name] = subprocess.Popen(
            [RAY, "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--disable-usage-stats",
             f"--temp-dir={self.temp}/{name}", *args, *agent_ports],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        probe = f"import ray; ray.init(address='{self.address}'); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, proc in self.nodes.items() if proc.poll() is not None]
            if dead:
                raise AssertionError(f"ray node {dead[0]} exited: {(self.root / f'{dead[0]}.log').read_text()[-3000:]}")
            out = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        raise AssertionError(f"cluster did not reach {count} nodes: {out.stdout[-500:]} {out.stderr[-2000:]}")

    def kill_node(self, name: str) -> None:
        """SIGKILL the node: its raylet and every process it started (workers may leave the group)."""
        proc = self.nodes.pop(name)
        family = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def stop(self) -> None:
        for name in list(self.nodes):
            self.kill_node(name)
        shutil.rmtree(self.temp, ignore_errors=True)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(_parent(int(entry)), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


class Recorder(NullReporter):
    """Every report of a training loop (``trainers.reporting.Reporter``); asks for a checkpoint
    after each step in ``checkpoint_at`` (as a study being stopped does)."""

    def __init__(self, checkpoint_at: tuple[int, ...] = ()) -> None:
        #: ``(step, [each member's terms, None for a failed member])`` per report.
        self.terms: list[tuple[int, list[dict[str, float] | None]]] = []
        self.states: dict[int, dict[str, Any]] = {}
        self.failed: dict[int, TrainingDiverged] = {}
        self.ended: list[tuple[int, TrainResult]] = []
        self.checkpoint_at = set(checkpoint_at)

    def on_terms(self, step: int, terms: Any) -> None:
        self.terms.append((step, [None if t is None else dict(t) for t in terms]))

    def on_member_failed(self, member: int, error: TrainingDiverged) -> None:
        self.failed[member] = error

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        self.states[step] = state

    def on_member_end(self, member: int, result: TrainResult) -> None:
        self.ended.append((member, result))

    def wants_checkpoint(self, step: int) -> bool:
        return step in self.checkpoint_at

    def member_terms(self, member: int = 0) -> list[tuple[int, dict[str, float] | None]]:
        """``(step, terms)`` of one member, report by report."""
        return [(step, terms[member]) for step, terms in self.terms]
