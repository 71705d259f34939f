"""The spec's search space as an Optuna define-by-run function, and the sampler.

For each weight, the schedule family is sampled first (categorical, when several
are named) and then only that family's parameters, so Optuna never sees a
parameter of a family the trial did not choose.  Weights and capacities are
sampled uniformly or log-uniformly as their range says; step counts as integers.
Parameter names are ``<weight>.<param>`` (``beta.schedule``, ``beta.end``): the
same names reach MLflow params and the results parquet.
"""

from __future__ import annotations

from typing import Any

import optuna

from study.spec import Range, StudySpec
from trainers.schedules import FAMILIES


class DefineByRun:
    """The function Tune's ``OptunaSearch(space=...)`` calls once per trial.

    It returns the fixed values (a family named alone, fixed parameters, the seed)
    so the trial's config is complete; seeds cycle through ``spec.seeds`` by trial
    number.  A class rather than a closure: Tune pickles the searcher with it.
    """

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        fixed: dict[str, Any] = {}
        for name, weight in self.spec.weights.items():
            families = weight.families
            key = f"{name}.schedule"
            if len(families) == 1:
                family = fixed[key] = families[0]
            else:
                family = trial.suggest_categorical(key, families)
            for param, kind in FAMILIES[family].params.items():
                value = weight.params.get(param)
                key = f"{name}.{param}"
                if isinstance(value, Range):
                    if kind.kind in ("step", "period"):
                        trial.suggest_int(key, int(value.low), int(value.high), log=value.log)
                    else:
                        trial.suggest_float(key, value.low, value.high, log=value.log)
                elif value is not None:
                    fixed[key] = value
        seeds = self.spec.seeds
        fixed["seed"] = seeds[trial.number % len(seeds)]
        trial.set_user_attr("seed", fixed["seed"])
        return fixed


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    if spec.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)
