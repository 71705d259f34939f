"""Weight and capacity schedules as pure functions of the training step.

Every α, β, γ, λ and capacity C of an objective is a schedule: a family name plus
its parameters.  The families:

``constant``  value
``linear``    start → end, linearly between ``start_step`` and ``end_step``, held
              outside; a β warm-up (start 0) and a capacity ramp C(t) (Burgess et
              al. 2018: C grows linearly from 0 to C_max) are both this family.
``step``      start before ``at_step``, end from it on.
``cyclical``  Fu et al. (2019), "Cyclical annealing schedule": the step axis is cut
              into cycles of ``period`` steps; within each, the value ramps linearly
              from start to end over the first ``ramp_fraction`` of the cycle and is
              then held at end.

Values are non-negative (they weight KL-type penalties or bound a capacity in
nats), ramps end after they start, periods are positive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


class ScheduleError(ValueError):
    """A schedule whose family or parameters are invalid; the message names the field."""


def constant(step: int, value: float) -> float:
    """``v(t) = value``."""
    return float(value)


def linear(step: int, start: float, end: float, start_step: int, end_step: int) -> float:
    """``v(t) = start + (end − start) · clip((t − t0) / (t1 − t0), 0, 1)``."""
    if step <= start_step:
        return float(start)
    if step >= end_step:
        return float(end)
    return float(start + (end - start) * (step - start_step) / (end_step - start_step))


def step_change(step: int, start: float, end: float, at_step: int) -> float:
    """``v(t) = start`` for ``t < at_step``, else ``end``."""
    return float(start if step < at_step else end)


def cyclical(step: int, start: float, end: float, period: int, ramp_fraction: float) -> float:
    """Fu et al. (2019): ``τ = (t mod T)/T``, ``v = start + (end − start) · min(1, τ/R)``."""
    tau = (step % period) / period
    return float(start + (end - start) * min(1.0, tau / ramp_fraction))


@dataclass(frozen=True)
class Param:
    """One schedule parameter: its kind fixes its type and constraint."""

    kind: str  # "weight" (float >= 0), "step" (int >= 0), "period" (int >= 1), "fraction" (0, 1]
    default: float | None = None

    def check(self, value: object, where: str) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScheduleError(f"{where}: must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ScheduleError(f"{where}: must be finite, got {value!r}")
        if self.kind == "weight":
            if value < 0:
                raise ScheduleError(f"{where}: must be >= 0, got {value!r}")
            return float(value)
        if self.kind == "fraction":
            if not 0 < value <= 1:
                raise ScheduleError(f"{where}: must be in (0, 1], got {value!r}")
            return float(value)
        if float(value) != int(value):
            raise ScheduleError(f"{where}: must be a whole number of steps, got {value!r}")
        lowest = 1 if self.kind == "period" else 0
        if value < lowest:
            raise ScheduleError(f"{where}: must be >= {lowest}, got {value!r}")
        return int(value)


@dataclass(frozen=True)
class Family:
    function: Callable[..., float]
    params: Mapping[str, Param]
    #: Pairs (earlier, later) of step parameters where later must exceed earlier.
    ordered: tuple[tuple[str, str], ...] = ()


FAMILIES: dict[str, Family] = {
    "constant": Family(constant, {"value": Param("weight")}),
    "linear": Family(
        linear,
        {
            "start": Param("weight", 0.0),
            "end": Param("weight"),
            "start_step": Param("step", 0),
            "end_step": Param("step"),
        },
        ordered=(("start_step", "end_step"),),
    ),
    "step": Family(
        step_change,
        {"start": Param("weight", 0.0), "end": Param("weight"), "at_step": Param("step")},
    ),
    "cyclical": Family(
        cyclical,
        {
            "start": Param("weight", 0.0),
            "end": Param("weight"),
            "period": Param("period"),
            "ramp_fraction": Param("fraction", 0.5),
        },
    ),
}


@dataclass(frozen=True)
class Schedule:
    """A validated schedule; call it with a step to get the value in force."""

    family: str
    params: Mapping[str, float | int] = field(default_factory=dict)

    def __call__(self, step: int) -> float:
        return FAMILIES[self.family].function(step, **self.params)

    def to_config(self) -> dict[str, object]:
        return {"schedule": self.family, **self.params}

    @classmethod
    def from_config(cls, config: Mapping[str, object] | float | int, where: str) -> Schedule:
        """Validate ``{"schedule": family, **params}`` (a bare number means constant)."""
        if isinstance(config, (int, float)) and not isinstance(config, bool):
            config = {"schedule": "constant", "value": config}
        if not isinstance(config, Mapping):
            raise ScheduleError(f"{where}: must be a number or a mapping, got {config!r}")
        family_name = config.get("schedule", "constant")
        if family_name not in FAMILIES:
            raise ScheduleError(f"{where}.schedule: unknown schedule {family_name!r}; known: {', '.join(FAMILIES)}")
        family = FAMILIES[family_name]
        unknown = sorted(set(config) - set(family.params) - {"schedule"})
        if unknown:
            raise ScheduleError(
                f"{where}.{unknown[0]}: not a parameter of schedule {family_name!r} "
                f"(parameters: {', '.join(family.params)})"
            )
        params: dict[str, float | int] = {}
        for name, param in family.params.items():
            if name in config:
                params[name] = param.check(config[name], f"{where}.{name}")
            elif param.default is not None:
                params[name] = param.check(param.default, f"{where}.{name}")
            else:
                raise ScheduleError(f"{where}.{name}: required by schedule {family_name!r}")
        for earlier, later in family.ordered:
            if params[later] <= params[earlier]:
                raise ScheduleError(f"{where}.{later}: must be after {earlier} ({params[later]} <= {params[earlier]})")
        return cls(family_name, params)
