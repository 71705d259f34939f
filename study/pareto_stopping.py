"""Pareto-aware successive halving: which trials go on at a rung of a multi-objective study.

The rule is MOASHA's (Schmucker et al. 2021, "Multi-objective multi-fidelity
hyperparameter optimization with application to fairness"): asynchronous successive
halving (ASHA, Li et al. 2020) whose ranking of a rung is multi-objective.

**Rungs.**  With grace period ``g``, reduction factor ``η`` and checkpoints every ``c``
steps, rung ``k`` (k = 0, 1, …) is at step ``r_k = c · round(g · η^k / c)``, for every
``r_k`` before the last training step (a rung falls on a checkpoint: that is where a
trial reports).

**Decision.**  A trial that reaches rung ``k`` reports an estimate of every objective
there.  Let ``n`` be the number of trials that have reached rung ``k`` so far, this one
included.  It goes on if it ranks among the best ``⌈n / η⌉`` of them, or if ``n < η``
(too few to rank; ASHA promotes them too).  No trial waits for others: the decision is
made when it arrives, against the trials seen so far (asynchronous, like ASHA), and never
revised.

**Ranking.**  Non-dominated sorting (Deb et al. 2002, "A fast and elitist multiobjective
genetic algorithm: NSGA-II"): front 1 is the trials no other dominates, front 2 those
that only front 1 dominates, and so on; ``a`` dominates ``b`` when it is at least as good
in every objective and strictly better in one.  Inside a front, a larger crowding
distance ranks first (Deb et al. 2002, §III-B; MOASHA's NSGA-II tie-break): for each
objective, sort the front's points and add to each point the gap between its two
neighbours divided by the front's range; the two ends of each objective get infinity, so
a front's extremes are kept first.  Equal fronts and distances rank by arrival (the
earlier trial first), so a decision never depends on set ordering.  A missing or
non-finite estimate ranks last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.pareto import dominates_matrix, nondominated_ranks


def rung_steps(grace: int, eta: float, steps: int, every: int) -> list[int]:
    """The rungs' steps: ``every · round(grace · η^k / every)`` for k = 0, 1, … before ``steps``."""
    rungs: list[int] = []
    k = 0
    while True:
        step = every * max(1, round(grace * eta**k / every))
        if step >= steps:
            return rungs
        if not rungs or step > rungs[-1]:
            rungs.append(step)
        k += 1


def _costs(points: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Objectives turned into costs to minimise; a non-finite row becomes +inf everywhere (ranks last)."""
    sign = np.array([1.0 if m == "min" else -1.0 for m in modes])
    costs = np.asarray(points, dtype=np.float64).reshape(-1, len(modes)) * sign
    bad = ~np.isfinite(costs).all(axis=1)
    costs[bad] = np.inf
    return costs


def fronts(points: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Each point's non-dominated front, 1 for the best (Deb et al. 2002's fast non-dominated sort).

    Rows with a non-finite value form the last front together."""
    ranks = nondominated_ranks(np.asarray(points, dtype=np.float64).reshape(-1, len(modes)), modes)
    finite = ~np.isnan(ranks)  # analysis.pareto leaves rows with a non-finite value unranked
    last = int(ranks[finite].max()) + 1 if finite.any() else 1
    return np.where(finite, ranks, last).astype(int)


def crowding_distances(points: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """The crowding distance of each point of one front (Deb et al. 2002, §III-B).

    ``d_i = Σ_m (f_m[next(i)] - f_m[prev(i)]) / (max f_m - min f_m)``, neighbours taken in the
    order of objective ``m``; each objective's extremes get ``inf``.  An objective equal on the
    whole front adds nothing (it has no extremes).  Fronts of one or two points are all extremes."""
    costs = _costs(points, modes)
    n, m = costs.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(costs[:, j], kind="stable")
        values = costs[order, j]
        span = values[-1] - values[0]
        if not np.isfinite(span) or span == 0:
            # Every point alike in this objective: it separates none of them, and its "extremes"
            # (the first and last by arrival) are no extremes (pymoo likewise adds nothing).
            continue
        distance[order[0]] = distance[order[-1]] = np.inf
        distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def rank_order(points: np.ndarray, modes: Sequence[str]) -> list[int]:
    """Indices of ``points`` best first: by front, then larger crowding distance, then index (arrival)."""
    costs = np.asarray(points, dtype=np.float64).reshape(-1, len(modes))
    front = fronts(costs, modes)
    crowding = np.zeros(len(front))
    for f in np.unique(front):
        members = np.flatnonzero(front == f)
        crowding[members] = crowding_distances(costs[members], modes)
    return sorted(range(len(front)), key=lambda i: (front[i], -crowding[i], i))


@dataclass
class Decision:
    """What a rung decided for one trial, and why (``reason`` is the run log's and the record's words)."""

    trial_id: str
    rung: int
    step: int
    go_on: bool
    #: The trial's place among the ``reached`` trials of the rung when it arrived (1: best).
    place: int
    reached: int
    kept: int
    #: How many of the rung's trials dominated it when it arrived.
    dominated_by: int
    values: dict[str, float]

    @property
    def reason(self) -> str:
        """``stopped at rung 2 (step 1200): dominated by 3 of 5 trials`` (and its place), or why it goes on."""
        where = f"rung {self.rung} (step {self.step})"
        if self.go_on:
            return f"goes on at {where}: place {self.place} of {self.reached}, the best {self.kept} go on"
        why = (
            f"dominated by {self.dominated_by} of {self.reached} trials"
            if self.dominated_by
            else f"on the front of {self.reached} trials but crowded"
        )
        return f"stopped at {where}: {why} (place {self.place}, the best {self.kept} go on)"

    def to_json(self) -> dict[str, Any]:
        return {
            "rung": self.rung,
            "step": self.step,
            "go_on": self.go_on,
            "place": self.place,
            "reached": self.reached,
            "kept": self.kept,
            "dominated_by": self.dominated_by,
            "values": self.values,
        }

    @classmethod
    def from_json(cls, trial_id: str, data: Mapping[str, Any]) -> Decision:
        return cls(trial_id=trial_id, **{k: data[k] for k in cls.__dataclass_fields__ if k != "trial_id"})


@dataclass
class Rungs:
    """Every rung's arrivals and decisions, in arrival order: the state a study's stopping keeps.

    ``objectives`` are ``(name, mode)`` pairs; ``eta`` is η.  :meth:`to_json` and
    :meth:`from_json` are its file (``rungs.json``), so a resumed study decides on as before."""

    objectives: list[tuple[str, str]]
    steps: list[int]
    eta: float
    #: Per rung step, the decisions in arrival order.
    decisions: dict[int, list[Decision]] = field(default_factory=dict)

    def rung_of(self, step: int) -> int | None:
        """The rung (0, 1, …) at ``step``; None where there is none."""
        return self.steps.index(step) if step in self.steps else None

    def decide(self, trial_id: str, step: int, values: Mapping[str, float]) -> Decision:
        """The decision for ``trial_id`` arriving at the rung at ``step`` (see the module docstring).

        A trial asking again at a rung (a retried or resumed pack that reached it twice) gets
        the decision it got the first time."""
        rung = self.rung_of(step)
        if rung is None:
            raise ValueError(f"step {step} is not a rung (rungs: {self.steps})")
        arrived = self.decisions.setdefault(step, [])
        for earlier in arrived:
            if earlier.trial_id == trial_id:
                return earlier
        names = [name for name, _ in self.objectives]
        modes = [mode for _, mode in self.objectives]
        mine = {name: float(values.get(name, math.nan)) for name in names}
        points = np.array([[d.values[n] for n in names] for d in arrived] + [[mine[n] for n in names]])
        n = len(points)
        kept = math.ceil(n / self.eta)
        place = rank_order(points, modes).index(n - 1) + 1
        costs = _costs(points, modes)
        dominated_by = int(dominates_matrix(costs)[:, n - 1].sum()) if np.isfinite(costs[-1]).all() else n - 1
        decision = Decision(trial_id, rung, step, n < self.eta or place <= kept, place, n, kept, dominated_by, mine)
        arrived.append(decision)
        return decision

    def of_trial(self, trial_id: str) -> list[Decision]:
        """The trial's decisions, rung by rung."""
        return [d for step in sorted(self.decisions) for d in self.decisions[step] if d.trial_id == trial_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "objectives": [{"name": n, "mode": m} for n, m in self.objectives],
            "steps": self.steps,
            "eta": self.eta,
            # A list per rung, not a mapping: the file's keys are sorted, a list keeps the arrival order.
            "rungs": {
                str(step): [{"trial_id": d.trial_id, **d.to_json()} for d in ds]
                for step, ds in sorted(self.decisions.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rungs:
        rungs = cls([(o["name"], o["mode"]) for o in data["objectives"]], list(data["steps"]), float(data["eta"]))
        for step, arrived in data.get("rungs", {}).items():
            rungs.decisions[int(step)] = [Decision.from_json(d["trial_id"], d) for d in arrived]
        return rungs
