"""The study spec: a YAML file validated into :class:`StudySpec`.

Structure and types are checked by pydantic; cross-field rules (a weight the
variant takes, a schedule family that exists, ranges its parameters allow, an
objective the variant or a metric produces) by :func:`check_spec`.  Every error
names the field, e.g. ``weights.beta.end.low: must be >= 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from study.errors import SpecError
from trainers.config import MAX_SEED, MAX_STEPS, EvalConfig, ModelOptions, TrainConfig, TrainingOptions
from trainers.data import DATASETS, DataFileError, make_dataset
from trainers.metrics import METRICS
from trainers.objectives import OBJECTIVES, make_objective, variant_term_names
from trainers.schedules import FAMILIES, Schedule, ScheduleError

#: Trials of one study: more is a typo (the Locatello et al. study has 12,600).
MAX_TRIALS = 1_000_000


def _is_number(annotation: Any) -> bool:
    """Whether a field's annotation takes an int or a float (and not a yes/no)."""
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_number(arg) for arg in args)
    return annotation in (int, float)


def _refuse_bools(cls: type, data: Any) -> Any:
    """pydantic would read ``num_trials: true`` as 1; a yes/no where a number belongs is a mistake.

    The model validator of every spec section (models and pydantic dataclasses alike)."""
    if isinstance(data, dict):
        for name, info in cls.__pydantic_fields__.items():
            value, annotation = data.get(name), info.annotation
            if isinstance(value, list) and typing.get_origin(annotation) is list:
                annotation = typing.get_args(annotation)[0]
                value = next((v for v in value if isinstance(v, bool)), None)
            if isinstance(value, bool) and _is_number(annotation):
                raise ValueError(f"{name}: must be a number, got {str(value).lower()}")
    return data


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _no_bools = model_validator(mode="before")(_refuse_bools)


class Range(_Model):
    """A searched parameter: uniform (or log-uniform) in ``[low, high]``."""

    low: float = Field(description="The range's lower end (for a step parameter, a whole number of steps).")
    high: float = Field(description="The range's upper end; must exceed ``low``.")
    log: bool = Field(False, description="Sample log-uniformly (``low`` must then be > 0): weights spanning decades.")


class WeightSpec(BaseModel):
    """One weight's schedule: a family (or families to search) and its parameters.

    Each parameter is a fixed number or a :class:`Range`; parameters left out take
    the family's default.  Alternatively ``choices`` lists whole schedules (a number
    means constant): Optuna picks one per trial, grid mode enumerates them all.
    In YAML a bare number is a constant and a bare list is ``choices``.
    """

    model_config = ConfigDict(extra="allow")
    schedule: str | list[str] = Field(
        "constant",
        description="The schedule family (``constant``, ``linear``, ``step``, ``cyclical``), or a list of families "
        "for the search to choose from; its parameters (a number or ``{low, high, log}``) sit beside it.",
    )
    choices: list[float | dict[str, Any]] | None = Field(
        None,
        description="Whole schedules to choose from instead (a number means constant): Optuna picks one per trial, "
        "a grid runs each.  In YAML a bare list under the weight's name means this.",
    )

    @property
    def families(self) -> list[str]:
        return [self.schedule] if isinstance(self.schedule, str) else list(self.schedule)

    @property
    def params(self) -> dict[str, float | Range]:
        out: dict[str, float | Range] = {}
        for name, value in (self.model_extra or {}).items():
            out[name] = Range.model_validate(value) if isinstance(value, dict) else value
        return out


def _normalise_weights(weights: Any) -> Any:
    """A bare number is a constant schedule, a bare list a list of choices."""
    if not isinstance(weights, dict):
        return weights
    out = {}
    for name, value in weights.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = {"schedule": "constant", "value": value}
        elif isinstance(value, list):
            value = {"choices": value}
        out[name] = value
    return out


def _expand_weight_shorthand(cls: type, data: Any) -> Any:
    if isinstance(data, dict) and "weights" in data:
        data = {**data, "weights": _normalise_weights(data["weights"])}
    return data


class VariantSpec(_Model):
    """One variant of a multi-variant study: its weights and structural options."""

    weights: dict[str, WeightSpec] = Field(
        default_factory=dict, description="This variant's weights by name, each a schedule (see ``weights``)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="This variant's structural options (see ``variant_options``)."
    )

    _shorthand = model_validator(mode="before")(_expand_weight_shorthand)


def _describe_from_comments(*classes: type) -> None:
    """Make the ``#:`` comment above each field of these stdlib dataclasses its description.

    trainers/ declares the ``training``, ``model`` and ``evaluation`` fields as stdlib
    dataclasses (it depends on torch and numpy only) and documents each with a ``#:``
    comment.  pydantic reads a dataclass field's ``metadata["description"]``, so setting
    it here from those comments (before the spec's sections subclass them) puts each
    field's one text, written where the field is declared, into the spec's JSON Schema
    and its generated reference.
    """
    for cls in classes:
        comment: list[str] = []
        for line in inspect.getsource(cls).splitlines():
            text = line.strip()
            declared = re.match(r"^(\w+)\s*:", text)
            if text.startswith("#:"):
                comment.append(text[2:].strip())
                continue
            if declared and comment and declared.group(1) in cls.__dict__.get("__dataclass_fields__", {}):
                field = cls.__dataclass_fields__[declared.group(1)]
                field.metadata = types.MappingProxyType({**field.metadata, "description": " ".join(comment)})
            comment = []


_describe_from_comments(TrainingOptions, ModelOptions, EvalConfig)


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class TrainingSpec(TrainingOptions):
    """The ``training`` section: :class:`trainers.config.TrainingOptions` (declared and checked
    there) plus how the study packs its trials."""

    pack_size: int | Literal["auto"] = dataclasses.field(
        default="auto",
        metadata={
            "description": "Members trained together in one trial (trainers.pack): stacked parameters, one step for "
            "all, each member its own Optuna trial, MLflow run and parquet row.  ``auto``: 1 on CPU; on GPUs, as "
            "many as half the trial's GPU memory holds (up to 64).  Single-pass variants only; at most 4,096."
        },
    )

    _no_bools = model_validator(mode="before")(_refuse_bools)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.pack_size, int) and not 1 <= self.pack_size <= 4096:
            raise ValueError(f"pack_size: must be >= 1 or auto, got {self.pack_size}")


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class ModelSpec(ModelOptions):
    """The ``model`` section: :class:`trainers.config.ModelOptions`, declared and checked there."""

    _no_bools = model_validator(mode="before")(_refuse_bools)


#: Fields of ``evaluation`` that earlier versions had, and what replaced them.
REPLACED_EVALUATION_FIELDS = {
    "mig_points": "evaluation.metric_options: {mig: {num_points: N}}",
    "mig_bins": "evaluation.metric_options: {mig: {num_bins: N}}",
}


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class EvaluationSpec(EvalConfig):
    """The ``evaluation`` section: :class:`trainers.config.EvalConfig`, declared and checked there."""

    _no_bools = model_validator(mode="before")(_refuse_bools)


class ObjectiveSpec(_Model):
    """An objective of the search: a held-out term or metric, minimised or maximised."""

    name: str = Field(
        description="A held-out term every variant reports (``recon``, ``kl``, ...) or a value of a "
        "metric in ``evaluation.metrics`` (``mig``, ...)."
    )
    mode: Literal["min", "max"] = Field(description="Minimise or maximise it.")
    reference: float | None = Field(
        None,
        description="This objective's coordinate of the hypervolume's reference point (a value worse than any trial "
        "worth counting, e.g. ``recon`` 200 nats, ``mig`` 0).  With a reference for every objective, the study's "
        "hypervolume is recorded on its MLflow parent run.",
    )


class EarlyStoppingSpec(_Model):
    """Tune's ASHA (Li et al. 2020) or median stopping rule (Golovin et al. 2017) on a
    training term reported at every checkpoint.

    Single-objective studies only: a scheduler ranks trials by one metric, and in a
    multi-objective study a trial stopped for a poor training term may still lie on
    the Pareto front of the final objectives; stopping it would bias the front.  A
    stopped trial is recorded ``pruned`` (parquet status, MLflow KILLED, Optuna
    PRUNED), never complete."""

    scheduler: Literal["asha", "median"] = Field(
        "asha", description="``asha`` (asynchronous successive halving) or ``median`` (the median stopping rule)."
    )
    metric: str = Field("loss", description="A training term every variant of the study reports (``loss``, ``recon``).")
    mode: Literal["min", "max"] = Field("min", description="Whether a lower or a higher ``metric`` is better.")
    grace_period: int = Field(
        1000, ge=1, le=MAX_STEPS,
        description="Steps before a trial may be stopped; a multiple of ``training.checkpoint_every``.",
    )  # fmt: skip
    reduction_factor: float = Field(
        3.0, gt=1, le=100, description="ASHA's η: each rung keeps the best 1/η of the trials that reached it."
    )


class SearchSpec(_Model):
    """How the trials' configurations are chosen, how many run at once, and where the search keeps its history."""

    mode: Literal["optuna", "grid"] = Field(
        "optuna",
        description="``optuna``: sample ``num_trials`` configurations; ``grid``: every combination of variants × "
        "weight choices × seeds (``num_trials`` is then that count).",
    )
    num_trials: int = Field(
        8, ge=1, le=MAX_TRIALS,
        description="Trials of an Optuna search (``--num-trials`` overrides it).  At most a million: a larger number "
        "is a typo (the Locatello et al. study has 12,600).",
    )  # fmt: skip
    max_concurrent: int = Field(2, ge=1, le=10_000, description="Packs (Ray trials) training at once.")
    sampler: Literal["tpe", "random", "nsga2"] = Field(
        "tpe", description="Optuna's sampler: ``tpe`` (default), ``random``, or ``nsga2`` (multi-objective)."
    )
    seed: int = Field(
        0, ge=0, le=2**31 - 1,
        description="The sampler's seed; numpy's RandomState takes at most 2**32 − 1 (resumes add the trials run).",
    )  # fmt: skip
    max_failures: int = Field(
        2, ge=0, le=100,
        description="Retries of a trial that crashed (from its last checkpoint, or from step 0 without one); "
        "divergence is not retried.",
    )  # fmt: skip
    storage: str | None = Field(
        "sqlite",
        description="Where Optuna keeps the searcher's history: ``sqlite`` (the default: ``optuna.db`` in the study "
        "folder, so ``optuna-dashboard sqlite:///<study>/optuna.db`` works), a database URL (``sqlite:///...``, "
        "``postgresql://user@host/db``; PostgreSQL needs the ``postgres`` extra), or ``memory`` (the driver's memory "
        "only; a resume rebuilds it from the trials' records).  The Optuna study is named after the spec.",
    )
    early_stopping: EarlyStoppingSpec | None = Field(
        None, description="Stop unpromising trials early (single-objective studies, unpacked trials)."
    )


class ResourcesSpec(_Model):
    """What one trial (one pack) reserves on the cluster; fractions share a CPU or GPU."""

    cpus: float = Field(1.0, gt=0, le=1024, description="CPUs per trial; also the trial's torch threads.")
    gpus: float = Field(
        0.0, ge=0, le=64, description="GPUs per trial (no node has more than 64); ``0.5`` puts two trials on a GPU."
    )


class StorageSpec(_Model):
    """Where Ray Tune keeps its experiment state (trial checkpoints are the trials' own, in
    the study folder, and removed when a trial ends).

    Default: the study folder.  ``path: s3://bucket/prefix`` uses Ray's own cloud
    storage (through a pyarrow S3 filesystem; ``endpoint`` for an S3-compatible
    server); credentials come from the driver's ``AWS_*`` environment and travel to
    the trials in Ray's ``runtime_env``.  A cluster of several nodes also needs the
    study folder itself on a filesystem every node mounts (trials write their
    ``result.json``, histories and artifacts there): say so with ``shared: true``;
    the run refuses a multi-node cluster otherwise."""

    path: str | None = Field(
        None,
        description="Tune's experiment state: a local folder (default: the study folder's ``ray/``) or an "
        "``s3://``, ``gs://`` or ``file://`` URI.",
    )
    endpoint: str | None = Field(None, description="An S3-compatible server's URL, for an ``s3://`` ``path``.")
    region: str | None = Field(None, description="The bucket's region, for an ``s3://`` ``path``.")
    shared: bool = Field(
        False,
        description="The study folder is on a filesystem every node mounts (EFS, NFS, a ReadWriteMany volume); "
        "required on a cluster of several nodes.",
    )


class TrackingSpec(_Model):
    """Where and how often trials send their terms to MLflow."""

    uri: str | None = Field(
        None, description="MLflow tracking URI; default: a SQLite store ``mlflow.db`` in the study folder."
    )
    flush_every: int = Field(100, ge=1, le=MAX_STEPS, description="Steps between two ``log_batch`` calls of a trial.")
    close_timeout: float = Field(
        120.0, ge=0, le=86_400,
        description="Seconds a finished trial waits for an unreachable server before writing what is left to "
        "``undelivered_tracking.jsonl`` (delivered later by ``vae-study sync``).  At most a day.",
    )  # fmt: skip
    log_models: bool = Field(
        False,
        description="Also log each trial's final model (``model.pt``) and UDR codes to MLflow.  Off: the trial "
        "folder keeps the one copy (``trials/<id>/artifacts/``; the run's ``model`` tag names it) and MLflow gets "
        "the pictures, config and metrics.",
    )
    tune_loggers: bool = Field(
        False,
        description="Also let Ray Tune write its own per-trial logs (``result.json``, ``progress.csv``, TensorBoard "
        "event files) under ``ray/``.  Off: the trial folders, the parquet and MLflow hold every term.",
    )


class StudySpec(_Model):
    """A study: what to train (variants, weights, data, model), how long, what to optimise, and where it runs."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100,
        description="Names the study folder, the MLflow experiment and the Optuna study: letters, digits, ``_.-``; "
        "at most 100 characters.",
    )  # fmt: skip
    study_dir: str | None = Field(
        None, description="The study folder; ``--study-dir`` overrides it.  Default: ``studies/<name>``."
    )
    variant: str | None = Field(
        None, description="One variant (with ``weights`` and ``variant_options``), or give ``variants`` instead."
    )
    variant_options: dict[str, Any] = Field(
        default_factory=dict, description="Structural options of the variant (e.g. HFVAE's latent groups)."
    )
    variants: dict[str, VariantSpec] | None = Field(
        None, description="Several variants, each with its own weights and options; the variant is then searched too."
    )
    dataset: str = Field(
        "dsprites",
        description="``dsprites`` (procedural, default), ``color_dsprites``, ``noisy_dsprites``, or a file-backed "
        "set (``dsprites_file``, ``shapes3d``, ``mpi3d``) with ``dataset_options.path``.",
    )
    dataset_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the data set, e.g. ``{path: /data/3dshapes.h5}``."
    )
    model: ModelSpec = Field(ModelSpec(), description="The network and its decoder likelihood.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="How each trial trains.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="The held-out evaluation at the end of each trial."
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0], min_length=1, max_length=100_000,
        description="Seeds cycled through by trial number (a grid runs each); each in [0, 2**63 − 1] "
        "(``trainers.config.MAX_SEED``: the results parquet stores seeds as int64).",
    )  # fmt: skip
    weights: dict[str, WeightSpec] = Field(
        default_factory=dict,
        description="The variant's weights by name (``beta``, ``gamma``, ...), each a schedule: a number (constant), "
        "a list of schedules to choose from, or ``{schedule, <param>: number or {low, high, log}}``.  Weights left "
        "out take the variant's defaults.",
    )
    objectives: list[ObjectiveSpec] = Field(
        min_length=1, description="What the search optimises: one objective, or two or more for a Pareto front."
    )
    search: SearchSpec = Field(SearchSpec(), description="How configurations are chosen and how many run at once.")
    resources: ResourcesSpec = Field(ResourcesSpec(), description="What each trial reserves on the cluster.")
    tracking: TrackingSpec = Field(TrackingSpec(), description="Where the trials' terms go in MLflow.")
    storage: StorageSpec = Field(StorageSpec(), description="Where Ray Tune keeps its state; shared study folders.")

    _shorthand = model_validator(mode="before")(_expand_weight_shorthand)

    @model_validator(mode="before")
    @classmethod
    def _refuse_replaced_fields(cls, data: Any) -> Any:
        evaluation = data.get("evaluation") if isinstance(data, dict) else None
        if isinstance(evaluation, dict):
            for name, replacement in REPLACED_EVALUATION_FIELDS.items():
                if name in evaluation:
                    raise ValueError(f"evaluation.{name}: replaced by {replacement}")
        return data

    def variant_specs(self) -> dict[str, VariantSpec]:
        """Every variant of the study with its weights and options."""
        if self.variants is not None:
            return dict(self.variants)
        assert self.variant is not None
        return {self.variant: VariantSpec(weights=self.weights, options=self.variant_options)}

    def field(self, variant: str, name: str) -> str:
        """Where a variant's ``weights``/``options`` live in this spec (for error messages)."""
        if self.variants is None:
            return "variant_options" if name == "options" else name
        return f"variants.{variant}.{name}"

    def pack_size(self) -> int:
        """Members per trial: ``training.pack_size``, or for ``auto`` (see :func:`auto_pack_size`)."""
        size = self.training.pack_size
        if size != "auto":
            return int(size)
        packable = all(OBJECTIVES[v].packable for v in self.variant_specs() if v in OBJECTIVES)
        if not packable or self.search.early_stopping is not None:
            return 1
        return auto_pack_size(self.resources.gpus, self.training.batch_size)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def point_train_config(self, point: dict[str, Any]) -> TrainConfig:
        """The training config of a suggested point: ``variant``, ``seed`` and ``<weight>.<param>`` values."""
        params = {k: v for k, v in point.items() if k not in ("seed", "variant")}
        return self.train_config(params, int(point["seed"]), point["variant"])

    def train_config(self, params: dict[str, Any], seed: int, variant: str | None = None) -> TrainConfig:
        """The training config of one trial: the spec's fixed values plus its sampled ``params``."""
        variants = self.variant_specs()
        variant = variant or next(iter(variants))
        chosen = variants[variant]
        weights: dict[str, dict[str, Any]] = {}
        for name, weight in chosen.weights.items():
            family = params.get(f"{name}.schedule", weight.families[0])
            config: dict[str, Any] = {"schedule": family}
            for param in FAMILIES[family].params:
                key = f"{name}.{param}"
                if key in params:
                    config[param] = params[key]
                elif param in weight.params and not isinstance(weight.params[param], Range):
                    config[param] = weight.params[param]
            weights[name] = config
        return TrainConfig.from_options(
            self.training,
            self.model,
            variant=variant,
            variant_options=dict(chosen.options),
            weights=weights,
            dataset=self.dataset,
            dataset_options=dict(self.dataset_options),
            seed=seed,
            num_threads=max(1, int(self.resources.cpus)),
            eval=EvalConfig(**dataclasses.asdict(self.evaluation)),
        )


#: Assumed GPU memory when the driver cannot see the trial's GPU.
ASSUMED_GPU_BYTES = 16 * 2**30
#: Working memory of one member of the standard 64×64 VAE per image of its batch:
#: saved activations of encoder and decoder in float32 (≈ 0.2 M values) with the
#: backward's copies, ≈ 2.5 MB; parameters, gradients and Adam moments add ≈ 10 MB.
MEMBER_BYTES_PER_IMAGE, MEMBER_BYTES_FIXED = 2_500_000, 10_000_000


def auto_pack_size(gpus: float, batch_size: int, gpu_bytes: int | None = None) -> int:
    """1 without GPUs; else members filling half the trial's share of GPU memory, 1–64."""
    if gpus <= 0:
        return 1
    if gpu_bytes is None:
        gpu_bytes = ASSUMED_GPU_BYTES
        try:
            if torch.cuda.is_available():
                gpu_bytes = torch.cuda.get_device_properties(0).total_memory
        except Exception:  # no usable CUDA on the driver: keep the assumption
            pass
    budget = 0.5 * gpu_bytes * min(gpus, 1.0)
    return int(max(1, min(64, budget // (MEMBER_BYTES_FIXED + MEMBER_BYTES_PER_IMAGE * batch_size))))


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<spec>"


def _error_line(error: Any) -> str:
    """``field: problem`` for one pydantic error; a dataclass's own check names its field in the message."""
    where, message = _loc(error["loc"]), str(error["msg"])
    if error["type"] == "value_error":
        message = message.removeprefix("Value error, ")
        if re.match(r"^[a-z_][a-z0-9_.]*: ", message):
            return message if where == "<spec>" or message.startswith(where + ".") else f"{where}.{message}"
    return f"{where}: {message}"


def check_spec(spec: StudySpec) -> None:
    """Cross-field rules; raises :class:`SpecError` listing every problem found."""
    problems: list[str] = []
    if (spec.variant is None) == (spec.variants is None):
        raise SpecError("variant: give either variant (with weights) or variants, not both or neither")
    if spec.variants is not None:
        if spec.weights or spec.variant_options:
            problems.append("weights: with variants, each variant's weights and options go under variants.<name>")
        if not spec.variants:
            problems.append("variants: names no variant")
    unknown = [name for name in spec.variant_specs() if name not in OBJECTIVES]
    if unknown:
        where = "variant" if spec.variants is None else f"variants.{unknown[0]}"
        raise SpecError(f"{where}: unknown variant {unknown[0]!r}; known: {', '.join(sorted(OBJECTIVES))}")
    if spec.dataset not in DATASETS:
        problems.append(f"dataset: unknown dataset {spec.dataset!r}; known: {', '.join(sorted(DATASETS))}")
    else:
        try:
            make_dataset(spec.dataset, **spec.dataset_options)
        except DataFileError as error:
            problems.append(f"dataset_options.path: {error}")
        except ValueError as error:
            problems.append(str(error))
    term_sets = []
    for variant, vspec in spec.variant_specs().items():
        problems.extend(_check_variant(spec, variant, vspec))
        try:
            term_sets.append(set(variant_term_names(variant, vspec.options)))
        except (ValueError, TypeError):
            term_sets.append(set())
    terms = set.intersection(*term_sets) if term_sets else set()
    metric_values = {v for m in spec.evaluation.metrics if m in METRICS for v in METRICS[m].values}
    produced = terms | metric_values
    seen: set[str] = set()
    for i, target in enumerate(spec.objectives):
        if target.name not in produced:
            problems.append(
                f"objectives.{i}.name: {target.name!r} is neither a term of every variant nor a value of "
                f"evaluation.metrics (known: {', '.join(sorted(produced))})"
            )
        if target.name in seen:
            problems.append(f"objectives.{i}.name: {target.name!r} named twice")
        seen.add(target.name)
    if any(not 0 <= seed <= MAX_SEED for seed in spec.seeds):
        problems.append(f"seeds: each must be in [0, {MAX_SEED}]")
    pack_size = spec.training.pack_size
    if isinstance(pack_size, int) and pack_size > 1:
        for variant in spec.variant_specs():
            if not OBJECTIVES[variant].packable:
                problems.append(
                    f"training.pack_size: variant {variant!r} cannot be packed (it is not a single-pass "
                    "objective); set pack_size: 1"
                )
        if spec.search.early_stopping is not None:
            problems.append(
                "search.early_stopping: not with training.pack_size > 1 (a scheduler stops whole trials, "
                "and a pack's members are ranked separately)"
            )
    if spec.search.mode == "grid":
        problems.extend(_check_grid(spec))
    stopping = spec.search.early_stopping
    if stopping is not None:
        if spec.multi_objective:
            problems.append(
                "search.early_stopping: only for single-objective studies (a trial stopped for one training term "
                "may still belong on the Pareto front of the objectives)"
            )
        if stopping.metric not in terms:
            problems.append(
                f"search.early_stopping.metric: {stopping.metric!r} is not a training term of every variant "
                f"(known: {', '.join(sorted(terms))})"
            )
        if not spec.training.checkpoint_every:
            problems.append("search.early_stopping: needs training.checkpoint_every > 0 (trials report at checkpoints)")
    ray_storage = spec.storage.path
    if ray_storage is not None and "://" in ray_storage and not ray_storage.startswith(("s3://", "gs://", "file://")):
        problems.append(f"storage.path: a local folder or an s3://, gs:// or file:// URI, got {ray_storage!r}")
    if spec.storage.endpoint is not None and not (ray_storage or "").startswith("s3://"):
        problems.append("storage.endpoint: only for an s3:// storage.path")
    storage = spec.search.storage
    if storage is not None and storage not in ("sqlite", "memory") and "://" not in storage:
        problems.append(f"search.storage: must be 'sqlite', 'memory' or a database URL, got {storage!r}")
    if problems:
        raise SpecError("\n".join(problems))


def _check_variant(spec: StudySpec, variant: str, vspec: VariantSpec) -> list[str]:
    problems = []
    objective = OBJECTIVES[variant]
    weights_at = spec.field(variant, "weights")
    for name, weight in vspec.weights.items():
        where = f"{weights_at}.{name}"
        if name not in objective.weight_defaults:
            accepted = ", ".join(objective.weight_defaults) or "none"
            problems.append(f"{where}: variant {variant!r} takes no such weight (it takes: {accepted})")
            continue
        problems.extend(_check_weight(weight, where))
    try:
        make_objective(variant, {}, 2, options=vspec.options, latent_dim=spec.model.latent_dim)
    except (ValueError, TypeError) as error:
        message = str(error)
        if not message.startswith("variant_options"):
            message = f"variant_options: {message}"
        problems.append(message.replace("variant_options", spec.field(variant, "options"), 1))
    return problems


def _check_grid(spec: StudySpec) -> list[str]:
    problems = []
    for variant, vspec in spec.variant_specs().items():
        for name, weight in vspec.weights.items():
            where = f"{spec.field(variant, 'weights')}.{name}"
            if weight.choices is not None:
                continue
            if len(weight.families) > 1:
                problems.append(
                    f"{where}.schedule: grid mode cannot enumerate families; list whole schedules as choices"
                )
            for param, value in weight.params.items():
                if isinstance(value, Range):
                    problems.append(f"{where}.{param}: grid mode cannot enumerate a range; list the values as choices")
    return problems


def _check_weight(weight: WeightSpec, where: str) -> list[str]:
    problems = []
    for param, value in (weight.model_extra or {}).items():
        if isinstance(value, dict):  # a Range, validated here so that its errors name the weight
            try:
                Range.model_validate(value)
            except ValidationError as error:
                problems.extend(f"{where}.{param}.{_error_line(e)}" for e in error.errors())
    if problems:
        return problems
    if weight.choices is not None:
        if weight.params or weight.schedule != "constant":
            return [f"{where}: give either choices or a schedule with parameters, not both"]
        if not weight.choices:
            return [f"{where}.choices: lists no schedule"]
        for i, choice in enumerate(weight.choices):
            try:
                Schedule.from_config(choice, f"{where}.choices.{i}")
            except ScheduleError as error:
                problems.append(str(error))
        return problems
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
        lines = [_error_line(e) for e in error.errors()]
        raise SpecError(f"{source}: invalid study spec\n" + "\n".join(lines)) from None
    try:
        check_spec(spec)
    except SpecError as error:
        raise SpecError(f"{source}: invalid study spec\n{error}") from None
    return spec


def stored_spec(data: Any, source: str) -> StudySpec:
    """A study's resolved spec as its folder stores it (``spec.json``), validated like a new one.

    Folders written before ``evaluation.metric_options`` carry ``mig_points``/``mig_bins``
    (every resolved spec held them); they become MIG's options here, so old studies still
    resume, export and report.  Only a spec a user writes is refused for them.
    """
    evaluation = data.get("evaluation") if isinstance(data, dict) else None
    if isinstance(evaluation, dict) and any(name in evaluation for name in REPLACED_EVALUATION_FIELDS):
        evaluation = dict(evaluation)
        mig = {f"num_{name[4:]}": evaluation.pop(name) for name in REPLACED_EVALUATION_FIELDS if name in evaluation}
        if "mig" in evaluation.get("metrics", ["mig"]):
            options = dict(evaluation.get("metric_options") or {})
            options["mig"] = {**mig, **options.get("mig", {})}
            evaluation["metric_options"] = options
        data = {**data, "evaluation": evaluation}
    return parse_spec(data, source)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of the spec gives one key twice (PyYAML would silently keep the last)."""


class SpecLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise DuplicateKeyError(f"line {line}: key {key!r} given twice (first on line {first_line[key]})")
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def read_spec_text(path: str | Path) -> str:
    """A spec file's text; raises :class:`SpecError` naming the file if it cannot be read as UTF-8."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot read spec ({error.strerror})") from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML spec file."""
    text = read_spec_text(path)
    try:
        data = yaml.load(text, Loader=SpecLoader)  # SpecLoader is a SafeLoader
    except DuplicateKeyError as error:
        raise SpecError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML ({error})") from None
    return parse_spec(data, str(path))
