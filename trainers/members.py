"""Training a list of members, the unit every study trial runs: ``train_members(configs, report)``.

A list of one is trained by the plain loop (:func:`trainers.train.train`, any
variant); a list of several, which must share a packable structure, by the stacked
trainer (:func:`trainers.pack.train_pack`).  Both report through one
:class:`~trainers.pack.MemberReporter`: each member's terms, its failure (the step
and term that went non-finite) or its end, and checkpoints of the whole list, which
the same trainer resumes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainers.config import TrainConfig
from trainers.pack import MemberReporter, NullMemberReporter, train_pack
from trainers.train import TrainingDiverged, TrainResult, train

__all__ = ["MemberReporter", "NullMemberReporter", "train_members"]


class _OneMember:
    """The plain loop's reporter, speaking for member 0 of a list of one."""

    def __init__(self, report: MemberReporter) -> None:
        self.report = report

    def on_terms(self, step: int, terms: Mapping[str, float]) -> None:
        self.report.on_terms(step, [terms])

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        self.report.on_checkpoint(step, state)

    def on_end(self, result: TrainResult) -> None:
        self.report.on_member_end(0, result)

    def wants_checkpoint(self, step: int) -> bool:
        return self.report.wants_checkpoint(step)


def train_members(
    configs: Sequence[TrainConfig],
    report: MemberReporter,
    resume: Mapping[str, Any] | None = None,
    output_dirs: Sequence[str | Path] | None = None,
) -> list[TrainResult | TrainingDiverged]:
    """Train ``configs`` with the trainer that fits them; per member, its result or its divergence.

    ``resume`` is a checkpoint this function reported for the same list;
    ``output_dirs`` (one per member) receive each finished member's artifacts.
    """
    if not configs:
        raise ValueError("members: needs at least one member")
    if len(configs) > 1:
        return train_pack(configs, report, resume=resume, output_dirs=output_dirs)
    try:
        result = train(
            configs[0], _OneMember(report), resume=resume, output_dir=output_dirs[0] if output_dirs else None
        )
    except TrainingDiverged as error:
        report.on_member_failed(0, error)
        return [error]
    return [result]
