"""The study folder: every path and file of a study, its trial records and their statuses.

This module is the folder's only owner: other modules ask it for paths and read and
write records through it.  Its layout and file names are declared in
:mod:`analysis.folder` (analysis reads the folder through the same paths), on which
:class:`StudyFolder` and :class:`TrialFolder` build.

Every path the folder records is relative to it (artifact paths to the study folder,
the MLflow store to the folder when it is the default one), so a copied or moved
folder resumes, exports and reports into itself.

A file that cannot be read as what it should be raises :class:`RecordError` naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from analysis.folder import (
    CHECKPOINT_DIR,
    CHECKPOINT_META,
    CHECKPOINT_STATE,
    LOCK_FILE,
    SPEC_JSON,
    StudyFiles,
    TrialFiles,
)


class RecordError(ValueError):
    """A file of the study folder is missing something or is not what it should be; names the file."""


class TrialStatus(StrEnum):
    """How a trial stands; the same word in result.json, the parquet, MLflow's ``status`` tag and the log.

    Its MLflow run status and Optuna state follow from it (:attr:`mlflow_status`,
    ``study.searchers.OPTUNA_STATES``).
    """

    RUNNING = "running"
    #: Trained and evaluated.
    COMPLETED = "completed"
    #: A term became non-finite (diverged); deterministic, so never retried.
    FAILED = "failed"
    #: Crashed (an exception, a lost worker) after its retries.
    ERROR = "error"
    #: Stopped early by a scheduler.
    PRUNED = "pruned"

    @property
    def ended(self) -> bool:
        return self is not TrialStatus.RUNNING

    @property
    def mlflow_status(self) -> str:
        return {
            TrialStatus.RUNNING: "RUNNING",
            TrialStatus.COMPLETED: "FINISHED",
            TrialStatus.FAILED: "FAILED",
            TrialStatus.ERROR: "FAILED",
            TrialStatus.PRUNED: "KILLED",
        }[self]


ENDED_STATUSES = tuple(s for s in TrialStatus if s.ended)


def write_json_atomic(path: Path, data: Mapping[str, Any] | list[Any]) -> None:
    """Write JSON so that a reader sees the old file or the new one, whole."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a :class:`RecordError` naming the file if it is unreadable."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RecordError(f"{path}: not a readable JSON file ({error})") from None


def _from_dict(cls: type, data: Any, path: Path) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{path}: expected a JSON object, found {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise RecordError(f"{path}: lacks {', '.join(missing)}")
    try:
        return cls(**{k: v for k, v in data.items() if k in known})
    except (TypeError, ValueError) as error:
        raise RecordError(f"{path}: {error}") from None


@dataclass
class TrialPlan:
    """What a trial will train (``trial_config.json``), written before it starts.

    ``point`` is the trial's configuration: ``variant``, ``seed`` and
    ``<weight>.<param>`` values; ``optuna`` its Optuna trial (``number``, ``params``,
    ``distributions``) in Optuna studies.  ``pack_id`` is the Ray trial that trains
    it, as member ``member`` of ``pack_size`` (a pack of one: ``pack_id == trial_id``).
    """

    trial_id: str
    point: dict[str, Any]
    pack_id: str
    member: int = 0
    pack_size: int = 1
    optuna: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.point, dict) or "variant" not in self.point or "seed" not in self.point:
            raise ValueError("point: needs variant and seed")

    @property
    def optuna_number(self) -> int | None:
        """The Optuna trial number of an Optuna study's trial (None: a grid's, or no number recorded)."""
        number = (self.optuna or {}).get("number")
        return None if number is None else int(number)


@dataclass
class TrialRecord:
    """A trial's row of the results (``result.json``), written once it has ended.

    ``params`` holds its schedules as ``<weight>.<param>``; ``terms`` the held-out
    terms and ``metrics`` the metrics of a completed trial.
    """

    trial_id: str
    status: TrialStatus
    trial_name: str = ""
    variant: str | None = None
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    terms: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    failure_reason: str | None = None
    failed_step: int | None = None
    failed_term: str | None = None
    mlflow_run_id: str | None = None
    mlflow_parent_run_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    images_per_second: float | None = None
    resumed_from_step: int = 0
    pack_id: str | None = None
    pack_size: int = 1
    undelivered_metrics: int = 0
    #: The Optuna trial number (None in a grid; records written before it existed lack it, and
    #: the export then reads it from the trial's plan).
    optuna_number: int | None = None
    #: Pareto stopping: the rung a pruned trial was stopped at (0 is the first), and its
    #: estimates at every rung it reached, by step (``{"600": {"recon": 80.1, "mig": 0.04}}``).
    #: In result.json only: the parquet has the reason, and the rungs are in rungs.json.
    rung: int | None = None
    estimates: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)
        for name in ("params", "terms", "metrics", "artifacts"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: must be a mapping, got {getattr(self, name)!r}")
        for name in ("terms", "metrics"):
            for key, value in getattr(self, name).items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{name}.{key}: must be a number, got {value!r}")

    @property
    def values(self) -> dict[str, float]:
        """Every held-out term and metric by name (objectives name these)."""
        return {**self.terms, **self.metrics}

    def row(self) -> dict[str, Any]:
        """The flat row of ``results.parquet`` (without the study-level columns such as ``udr``)."""
        # Field by field, not asdict(): its deep copies cost seconds over 10,000 records.
        row = {name: getattr(self, name) for name in _ROW_FIELDS}
        row["status"] = str(self.status)
        row.update(self.params)
        row.update(self.values)
        row["checkpoint"] = self.artifacts.get("checkpoint")
        row["codes"] = self.artifacts.get("codes")
        return row


#: The scalar fields of a record, in order: the first columns of its row.
_ROW_FIELDS = tuple(
    f.name
    for f in fields(TrialRecord)
    if f.name not in ("params", "terms", "metrics", "artifacts", "rung", "estimates")
)


class TrialFolder(TrialFiles):
    """``trials/<trial id>/``: one trial's files, its plan, record and history."""

    def study_path(self, path: str | Path) -> str:
        """``path`` (inside this trial's folder) as the study folder records it: relative to the study folder."""
        return os.path.relpath(Path(path).resolve(), self.path.parent.parent.resolve())

    def create(self) -> TrialFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def read_plan(self) -> TrialPlan | None:
        return _from_dict(TrialPlan, read_json(self.plan_file), self.plan_file) if self.plan_file.exists() else None

    def write_plan(self, plan: TrialPlan) -> None:
        write_json_atomic(self.plan_file, asdict(plan))

    def read_record(self) -> TrialRecord | None:
        """The trial's record (None: it has not ended)."""
        if not self.result_file.exists():
            return None
        record = _from_dict(TrialRecord, read_json(self.result_file), self.result_file)
        if not record.status.ended:
            raise RecordError(f"{self.result_file}: status {record.status} (a record is written when a trial ends)")
        return record

    def write_record(self, record: TrialRecord) -> None:
        write_json_atomic(self.result_file, asdict(record))

    def mlflow_run_id(self) -> str | None:
        """The MLflow run the trial opened (None: it opened none yet)."""
        if not self.meta_file.exists():
            return None
        meta = read_json(self.meta_file)
        if not isinstance(meta, dict) or not meta.get("mlflow_run_id"):
            raise RecordError(f"{self.meta_file}: lacks mlflow_run_id")
        return str(meta["mlflow_run_id"])

    def write_mlflow_run_id(self, run_id: str, trial_name: str) -> None:
        """``trial.json``: the MLflow run the trial opened, and where it runs (host and worker PID)."""
        meta = {"mlflow_run_id": run_id, "trial_name": trial_name, "host": socket.gethostname(), "pid": os.getpid()}
        write_json_atomic(self.meta_file, meta)

    def append_history(self, step: int, terms: Mapping[str, float], split: str) -> None:
        """One JSON line per report: the trial's own record of its term histories."""
        with self.history_file.open("a+b") as out:
            # A kill mid-write leaves a line cut short: end it, so the next line stands on its own.
            if out.tell() and (out.seek(out.tell() - 1), out.read(1))[1] != b"\n":
                out.write(b"\n")
            out.write(json.dumps({"step": step, "split": split, "terms": dict(terms)}).encode() + b"\n")

    def history(self) -> Iterator[dict[str, Any]]:
        """The lines of ``history.jsonl``; a line cut short by a kill mid-write is skipped."""
        if not self.history_file.exists():
            return
        raw = self.history_file.read_text()
        lines = raw.splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                # Cut short by a kill: the last line, or one the next write ended (append_history).
                if number == len(lines) or not line.rstrip().endswith("}"):
                    continue
                raise RecordError(f"{self.history_file}: line {number} is not JSON") from None

    def last_step(self) -> int:
        """The last training step in the history (0: none yet), read from the file's end: the
        run log and ``status`` ask for every running trial, and a long trial's history holds
        tens of thousands of lines."""
        try:
            with self.history_file.open("rb") as history:
                size = history.seek(0, os.SEEK_END)
                block = 1 << 16
                while True:
                    start = max(0, size - block)
                    history.seek(start)
                    lines = history.read(size - start).splitlines()
                    if start:
                        lines = lines[1:]  # begins mid-line
                    for line in reversed(lines):
                        try:
                            entry = json.loads(line)
                        except ValueError:
                            continue  # a line cut short by a kill
                        if isinstance(entry, dict) and entry.get("split") == "train":
                            return int(entry["step"])
                    if not start:
                        return 0
                    block *= 4
        except FileNotFoundError:
            return 0


class StudyFolder(StudyFiles):
    """A study folder: its paths, trials and records (see the module docstring)."""

    def is_used(self) -> bool:
        """Whether the folder holds anything but its lock (a study, or other files)."""
        if not self.root.exists():
            return False
        return not self.root.is_dir() or any(p.name != LOCK_FILE for p in self.root.iterdir())

    def trial(self, trial_id: str) -> TrialFolder:
        return TrialFolder(self.trials_dir / trial_id)

    def trials(self) -> list[TrialFolder]:
        """Every trial folder, in trial-id order."""
        if not self.trials_dir.is_dir():
            return []
        return [TrialFolder(p) for p in sorted(self.trials_dir.iterdir()) if p.is_dir()]

    def run_dir(self, pack_id: str, size: int) -> Path:
        """Where a Ray trial keeps its checkpoint: its trial's folder for a pack of one, else ``packs/<id>``."""
        return self.trials_dir / pack_id if size == 1 else self.packs_dir / pack_id

    def read_rungs(self) -> dict[str, Any] | None:
        """Pareto stopping's rung state (``study.pareto_stopping.Rungs.to_json``); None: none yet."""
        if not self.rungs.exists():
            return None
        data = read_json(self.rungs)
        if not isinstance(data, dict) or "steps" not in data or "objectives" not in data:
            raise RecordError(f"{self.rungs}: not a rung state (lacks steps or objectives)")
        return data

    def write_rungs(self, data: Mapping[str, Any]) -> None:
        write_json_atomic(self.rungs, data)

    def read_spec(self) -> dict[str, Any]:
        if not self.spec_json.is_file():
            raise RecordError(f"{self.root}: not a study folder (no {SPEC_JSON} inside)")
        data = read_json(self.spec_json)
        if not isinstance(data, dict):
            raise RecordError(f"{self.spec_json}: expected a JSON object")
        return data


# -- the folder's owner ---------------------------------------------------------------------


class FolderInUse(RecordError):
    """The study folder is claimed by another run or resume (or by one that died)."""


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell a reused PID apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class LockOwner:
    """Who holds ``study.lock``: host, PID (and its start time), the command, since when."""

    host: str
    pid: int
    command: str = ""
    started_at: float = 0.0
    process_start: str | None = None

    @classmethod
    def me(cls, command: str) -> LockOwner:
        return cls(socket.gethostname(), os.getpid(), command, time.time(), _process_start(os.getpid()))

    def alive(self) -> bool | None:
        """Whether the owner still runs; None when it runs on another host (cannot tell from here)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's live process
        start = _process_start(self.pid)
        return not (start and self.process_start and start != self.process_start)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"`{self.command}` (pid {self.pid} on {self.host}, since {since})"


class StudyLock:
    """``study.lock``: one run or resume owns a study folder at a time.

    The lock is claimed atomically (a complete file hard-linked into place, which fails
    if one exists) before anything else is written, and released when the run ends.
    A lock whose process is gone (a killed driver) stays until a resume takes it over
    (``take_over``); one held by a live process, or on another host unless taken
    over explicitly, is never broken.
    """

    def __init__(self, folder: StudyFolder) -> None:
        self.folder = folder
        self.owner: LockOwner | None = None
        self.created: list[Path] = []

    def read_owner(self) -> LockOwner | None:
        """The current holder (None: the folder is not claimed)."""
        try:
            data = json.loads(self.folder.lock_file.read_text())
            return LockOwner(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            lock = self.folder.lock_file
            raise RecordError(f"{lock}: not a study lock ({error}); remove it if no run uses the folder") from None

    def claim(self, command: str, take_over: bool = False) -> StudyLock:
        """Claim the folder (creating it) or raise :class:`FolderInUse` naming the owner.

        ``take_over``: replace a lock whose owner is gone (or runs on another host)."""
        missing = [p for p in (self.folder.root, *self.folder.root.parents) if not p.exists()]
        self.folder.root.mkdir(parents=True, exist_ok=True)
        #: The folders this claim created, innermost first (removed by :meth:`withdraw`).
        self.created = missing
        me = LockOwner.me(command)
        staging = self.folder.root / f".{LOCK_FILE}.{me.host}.{me.pid}"
        staging.write_text(json.dumps(asdict(me)))
        try:
            for _ in range(2):
                try:
                    os.link(staging, self.folder.lock_file)
                    self.owner = me
                    return self
                except FileExistsError:
                    holder = self.read_owner()
                    if holder is None:
                        continue  # released in between: try again
                    self._refuse_or_take_over(holder, take_over)
            raise FolderInUse(f"{self.folder.root}: the study folder is being claimed by another run")
        finally:
            staging.unlink(missing_ok=True)

    def _refuse_or_take_over(self, holder: LockOwner, take_over: bool) -> None:
        alive = holder.alive()
        where = self.folder.root
        if alive:
            raise FolderInUse(f"{where}: the study folder is in use by {holder.describe()}")
        if not take_over:
            state = "is no longer running" if alive is False else "runs on another host (cannot check from here)"
            raise FolderInUse(
                f"{where}: the study folder was claimed by {holder.describe()}, which {state}; if no run uses it, "
                f"take it over with: vae-study resume {where} --take-over"
            )
        # Move the stale lock aside, then claim; a lock that changed meanwhile is put back.
        aside = self.folder.root / f".{LOCK_FILE}.stale"
        os.replace(self.folder.lock_file, aside)
        if self._owner_in(aside) != holder:
            os.replace(aside, self.folder.lock_file)
            raise FolderInUse(f"{where}: the study folder was claimed by another run meanwhile")
        aside.unlink()
        print(f"Took over {where} from {holder.describe()}.", file=sys.stderr)

    @staticmethod
    def _owner_in(path: Path) -> LockOwner | None:
        try:
            return LockOwner(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        if self.owner is not None and self._owner_in(self.folder.lock_file) == self.owner:
            self.folder.lock_file.unlink(missing_ok=True)
        self.owner = None

    def withdraw(self) -> None:
        """Release, and remove the folders the claim created if nothing else was written in them
        (a run refused after its claim leaves nothing behind)."""
        self.release()
        for path in self.created:
            try:
                path.rmdir()
            except OSError:
                break  # not empty: something else lives there now

    def __enter__(self) -> StudyLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def member_id(pack_id: str, index: int, size: int) -> str:
    """The trial id of member ``index`` of a pack: the pack's own id for a pack of one."""
    return pack_id if size == 1 else f"{pack_id}-m{index}"


# -- checkpoints --------------------------------------------------------------------------


def replace_dir(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` so that a reader sees the old or the new folder, whole."""
    old = target.with_name(target.name + ".old")
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(run_dir: Path) -> Path:
    """The checkpoint of a Ray trial; the ``.old`` one if a kill fell between the two renames."""
    own = run_dir / CHECKPOINT_DIR
    old = own.with_name(CHECKPOINT_DIR + ".old")
    return old if not own.is_dir() and old.is_dir() else own


def checkpoint_step(folder: Path) -> int | None:
    """The step of the checkpoint in ``folder`` (None: none there, or unreadable)."""
    meta = folder / CHECKPOINT_META
    if not (meta.exists() and (folder / CHECKPOINT_STATE).exists()):
        return None
    try:
        return int(read_json(meta)["step"])
    except (RecordError, KeyError, TypeError, ValueError):
        return None
