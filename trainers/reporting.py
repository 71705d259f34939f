"""What a training loop tells its caller, and how: the one reporter protocol.

Both loops (:func:`trainers.train.train` for one member, :func:`trainers.pack.train_pack`
for a pack) speak to a :class:`Reporter` about members: each member's terms every
``log_every`` steps, its failure (the step and term that went non-finite), its end
(:class:`TrainResult`), and checkpoints of the whole run, which the same loop resumes
from.  A plain run is member 0 of one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch


class TrainingDiverged(RuntimeError):
    """A term became NaN or infinite."""

    def __init__(self, step: int, term: str) -> None:
        super().__init__(f"term {term!r} became non-finite at step {step}")
        self.step, self.term = step, term


class MemberStopped(RuntimeError):
    """A member stopped early at a rung: its estimates ranked too low (the reporter decided)."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped early at step {step}")
        self.step = step


@dataclass(frozen=True)
class EstimateRequest:
    """What a reporter wants estimated at a rung (:func:`trainers.evaluation.estimate`): the
    ``names`` of held-out terms and metric values, held-out terms on ``recon_points`` images,
    metrics on ``metric_points`` points (their ``num_points`` option)."""

    names: tuple[str, ...]
    recon_points: int
    metric_points: int


@dataclass
class TrainResult:
    """A member's end of training: its held-out terms and metrics, its files, its timings."""

    steps: int
    #: Held-out terms: each objective term averaged over ``eval.recon_points`` images.
    terms: dict[str, float]
    metrics: dict[str, float]
    artifacts: dict[str, Path] = field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    images_per_second: float = 0.0


class Reporter(Protocol):
    """What a training loop reports: each member's terms, failure and end, and the checkpoints."""

    def on_terms(self, step: int, terms: Sequence[Mapping[str, float] | None]) -> None:
        """Each member's terms averaged since the last report (None: a failed member)."""

    def on_member_failed(self, member: int, error: TrainingDiverged) -> None: ...
    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """A state the same loop resumes from exactly (``resume=state``)."""

    def on_member_end(self, member: int, result: TrainResult) -> None: ...
    def wants_checkpoint(self, step: int) -> bool:
        """A checkpoint now, off the ``checkpoint_every`` grid (a study being stopped asks for one)."""
        ...

    def estimates_wanted(self, step: int) -> EstimateRequest | None:
        """What to estimate of each member after ``step`` (None: nothing; a rung asks)."""
        ...

    def on_estimates(self, step: int, estimates: Mapping[int, Mapping[str, float]]) -> set[int]:
        """Each running member's estimates at a rung; returns the members to stop there."""
        ...


class NullReporter:
    """Reports nowhere; for scripts and tests that only want the results."""

    def on_terms(self, step: int, terms: Sequence[Mapping[str, float] | None]) -> None:
        pass

    def on_member_failed(self, member: int, error: TrainingDiverged) -> None:
        pass

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        pass

    def on_member_end(self, member: int, result: TrainResult) -> None:
        pass

    def wants_checkpoint(self, step: int) -> bool:
        return False

    def estimates_wanted(self, step: int) -> EstimateRequest | None:
        return None

    def on_estimates(self, step: int, estimates: Mapping[int, Mapping[str, float]]) -> set[int]:
        return set()


def checkpoint_due(report: Reporter, step: int, every: int, last: int) -> bool:
    """Whether to checkpoint after ``step``: every ``every`` steps, or when the reporter asks;
    never after the ``last`` step (the run ends there)."""
    return step < last and ((bool(every) and step % every == 0) or report.wants_checkpoint(step))


class TermAccumulator:
    """Sums terms on the device between reports, so logging costs no sync per step.

    It also keeps, per term, the first step at which it was non-finite, so a
    divergence is reported at its exact step and with the term that went first
    (later NaNs are consequences).  Every term is a ``[members]`` tensor (``[1]`` or a
    scalar for a plain run) and each member is accounted for separately.
    """

    def __init__(self, members: int = 1) -> None:
        self.shape = (members,)
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.first_bad: torch.Tensor | None = None
        self.count = 0

    def add(self, step: int, terms: Mapping[str, torch.Tensor]) -> None:
        values = torch.stack([v.detach().float().reshape(self.shape) for v in terms.values()], dim=-1)
        if self.sums is None:
            self.names = list(terms)
            self.sums = torch.zeros_like(values)
            self.first_bad = torch.full_like(values, -1.0)
        self.sums += values
        unseen = (self.first_bad < 0) & ~torch.isfinite(values)
        self.first_bad = torch.where(unseen, torch.full_like(values, float(step)), self.first_bad)
        self.count += 1

    def pop_members(self) -> tuple[list[dict[str, float]], dict[int, TrainingDiverged]]:
        """Each member's means, and a :class:`TrainingDiverged` for each member that went non-finite."""
        assert self.sums is not None and self.first_bad is not None
        means = (self.sums / self.count).reshape(-1, len(self.names)).tolist()
        first_bad = self.first_bad.reshape(-1, len(self.names)).tolist()
        self.sums, self.first_bad, self.count = None, None, 0
        diverged = {}
        for member, row in enumerate(first_bad):
            bad = [(at, i) for i, at in enumerate(row) if at >= 0]
            if bad:
                at, i = min(bad)
                diverged[member] = TrainingDiverged(int(at), self.names[i])
        return [dict(zip(self.names, row, strict=True)) for row in means], diverged
