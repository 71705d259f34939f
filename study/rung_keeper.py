"""The rung keeper of Pareto stopping: one Ray actor per study that holds the rungs and decides.

Trials run in separate worker processes and reach a rung whenever they do, so the
rungs (``study.pareto_stopping.Rungs``) live in one place that every trial asks: a named
Ray actor started by the driver (:func:`start_keeper`), pinned to the driver's node
(where the study folder is), and asked one decision at a time (an actor runs its calls
in order, so two trials arriving together are ranked in one order).  Every decision is
written to the study folder (``rungs.json``, :meth:`study.folder.StudyFolder.write_rungs`)
before it is returned: a trial acts on a decision only once it is on disk, and a resumed
study's keeper starts from that file, so a resume ranks new arrivals against every trial
that reached a rung before the kill.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from study.folder import StudyFolder
from study.pareto_stopping import Rungs, rung_steps
from study.spec import StudySpec


def keeper_name(study_dir: str | Path) -> str:
    """The actor's name: one per study folder (two studies on one cluster keep apart)."""
    digest = hashlib.sha1(str(Path(study_dir).resolve()).encode()).hexdigest()[:16]
    return f"vae-study-rungs-{digest}"


def study_rungs(spec: StudySpec) -> Rungs:
    """A new study's empty rungs: its objectives, its rung steps and η."""
    stopping = spec.search.early_stopping
    assert stopping is not None and stopping.pareto
    steps = rung_steps(
        stopping.grace_period, stopping.reduction_factor, spec.training.steps, spec.training.checkpoint_every
    )
    return Rungs([(o.name, o.mode) for o in spec.objectives], steps, stopping.reduction_factor)


class RungKeeper:
    """The actor's class: the study's :class:`~study.pareto_stopping.Rungs`, kept in ``rungs.json``."""

    def __init__(self, study_dir: str, fresh: dict[str, Any]) -> None:
        self.folder = StudyFolder(study_dir)
        saved = self.folder.read_rungs()
        self.rungs = Rungs.from_json(saved if saved is not None else fresh)
        self.folder.write_rungs(self.rungs.to_json())

    def decide(self, trial_id: str, step: int, values: dict[str, float]) -> dict[str, Any]:
        """The decision for ``trial_id`` at the rung at ``step``, once it is on disk: the decision,
        its reason and the trial's estimates at every rung it reached (by step)."""
        decision = self.rungs.decide(trial_id, step, values)
        self.folder.write_rungs(self.rungs.to_json())
        history = {str(d.step): d.values for d in self.rungs.of_trial(trial_id)}
        return {**decision.to_json(), "reason": decision.reason, "history": history}

    def state(self) -> dict[str, Any]:
        return self.rungs.to_json()


def start_keeper(spec: StudySpec, folder: StudyFolder) -> Any | None:
    """Start the study's keeper (None unless ``early_stopping: {kind: pareto}``); Ray must be up.

    A keeper left under the same name (an earlier driver of this folder on a long-lived
    cluster) is replaced: the file is the state, not the actor."""
    stopping = spec.search.early_stopping
    if stopping is None or not stopping.pareto:
        return None
    name = keeper_name(folder.root)
    try:
        ray.kill(ray.get_actor(name))
    except ValueError:
        pass  # none left: the usual case
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = (
        ray.remote(RungKeeper)
        # A keeper that dies (its process killed: out of memory, ...) comes back from rungs.json, and
        # a call it died in is asked again: every decision is on disk before it is answered, and a
        # trial asking again at a rung gets the decision it had.  Without this every later trial
        # of the study would fail to find it.
        .options(
            name=name,
            num_cpus=0,
            max_concurrency=1,
            scheduling_strategy=here,
            max_restarts=-1,
            max_task_retries=-1,
        )
        .remote(str(folder.root), study_rungs(spec).to_json())
    )
    ray.get(actor.state.remote())  # started, and rungs.json written, before any trial asks
    return actor


def find_keeper(study_dir: str | Path) -> Any:
    """The running study's keeper, from a trial's worker."""
    return ray.get_actor(keeper_name(study_dir))
