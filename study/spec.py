"""The study spec: a YAML file validated into :class:`StudySpec`.

Structure and types are checked by pydantic; cross-field rules (a weight the
variant takes, a schedule family that exists, ranges its parameters allow, an
objective the variant or a metric produces) by :func:`check_spec`.  Every error
names the field, e.g. ``weights.beta.end.low: must be >= 0, got -1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainers.config import EvalConfig, TrainConfig
from trainers.data import DATASETS
from trainers.metrics import METRICS
from trainers.models import KERNEL_CHOICES
from trainers.objectives import OBJECTIVES, variant_term_names
from trainers.objectives.gaussian import ESTIMATORS
from trainers.schedules import FAMILIES, Schedule, ScheduleError


class SpecError(ValueError):
    """An invalid study spec; ``str(error)`` lists one ``field: problem`` per line."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Model):
    """A searched parameter: uniform (or log-uniform) in ``[low, high]``."""

    low: float
    high: float
    log: bool = False


class WeightSpec(BaseModel):
    """One weight's schedule: a family (or families to search) and its parameters.

    Each parameter is a fixed number or a :class:`Range`; parameters left out take
    the family's default.
    """

    model_config = ConfigDict(extra="allow")
    schedule: str | list[str] = "constant"

    @property
    def families(self) -> list[str]:
        return [self.schedule] if isinstance(self.schedule, str) else list(self.schedule)

    @property
    def params(self) -> dict[str, float | Range]:
        out: dict[str, float | Range] = {}
        for name, value in (self.model_extra or {}).items():
            out[name] = Range.model_validate(value) if isinstance(value, dict) else value
        return out


class ModelSpec(_Model):
    latent_dim: int = Field(10, ge=2)
    kernels: Literal[KERNEL_CHOICES] = "code"  # type: ignore[valid-type]


class TrainingSpec(_Model):
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-4, gt=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    device: str = "auto"
    estimator: Literal[("auto", *ESTIMATORS)] = "auto"  # type: ignore[valid-type]
    log_every: int = Field(10, ge=1)
    checkpoint_every: int = Field(0, ge=0)


class EvaluationSpec(_Model):
    seed: int = Field(0, ge=0)
    recon_points: int = Field(2048, ge=2)
    mig_points: int = Field(10_000, ge=2)
    mig_bins: int = Field(20, ge=2)


class ObjectiveSpec(_Model):
    name: str
    mode: Literal["min", "max"]


class SearchSpec(_Model):
    num_trials: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    sampler: Literal["tpe", "random", "nsga2"] = "tpe"
    seed: int = 0
    #: Retries of a trial that crashed (from its last checkpoint); divergence is not retried.
    max_failures: int = Field(2, ge=0)


class ResourcesSpec(_Model):
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0)


class TrackingSpec(_Model):
    #: MLflow tracking URI; default: a SQLite store ``mlflow.db`` in the study folder.
    uri: str | None = None
    #: Steps between two ``log_batch`` calls of a trial.
    flush_every: int = Field(100, ge=1)


class StudySpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    study_dir: str | None = None
    variant: str
    #: Structural options of the variant (e.g. HFVAE's latent groups).
    variant_options: dict[str, Any] = Field(default_factory=dict)
    dataset: str = "dsprites"
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    weights: dict[str, WeightSpec] = Field(default_factory=dict)
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    search: SearchSpec = SearchSpec()
    resources: ResourcesSpec = ResourcesSpec()
    tracking: TrackingSpec = TrackingSpec()

    @model_validator(mode="before")
    @classmethod
    def _weights_may_be_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("weights"), dict):
            data = dict(data)
            data["weights"] = {
                k: {"schedule": "constant", "value": v}
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                else v
                for k, v in data["weights"].items()
            }
        return data

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def train_config(self, params: dict[str, Any], seed: int) -> TrainConfig:
        """The training config of one trial: the spec's fixed values plus its sampled ``params``."""
        weights: dict[str, dict[str, Any]] = {}
        for name, weight in self.weights.items():
            family = params.get(f"{name}.schedule", weight.families[0])
            config: dict[str, Any] = {"schedule": family}
            for param in FAMILIES[family].params:
                key = f"{name}.{param}"
                if key in params:
                    config[param] = params[key]
                elif param in weight.params and not isinstance(weight.params[param], Range):
                    config[param] = weight.params[param]
            weights[name] = config
        t = self.training
        return TrainConfig(
            variant=self.variant,
            variant_options=dict(self.variant_options),
            weights=weights,
            dataset=self.dataset,
            latent_dim=self.model.latent_dim,
            kernels=self.model.kernels,
            estimator=t.estimator,
            steps=t.steps,
            batch_size=t.batch_size,
            lr=t.lr,
            seed=seed,
            device=t.device,
            precision=t.precision,
            num_threads=max(1, int(self.resources.cpus)),
            log_every=t.log_every,
            checkpoint_every=t.checkpoint_every,
            eval=EvalConfig(**self.evaluation.model_dump()),
        )


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<spec>"


def check_spec(spec: StudySpec) -> None:
    """Cross-field rules; raises :class:`SpecError` listing every problem found."""
    problems: list[str] = []
    if spec.variant not in OBJECTIVES:
        problems.append(f"variant: unknown variant {spec.variant!r}; known: {', '.join(sorted(OBJECTIVES))}")
        raise SpecError("\n".join(problems))
    if spec.dataset not in DATASETS:
        problems.append(f"dataset: unknown dataset {spec.dataset!r}; known: {', '.join(sorted(DATASETS))}")
    objective = OBJECTIVES[spec.variant]
    for name, weight in spec.weights.items():
        where = f"weights.{name}"
        if name not in objective.weight_defaults:
            accepted = ", ".join(objective.weight_defaults) or "none"
            problems.append(f"{where}: variant {spec.variant!r} takes no such weight (it takes: {accepted})")
            continue
        problems.extend(_check_weight(weight, where))
    try:
        terms = variant_term_names(spec.variant, spec.variant_options)
    except (ValueError, TypeError) as error:
        problems.append(str(error) if str(error).startswith("variant_options") else f"variant_options: {error}")
        terms = ()
    produced = set(terms) | set(METRICS)
    seen: set[str] = set()
    for i, target in enumerate(spec.objectives):
        if target.name not in produced:
            problems.append(
                f"objectives.{i}.name: {target.name!r} is neither a term of {spec.variant!r} nor a metric "
                f"(known: {', '.join(sorted(produced))})"
            )
        if target.name in seen:
            problems.append(f"objectives.{i}.name: {target.name!r} named twice")
        seen.add(target.name)
    if spec.training.checkpoint_every % spec.training.log_every:
        problems.append(
            f"training.checkpoint_every: must be 0 or a multiple of training.log_every ({spec.training.log_every})"
        )
    if spec.training.device not in ("auto", "cpu", "cuda") and not spec.training.device.startswith("cuda:"):
        problems.append(f"training.device: must be auto, cpu, cuda or cuda:N, got {spec.training.device!r}")
    if any(seed < 0 for seed in spec.seeds):
        problems.append("seeds: must be >= 0")
    if problems:
        raise SpecError("\n".join(problems))


def _check_weight(weight: WeightSpec, where: str) -> list[str]:
    problems = []
    families = weight.families
    if not families:
        return [f"{where}.schedule: names no schedule family"]
    for family in families:
        if family not in FAMILIES:
            problems.append(f"{where}.schedule: unknown schedule {family!r}; known: {', '.join(FAMILIES)}")
    if problems:
        return problems
    known = set().union(*(FAMILIES[f].params for f in families))
    for param, value in weight.params.items():
        if param not in known:
            problems.append(f"{where}.{param}: not a parameter of schedule {' or '.join(families)}")
            continue
        kind = next(FAMILIES[f].params[param] for f in families if param in FAMILIES[f].params)
        try:
            if isinstance(value, Range):
                kind.check(value.low, f"{where}.{param}.low")
                kind.check(value.high, f"{where}.{param}.high")
                if value.high <= value.low:
                    raise ScheduleError(f"{where}.{param}.high: must exceed low ({value.high} <= {value.low})")
                if value.log and value.low <= 0:
                    raise ScheduleError(f"{where}.{param}.low: a log range needs low > 0, got {value.low}")
            else:
                kind.check(value, f"{where}.{param}")
        except ScheduleError as error:
            problems.append(str(error))
    if problems:
        return problems
    # The least favourable corner of the ranges (an earlier step at its highest, a
    # later one at its lowest) must still be a valid schedule of each family.
    for family in families:
        corner: dict[str, Any] = {"schedule": family}
        ordered_later = {later for _, later in FAMILIES[family].ordered}
        for param in FAMILIES[family].params:
            value = weight.params.get(param)
            if isinstance(value, Range):
                corner[param] = value.low if param in ordered_later else value.high
            elif value is not None:
                corner[param] = value
        try:
            Schedule.from_config(corner, where)
        except ScheduleError as error:
            problems.append(str(error))
    return problems


def parse_spec(data: Any, source: str = "<spec>") -> StudySpec:
    """Validate a spec mapping; raises :class:`SpecError` with ``source`` in the message."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a study spec must be a YAML mapping")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as error:
        lines = [f"{_loc(e['loc'])}: {e['msg']}" for e in error.errors()]
        raise SpecError(f"{source}: invalid study spec\n" + "\n".join(lines)) from None
    try:
        check_spec(spec)
    except SpecError as error:
        raise SpecError(f"{source}: invalid study spec\n{error}") from None
    return spec


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"{path}: cannot read spec ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML ({error})") from None
    return parse_spec(data, str(path))
