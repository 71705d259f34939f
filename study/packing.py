"""Grouping a study's trials into packs: one Ray trial trains K members (trainers.pack).

Members of a pack share every structural setting; in a study those are the
spec's, except the variant, so members are grouped by variant.  Grid studies pack
consecutive points (seeds of one configuration first, as the grid lists them).
Optuna studies ask the searcher for K trials per Ray trial
(:class:`PackingSearcher`); each member is its own Optuna trial, told its own
result, which it wrote to its ``result.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from study.space import strip_variant_prefix
from study.trial import PACK_KEY

#: The pack's own folder (its checkpoint) under the study folder; members live in ``trials/``.
PACKS_DIR = "packs"


def member_id(trial_id: str, index: int) -> str:
    """Folder name (and trial id in the parquet and MLflow) of a pack's member."""
    return f"{trial_id}-m{index}"


def member_variant(config: dict[str, Any]) -> str:
    return strip_variant_prefix(config.get("point", config))["variant"]


def pack_points(points: Iterable[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    """Consecutive points of one variant, ``size`` at a time (the last pack of a variant may be smaller)."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        by_variant.setdefault(point["variant"], []).append(point)
    return [group[i : i + size] for group in by_variant.values() for i in range(0, len(group), size)]


class PackingSearcher(Searcher):
    """Asks ``inner`` for ``size`` trials per Ray trial and tells each its own result.

    Suggestions of another variant than the pack's first wait for a later pack.
    At most ``num_trials`` members are asked for in all; then the packs still
    waiting are suggested, and the search is finished.  A member's outcome is read
    from its ``result.json``: ``completed`` is told with its values, ``failed``
    (diverged) as an error, anything else (the pack crashed) as pruned.
    """

    def __init__(self, inner: Searcher, size: int, num_trials: int, study_dir: Path) -> None:
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner, self.size, self.num_trials = inner, size, num_trials
        self.study_dir = Path(study_dir)
        self.asked = 0
        self.waiting: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.members: dict[str, list[str]] = {}

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def _ask(self, key: str) -> dict[str, Any] | None:
        if self.asked >= self.num_trials:
            return None
        config = self.inner.suggest(key)
        if not isinstance(config, dict):
            return None
        self.asked += 1
        return config

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        members: list[tuple[str, dict[str, Any]]] = []
        variant = next(iter(self.waiting), None)
        if variant is not None:
            members = self.waiting.pop(variant)
        while len(members) < self.size:
            key = f"{trial_id}#{self.asked}"
            config = self._ask(key)
            if config is None:
                break
            this = member_variant(config)
            if variant is None:
                variant = this
            if this == variant:
                members.append((key, config))
            else:
                self.waiting.setdefault(this, []).append((key, config))
        if not members:
            return Searcher.FINISHED
        if len(members) > self.size:  # a waiting group grew past a pack
            self.waiting[variant] = members[self.size :]
            members = members[: self.size]
        self.members[trial_id] = [key for key, _ in members]
        return {PACK_KEY: [config for _, config in members]}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass  # members are told once, when the pack ends

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        for index, key in enumerate(self.members.pop(trial_id, [])):
            path = self.study_dir / "trials" / member_id(trial_id, index) / "result.json"
            record = json.loads(path.read_text()) if path.exists() else {}
            if record.get("status") == "completed":
                values = {**record.get("terms", {}), **record.get("metrics", {}), "final": 1}
                self.inner.on_trial_complete(key, values, False)
            elif record.get("status") == "failed":
                self.inner.on_trial_complete(key, None, True)
            else:
                self.inner.on_trial_complete(key, None, False)
