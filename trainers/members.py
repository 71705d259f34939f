"""Training a list of members, the unit every study trial runs: ``train_members(configs, report)``.

A list of one is trained by the plain loop (:func:`trainers.train.train`, any
variant); a list of several, which must share a packable structure, by the stacked
loop (:func:`trainers.pack.train_pack`).  Both report to one
:class:`~trainers.reporting.Reporter`, build their runs with :mod:`trainers.setup`,
resume only from a checkpoint that fits (:func:`trainers.checkpoint.check_fit`) and
end each member with :func:`trainers.evaluation.finish_member`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainers.config import TrainConfig
from trainers.pack import train_pack
from trainers.reporting import MemberStopped, Reporter, TrainingDiverged, TrainResult
from trainers.train import train


def train_members(
    configs: Sequence[TrainConfig],
    report: Reporter,
    resume: Mapping[str, Any] | None = None,
    output_dirs: Sequence[str | Path] | None = None,
) -> list[TrainResult | TrainingDiverged | MemberStopped]:
    """Train ``configs`` with the loop that fits them; per member, its result, its divergence or
    its stop at a rung (``Reporter.on_estimates``).

    ``resume`` is a checkpoint this function reported for the same list;
    ``output_dirs`` (one per member) receive each finished member's artifacts.
    """
    if not configs:
        raise ValueError("members: needs at least one member")
    if len(configs) > 1:
        return train_pack(configs, report, resume=resume, output_dirs=output_dirs)
    try:
        return [train(configs[0], report, resume=resume, output_dir=output_dirs[0] if output_dirs else None)]
    except (TrainingDiverged, MemberStopped) as error:  # reported by the loop; an outcome here
        return [error]
