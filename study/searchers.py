"""Where a study's trials come from: one Tune searcher over packs of members, fed by a source.

Every Ray trial trains a **pack**: a list of one or more members, each a trial of the
study (its own folder, MLflow run, parquet row and, in Optuna studies, Optuna trial).
A suggestion is ``{"pack_id": id, "members": [member, ...]}`` and a member is
``{"trial_id": id, "point": {...}, "optuna": {...}}`` (``point``: ``variant``, ``seed``
and ``<weight>.<param>`` values; ``optuna``: its Optuna trial's ``number``, ``params``
and ``distributions``).  Ids are short and numbered in the order members are asked for
(``t0005``; a pack of several ``p0002``: ``study.naming``); a resumed study re-runs an
interrupted pack under its own ids and numbers new ones on from the highest.

:class:`PackSearcher` is the study's one Tune searcher.  It suggests queued packs
first (the interrupted packs of a resumed study, as they were), then asks its source
for members, ``size`` at a time and one variant per pack, and tells the source each
member's outcome from the pack's reports (``members/<k>/status`` and values, which
Tune flattens from the ``members`` mapping a pack reports), not from files.  Sources:
:class:`GridSource` (a list of points) and :class:`OptunaSource` (an Optuna study
asked with the spec's define-by-run space, :mod:`study.space`).  Each has
``get_state``/``set_state``.

The Optuna study itself is made here too: :func:`optuna_study` with the spec's sampler
(:func:`make_sampler`) in its storage (:func:`storage_url`, :func:`make_storage`).
"""

from __future__ import annotations

import pickle
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from study import naming
from study.folder import StudyFolder, TrialPlan, TrialStatus, member_id
from study.interrupt import StopSwitch
from study.space import DefineByRun, strip_variant_prefix
from study.spec import StudySpec

#: Keys of a pack's config (the Ray trial's config).
PACK_ID, MEMBERS = "pack_id", "members"

#: The Optuna state of each ended status: only a completed trial has values.
OPTUNA_STATES = {
    TrialStatus.COMPLETED: TrialState.COMPLETE,
    TrialStatus.FAILED: TrialState.FAIL,
    TrialStatus.ERROR: TrialState.FAIL,
    TrialStatus.PRUNED: TrialState.PRUNED,
}


def pack_plans(config: Mapping[str, Any], ray_trial_id: str) -> list[TrialPlan]:
    """The members of the pack a Ray trial was given, as trial plans with their ids."""
    members = config[MEMBERS]
    pack_id = config.get(PACK_ID) or ray_trial_id
    size = len(members)
    return [
        TrialPlan(
            trial_id=member.get("trial_id") or member_id(pack_id, index, size),
            point=dict(member["point"]),
            pack_id=pack_id,
            member=index,
            pack_size=size,
            optuna=member.get("optuna"),
        )
        for index, member in enumerate(members)
    ]


def plan_member(plan: TrialPlan) -> dict[str, Any]:
    """A plan as a member of a queued pack (it keeps its trial id)."""
    member: dict[str, Any] = {"point": plan.point, "trial_id": plan.trial_id}
    if plan.optuna is not None:
        member["optuna"] = plan.optuna
    return member


def member_outcome(status: TrialStatus, values: Mapping[str, float] | None) -> dict[str, Any]:
    """What a pack reports of an ended member (under ``members/<k>``)."""
    return {"status": str(status), **(values or {})}


def rung_attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    """A member stopped at a rung (Pareto stopping) as Optuna user attributes: ``rung_estimates``,
    its estimates by step (``{"600": {"recon": 80.1, "mig": 0.04}}``; reported as ``<step>/<name>``).

    Optuna refuses ``trial.report`` in multi-objective studies, so these stand in for the
    intermediate values of a pruned trial."""
    estimates: dict[str, dict[str, float]] = {}
    for key, value in values.items():
        step, _, name = str(key).partition("/")
        if step.isdigit() and name:
            estimates.setdefault(step, {})[name] = float(value)
    return {"rung_estimates": estimates} if estimates else {}


class Source(Protocol):
    def ask(self) -> dict[str, Any] | None:
        """The next member, or None when the source has no more."""

    def tell(self, member: Mapping[str, Any], status: TrialStatus, values: Mapping[str, float] | None) -> None: ...
    def report(self, member: Mapping[str, Any], step: int, values: Mapping[str, float]) -> None:
        """An intermediate result of a member still training."""

    def get_state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None: ...


class GridSource:
    """The points of a grid study, in order (Locatello et al. 2019: every combination × every seed)."""

    def __init__(self, points: Iterable[Mapping[str, Any]]) -> None:
        self.points = [dict(p) for p in points]
        self.next = 0

    def ask(self) -> dict[str, Any] | None:
        if self.next >= len(self.points):
            return None
        self.next += 1
        return {"point": self.points[self.next - 1]}

    def tell(self, member: Mapping[str, Any], status: TrialStatus, values: Mapping[str, float] | None) -> None:
        pass

    def report(self, member: Mapping[str, Any], step: int, values: Mapping[str, float]) -> None:
        pass

    def get_state(self) -> dict[str, Any]:
        return {"points": self.points, "next": self.next}

    def set_state(self, state: dict[str, Any]) -> None:
        self.points, self.next = state["points"], state["next"]


class OptunaSource:
    """Asks an Optuna study for members with the spec's define-by-run space and tells it their outcomes.

    At most ``budget`` members are asked for.  A member is told once: completed with
    its objective values, failed or crashed as FAIL, stopped early as PRUNED, never
    COMPLETE without its final values.  Each member carries the token of the source
    that asked it; a member from before a resume (another token) is told by its trial
    number where the storage persists, and otherwise added to the (in-memory, hence
    new) study with its params and distributions.
    """

    def __init__(self, spec: StudySpec, study: optuna.Study, budget: int, persistent: bool) -> None:
        self.space = DefineByRun(spec)
        self.objectives = [o.name for o in spec.objectives]
        self.study, self.budget, self.persistent = study, budget, persistent
        self.token = uuid.uuid4().hex
        self.asked = 0
        self.added: set[tuple[str, int]] = set()  # (token, number) of members added to an in-memory study
        self.running: dict[int, optuna.Trial] = {}  # trials asked here and not yet told, by number

    def ask(self) -> dict[str, Any] | None:
        if self.asked >= self.budget:
            return None
        trial = self.study.ask()
        fixed = self.space(trial)
        self.asked += 1
        self.running[trial.number] = trial
        info = {
            "number": trial.number,
            "asked_by": self.token,
            "params": dict(trial.params),
            "distributions": {k: optuna.distributions.distribution_to_json(v) for k, v in trial.distributions.items()},
        }
        return {"point": strip_variant_prefix({**trial.params, **fixed}), "optuna": info}

    def tell(self, member: Mapping[str, Any], status: TrialStatus, values: Mapping[str, float] | None) -> None:
        info = member.get("optuna")
        if not info:
            return
        state = OPTUNA_STATES[status]
        attrs = rung_attrs(values) if state == TrialState.PRUNED and values else {}
        objective_values = None
        if state == TrialState.COMPLETE:
            if values is None or any(name not in values for name in self.objectives):
                state = TrialState.FAIL  # a completed trial without its objectives cannot rank
            else:
                objective_values = [float(values[name]) for name in self.objectives]
        if self.persistent or info.get("asked_by") == self.token:
            self._set_attrs(int(info["number"]), attrs)
            # Telling a trial that already ended (told before a driver died) changes nothing.
            self.study.tell(info["number"], objective_values, state=state, skip_if_finished=True)
            self.running.pop(info["number"], None)
            return
        key = (str(info.get("asked_by")), int(info["number"]))
        if key in self.added:
            return
        self.added.add(key)
        self.study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=objective_values,
                user_attrs=attrs,
                params=info["params"],
                distributions={
                    k: optuna.distributions.json_to_distribution(v) for k, v in info["distributions"].items()
                },
            )
        )

    def _set_attrs(self, number: int, attrs: Mapping[str, Any]) -> None:
        """User attributes of a trial not yet told (a finished trial's are left as they are)."""
        if not attrs:
            return
        storage = self.study._storage  # Optuna sets attributes of a trial by id; a Trial object may be gone
        trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        if storage.get_trial(trial_id).state.is_finished():
            return
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)

    def report(self, member: Mapping[str, Any], step: int, values: Mapping[str, float]) -> None:
        """The objective at a checkpoint, as Optuna's intermediate value (single-objective studies,
        as Optuna allows): a trial stopped early keeps it, and samplers and pruners can use it."""
        info = member.get("optuna") or {}
        trial = self.running.get(info.get("number", -1)) if info.get("asked_by") == self.token else None
        if trial is None or len(self.objectives) != 1 or self.objectives[0] not in values:
            return
        trial.report(float(values[self.objectives[0]]), step)

    def fail_orphans(self, waiting: set[int]) -> None:
        """Tell FAIL to trials a persistent storage shows RUNNING that no member will finish
        (asked, but the driver died before their pack started); ``waiting``: numbers of
        interrupted members, told when their pack ends."""
        if not self.persistent:
            return
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number not in waiting:
                self.study.tell(trial.number, state=TrialState.FAIL)

    def get_state(self) -> dict[str, Any]:
        return {"asked": self.asked, "budget": self.budget, "token": self.token, "added": sorted(self.added)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.asked, self.budget, self.token = state["asked"], state["budget"], state["token"]
        self.added = {tuple(key) for key in state["added"]}  # type: ignore[misc]


def _variant(member: Mapping[str, Any]) -> str:
    return str(member["point"]["variant"])


class PackSearcher(Searcher):
    """The study's Tune searcher; see the module docstring."""

    def __init__(
        self,
        source: Source,
        size: int,
        queued: Iterable[Mapping[str, Any]] = (),
        first_trial: int = 0,
        first_pack: int = 0,
    ) -> None:
        super().__init__(metric=None, mode=None)
        self.source, self.size = source, size
        self.queued = [dict(pack) for pack in queued]
        #: The numbers the next new trial and pack get (``study.naming``); a resume goes on counting.
        self.next_trial, self.next_pack = first_trial, first_pack
        self.waiting: dict[str, list[dict[str, Any]]] = {}  # asked, by variant, for a later pack
        self.live: dict[str, list[dict[str, Any]]] = {}  # Ray trial id -> its members
        self.outcomes: dict[str, dict[int, dict[str, Any]]] = {}  # Ray trial id -> member -> outcome
        #: Set when the study is being stopped (``study.interrupt``): nothing more is suggested,
        #: and members that did not end are told nothing (a resume runs them on).
        self.stopping: threading.Event = StopSwitch()

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.stopping.is_set():
            return Searcher.FINISHED
        if self.queued:
            pack = self.queued.pop(0)
        else:
            members = self._next_members()
            if not members:
                return Searcher.FINISHED
            pack = {PACK_ID: self._number(members), MEMBERS: members}
        self.live[trial_id] = pack[MEMBERS]
        return pack

    def _number(self, members: list[dict[str, Any]]) -> str:
        """Give each new member its trial id; returns the pack's id (a pack of one: its member's)."""
        for member in members:
            member["trial_id"] = naming.trial_id(self.next_trial)
            self.next_trial += 1
        if len(members) == 1:
            return str(members[0]["trial_id"])
        self.next_pack += 1
        return naming.pack_id(self.next_pack - 1)

    def _next_members(self) -> list[dict[str, Any]]:
        variant = next(iter(self.waiting), None)
        members = self.waiting.pop(variant) if variant is not None else []
        while len(members) < self.size:
            member = self.source.ask()
            if member is None:
                break
            variant = variant or _variant(member)
            if _variant(member) == variant:
                members.append(member)
            else:
                self.waiting.setdefault(_variant(member), []).append(member)
        if len(members) > self.size:  # a waiting group grew past a pack
            self.waiting[variant] = members[self.size :]  # type: ignore[index]
            members = members[: self.size]
        return members

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._note(trial_id, result)
        members = self.live.get(trial_id, [])
        if len(members) == 1 and "step" in result and not result.get("final"):
            # A pack of one reports its member's training terms at the top of each checkpoint.
            self.source.report(members[0], int(result["step"]), result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result:
            self._note(trial_id, result)
            members = self.live.get(trial_id, [])
            if len(members) == 1 and "step" in result and not result.get("final"):
                # Stopped by a scheduler at this report (Tune then skips on_trial_result): keep its value.
                self.source.report(members[0], int(result["step"]), result)
        seen = self.outcomes.pop(trial_id, {})
        # A member without a reported end: the pack crashed (error) or was stopped early.
        unreported = member_outcome(TrialStatus.ERROR if error else TrialStatus.PRUNED, None)
        for index, member in enumerate(self.live.pop(trial_id, [])):
            if index not in seen and self.stopping.is_set():
                continue  # interrupted, not ended
            outcome = dict(seen.get(index, unreported))
            status = TrialStatus(outcome.pop("status"))
            self.source.tell(member, status, outcome)

    def _note(self, trial_id: str, result: Mapping[str, Any]) -> None:
        """Collect ``members/<k>/<name>`` values of ended members from a (flattened) report."""
        for key, value in result.items():
            if not key.startswith(MEMBERS + "/"):
                continue
            parts = key.split("/", 2)
            if len(parts) == 3 and parts[1].isdigit():
                self.outcomes.setdefault(trial_id, {}).setdefault(int(parts[1]), {})[parts[2]] = value

    def get_state(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "waiting": self.waiting,
            "live": self.live,
            "outcomes": self.outcomes,
            "size": self.size,
            "next": [self.next_trial, self.next_pack],
            "source": self.source.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.queued, self.waiting, self.live = state["queued"], state["waiting"], state["live"]
        self.outcomes, self.size = state["outcomes"], state["size"]
        self.next_trial, self.next_pack = state.get("next", (0, 0))
        self.source.set_state(state["source"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as out:
            pickle.dump(self.get_state(), out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as source:
            self.set_state(pickle.load(source))


def optuna_study(spec: StudySpec, storage: optuna.storages.BaseStorage | None, seed_offset: int = 0) -> optuna.Study:
    """The spec's Optuna study (created, or loaded from a persistent storage), named after the spec.

    ``seed_offset`` (members already asked, on resume) keeps a restarted sampler from
    suggesting the same sequence again.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial belongs to the run log, not Optuna
    return optuna.create_study(
        study_name=spec.name,
        storage=storage,
        sampler=make_sampler(spec, seed_offset),
        directions=["minimize" if o.mode == "min" else "maximize" for o in spec.objectives],
        load_if_exists=True,
    )


def storage_url(spec: StudySpec, study_dir: Path) -> str | None:
    """The Optuna storage URL of a study (None: in memory)."""
    if spec.search.storage == "sqlite":
        return f"sqlite:///{StudyFolder(study_dir).optuna_db.resolve()}"
    if spec.search.storage == "memory":
        return None
    return spec.search.storage


def make_storage(spec: StudySpec, study_dir: Path) -> optuna.storages.BaseStorage | None:
    url = storage_url(spec, study_dir)
    return None if url is None else optuna.storages.RDBStorage(url)


def make_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; ``seed_offset`` (trials already run, on resume) keeps a
    restarted sampler from suggesting the same sequence again."""
    seed = None if spec.search.seed is None else spec.search.seed + seed_offset
    if spec.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)
