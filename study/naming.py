"""Short, readable names of a study's trials: ``t0005`` and ``t0005-beta_vae-beta=8.96-s0``.

A trial's id is ``t`` and its number in the study (the order the searcher asked for it),
so folders, Ray's trial folders, the run log and MLflow sort and read alike.  A pack of
several members is ``p`` and its number.  Ids of folders written before this scheme (hex
hashes) stay as they are: nothing here parses an id back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: Digits of a trial or pack number (more as a study passes 9,999).
WIDTH = 4
_NUMBERED = re.compile(r"^[tp](\d+)$")


def trial_id(number: int) -> str:
    """The id of the study's trial ``number`` (0-based): ``trial_id(5) == "t0005"``."""
    return f"t{number:0{WIDTH}d}"


def pack_id(number: int) -> str:
    """The id of the study's pack ``number`` of several members: ``pack_id(3) == "p0003"``."""
    return f"p{number:0{WIDTH}d}"


def next_number(ids: Iterable[str], prefix: str = "t") -> int:
    """One past the highest number among ``ids`` of the form ``<prefix><digits>`` (0 if none):
    where a resumed study goes on counting."""
    numbers = [int(m.group(1)) for i in ids if i.startswith(prefix) and (m := _NUMBERED.match(i))]
    return max(numbers, default=-1) + 1


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def weight_label(name: str, config: Mapping[str, Any]) -> str:
    """``beta=8.96`` for a constant weight, ``beta=linear(0..8)`` for a ramp (its start and end)."""
    family = config.get("schedule", "constant")
    if family == "constant":
        return f"{name}={_number(config.get('value'))}"
    return f"{name}={family}({_number(config.get('start', 0.0))}..{_number(config.get('end'))})"


def trial_label(trial: str, variant: str, weights: Mapping[str, Mapping[str, Any]], seed: int) -> str:
    """The readable name of a trial (MLflow run name, run log): id, variant, weights, seed.

    >>> trial_label("t0005", "beta_vae", {"beta": {"schedule": "constant", "value": 8.9612}}, 0)
    't0005-beta_vae-beta=8.96-s0'
    """
    return "-".join([trial, variant, *(weight_label(n, c) for n, c in weights.items()), f"s{seed}"])
