"""The spec's search space: what a trial's point may be, as an Optuna define-by-run function or a grid.

This module declares the space only; :mod:`study.searchers` owns the searching (the
Optuna study, its sampler and storage, and the Tune searcher that asks it).

Optuna mode (:class:`DefineByRun`, called by :class:`study.searchers.OptunaSource`):
the variant is sampled first (categorical, when the study names several), then for
each of its weights the schedule family (when several are named) or one of the
listed ``choices``, and then only that family's parameters, so Optuna never sees a
parameter of a family the trial did not choose.  Weights and capacities are sampled
uniformly or log-uniformly as their range says; step counts as integers.  Parameter
names are ``<weight>.<param>`` (``beta.schedule``, ``beta.end``): the same names
reach MLflow params and the results parquet.  When several variants share a weight
name, Optuna sees it as ``<variant>:<weight>.<param>`` (each variant's ranges are
its own); the trial's config drops the prefix.

Grid mode (Locatello et al. 2019): every variant × every combination of its
weights' choices × every seed, one trial each.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from study.spec import Range, StudySpec, WeightSpec
from trainers.schedules import FAMILIES, Schedule

if TYPE_CHECKING:
    import optuna

VARIANT_SEPARATOR = ":"


def strip_variant_prefix(params: dict[str, Any]) -> dict[str, Any]:
    """Config keys as the trial uses them: ``beta_vae:beta.value`` → ``beta.value``."""
    return {key.split(VARIANT_SEPARATOR, 1)[-1]: value for key, value in params.items()}


def _flatten(name: str, schedule: Schedule) -> dict[str, Any]:
    return {f"{name}.{param}": value for param, value in schedule.to_config().items()}


class DefineByRun:
    """The define-by-run function :class:`study.searchers.OptunaSource` calls once per Optuna trial it asks.

    It suggests the searched parameters on the trial (Optuna records their
    distributions) and returns the fixed values (the variant, a family named alone,
    fixed parameters, a chosen schedule, the seed), so that the trial's params and
    these make the member's whole point; seeds cycle through ``spec.seeds`` by trial
    number.  A class rather than a closure: Tune pickles the searcher (``tuner.pkl``)
    and this with it.
    """

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        variants = self.spec.variant_specs()
        names = list(variants)
        variant = names[0] if len(names) == 1 else trial.suggest_categorical("variant", names)
        prefix = "" if len(names) == 1 else f"{variant}{VARIANT_SEPARATOR}"
        fixed: dict[str, Any] = {"variant": variant}
        for name, weight in variants[variant].weights.items():
            fixed.update(self._weight(trial, prefix, name, weight))
        seeds = self.spec.seeds
        fixed["seed"] = seeds[trial.number % len(seeds)]
        trial.set_user_attr("seed", fixed["seed"])
        return fixed

    @staticmethod
    def _weight(trial: optuna.Trial, prefix: str, name: str, weight: WeightSpec) -> dict[str, Any]:
        if weight.choices is not None:
            index = 0
            if len(weight.choices) > 1:
                index = trial.suggest_categorical(f"{prefix}{name}.choice", list(range(len(weight.choices))))
            return _flatten(name, Schedule.from_config(weight.choices[index], name))
        fixed: dict[str, Any] = {}
        families = weight.families
        if len(families) == 1:
            family = fixed[f"{name}.schedule"] = families[0]
        else:
            family = trial.suggest_categorical(f"{prefix}{name}.schedule", families)
        for param, kind in FAMILIES[family].params.items():
            value = weight.params.get(param)
            key = f"{prefix}{name}.{param}"
            if isinstance(value, Range):
                if kind.kind in ("step", "period"):
                    trial.suggest_int(key, int(value.low), int(value.high), log=value.log)
                else:
                    trial.suggest_float(key, value.low, value.high, log=value.log)
            elif value is not None:
                fixed[f"{name}.{param}"] = value
        return fixed


def grid_points(spec: StudySpec) -> list[dict[str, Any]]:
    """Every trial of a grid study: ``{"variant", "seed", "<weight>.<param>": ...}``."""
    points = []
    for variant, vspec in spec.variant_specs().items():
        axes = []
        for name, weight in vspec.weights.items():
            if weight.choices is not None:
                axes.append([_flatten(name, Schedule.from_config(c, name)) for c in weight.choices])
            else:
                config = {"schedule": weight.families[0], **weight.params}
                axes.append([_flatten(name, Schedule.from_config(config, name))])
        for combination in itertools.product(*axes):
            for seed in spec.seeds:
                point: dict[str, Any] = {"variant": variant, "seed": seed}
                for part in combination:
                    point.update(part)
                points.append(point)
    return points
