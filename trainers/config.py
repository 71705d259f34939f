"""Configuration of one training run (stdlib dataclasses: trainers/ depends on torch and numpy only).

Each dataclass checks itself when it is made (``__post_init__``) and raises
``ValueError("<field>: <problem>")``; this is the only place these fields are
checked.  The study spec validates its ``training`` and ``evaluation`` sections
into :class:`TrainingOptions` and :class:`EvalConfig` (through pydantic), so a bad
value reaches the user as ``training.steps: must be >= 1, got 0``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trainers.metrics import METRICS
from trainers.models import KERNEL_CHOICES, Likelihood, make_likelihood
from trainers.objectives.gaussian import ESTIMATORS
from trainers.precision import PRECISIONS

DEVICES = ("auto", "cpu", "cuda")

#: Upper bounds that catch a typo (10**12 steps) before it becomes a run that never ends.
MAX_STEPS, MAX_BATCH, MAX_POINTS, MAX_LR = 10**9, 2**16, 10**7, 1e3
#: The largest seed (a trial's or the evaluation's): the results parquet stores seeds as int64,
#: and the streams are derived through numpy's SeedSequence, which takes any size.
MAX_SEED = 2**63 - 1


def _check_int(owner: Any, name: str, low: int, high: int) -> None:
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: must be in [{low}, {high}], got {value}")


@dataclass
class TrainingOptions:
    """How a model trains: every field of the spec's ``training`` section but the study's packing."""

    #: Optimisation steps per trial (disentanglement_lib trains 300,000).
    steps: int = 1000
    #: Images per step; at least 2 (the TC estimators need pairs).
    batch_size: int = 64
    #: Adam as in disentanglement_lib: lr 1e-4, betas (0.9, 0.999), eps 1e-8.
    lr: float = 1e-4
    #: ``auto`` (bf16 where the device computes it natively, else fp32: trainers.precision),
    #: ``fp32``, or ``bf16`` autocast of the networks (latents and terms stay float32).
    precision: str = "auto"
    #: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    device: str = "auto"
    #: Estimator of log q(z) for the decomposition: auto (the variant's), mss, mws, hfvae.
    estimator: str = "auto"
    #: Terms are averaged over this many steps and reported.
    log_every: int = 10
    #: Report a resumable checkpoint every N steps; a multiple of log_every.  0: none but
    #: the one a Ctrl+C or ``stop`` writes, so a crashed trial or a lost node starts again at step 0.
    checkpoint_every: int = 0
    #: Compile the networks (``torch.compile``; a pack compiles its whole forward step).
    compile: bool = False

    def __post_init__(self) -> None:
        _check_int(self, "steps", 1, MAX_STEPS)
        # The TC estimators need pairs.
        _check_int(self, "batch_size", 2, MAX_BATCH)
        _check_int(self, "log_every", 1, MAX_STEPS)
        _check_int(self, "checkpoint_every", 0, MAX_STEPS)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr <= MAX_LR:
            raise ValueError(f"lr: must be in (0, {MAX_LR:g}], got {self.lr!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.estimator not in ("auto", *ESTIMATORS):
            raise ValueError(f"estimator: must be auto or one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.checkpoint_every % self.log_every:
            multiple = f"a multiple of log_every ({self.log_every})"
            raise ValueError(f"checkpoint_every: must be 0 or {multiple}, got {self.checkpoint_every}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile: must be true or false, got {self.compile!r}")


@dataclass
class EvalConfig:
    """Held-out evaluation at the end of training.

    Every trial is scored on the same points: the held-out stream is seeded by
    ``seed``, not by the trial's seed, so differences between trials are not
    differences between evaluation samples.
    """

    #: Seed of the held-out stream (the same points for every trial).
    seed: int = 0
    #: Images on which the final terms (``recon``, ``kl``, ...) are averaged.
    recon_points: int = 2048
    #: Inputs whose mean codes (and per-latent KL) are saved as ``codes.npz`` for
    #: UDR, the cross-seed model selection of Duan et al. (2020) (they used 1,000).
    udr_points: int = 1000
    #: Metrics to compute (names in ``trainers.metrics.METRICS``).
    metrics: list[str] = field(default_factory=lambda: ["mig"])
    #: Options of each metric by name, e.g. ``{"mig": {"num_points": 10000, "num_bins": 20}}``
    #: (``Metric.options`` lists each metric's options and defaults: disentanglement_lib's).
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Also write the traversals as an animation (``traversals.gif``, ≈ 0.8 MB a trial at
    #: 10 latents, a third of a trial's disk); the PNG grid is always written.
    traversal_gif: bool = False

    def __post_init__(self) -> None:
        _check_int(self, "seed", 0, MAX_SEED)
        if not isinstance(self.traversal_gif, bool):
            raise ValueError(f"traversal_gif: must be true or false, got {self.traversal_gif!r}")
        _check_int(self, "recon_points", 2, MAX_POINTS)
        _check_int(self, "udr_points", 2, MAX_POINTS)
        for name in self.metrics:
            if name not in METRICS:
                raise ValueError(f"metrics: unknown metric {name!r}; known: {', '.join(METRICS)}")
        for name, options in self.metric_options.items():
            where = f"metric_options.{name}"
            if name not in METRICS:
                raise ValueError(f"{where}: unknown metric {name!r}; known: {', '.join(METRICS)}")
            if name not in self.metrics:
                raise ValueError(f"{where}: {name} is not in metrics ({', '.join(self.metrics) or 'none'})")
            known = METRICS[name].options
            for option, value in options.items():
                if option not in known:
                    raise ValueError(f"{where}.{option}: not an option of {name} (it takes: {', '.join(known)})")
                default = known[option]
                if isinstance(default, bool) or isinstance(value, bool):
                    fits = isinstance(value, bool) and isinstance(default, bool)
                elif isinstance(default, (int, float)):
                    fits = isinstance(value, (int, float)) and (isinstance(value, int) or isinstance(default, float))
                else:
                    fits = isinstance(value, type(default))
                if not fits:
                    raise ValueError(f"{where}.{option}: must be like its default {default!r}, got {value!r}")
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                    raise ValueError(f"{where}.{option}: must be > 0, got {value}")


@dataclass
class ModelOptions:
    """The network: every field of the spec's ``model`` section."""

    #: Latent dimensions (at least 2: MIG needs a gap between the two most informative).
    latent_dim: int = 10
    #: Convolution kernels of the encoder/decoder: ``code`` or ``paper`` (trainers.models).
    kernels: str = "code"
    #: Decoder likelihood p(x|z): ``bernoulli`` or ``gaussian`` (trainers.models.likelihood);
    #: ``recon`` is its negative log-likelihood in nats per image either way.
    decoder: str = "bernoulli"
    #: The Gaussian decoder's σ (its start value when learned); gaussian only.
    decoder_sigma: float = 0.1
    #: Learn the Gaussian decoder's σ (one log σ parameter); gaussian only.
    decoder_sigma_learned: bool = False

    def __post_init__(self) -> None:
        _check_int(self, "latent_dim", 2, 4096)
        if self.kernels not in KERNEL_CHOICES:
            raise ValueError(f"kernels: must be one of {', '.join(KERNEL_CHOICES)}, got {self.kernels!r}")
        self.likelihood()  # checks decoder, decoder_sigma and decoder_sigma_learned, naming the field
        if self.decoder != "gaussian" and self.decoder_sigma != ModelOptions.decoder_sigma:
            raise ValueError(f"decoder_sigma: only a gaussian decoder has a σ (decoder is {self.decoder!r})")

    def likelihood(self) -> Likelihood:
        """The decoder likelihood these options describe."""
        return make_likelihood(self.decoder, self.decoder_sigma, self.decoder_sigma_learned)


@dataclass
class TrainConfig(TrainingOptions, ModelOptions):
    """One training run: the training and model options plus what the trial trains."""

    variant: str = "beta_vae"
    #: Schedule config per weight name, e.g. ``{"beta": {"schedule": "constant", "value": 4}}``.
    weights: dict[str, Any] = field(default_factory=dict)
    dataset: str = "dsprites"
    #: Options of the data set, e.g. ``{"path": ".../3dshapes.h5"}`` for a file-backed one.
    dataset_options: dict[str, Any] = field(default_factory=dict)
    #: Structural options of the variant (latent groups, discrete sizes, ...).
    variant_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    #: Intra-op threads for torch; 0 leaves torch's default.
    num_threads: int = 0
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        TrainingOptions.__post_init__(self)
        ModelOptions.__post_init__(self)
        _check_int(self, "seed", 0, MAX_SEED)
        _check_int(self, "num_threads", 0, 4096)
        if isinstance(self.eval, dict):
            self.eval = EvalConfig(**self.eval)

    def validate(self) -> None:
        """Check the config again (after fields were changed in place); raises ``ValueError``."""
        self.__post_init__()

    @classmethod
    def from_options(cls, training: TrainingOptions, model: ModelOptions | None = None, **run: Any) -> TrainConfig:
        """The config of a run with ``training``'s and ``model``'s options (every field, none copied by hand)."""
        options = {f.name: getattr(training, f.name) for f in fields(TrainingOptions)}
        if model is not None:
            options.update({f.name: getattr(model, f.name) for f in fields(ModelOptions)})
        return cls(**options, **run)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a training option")
        return cls(**data)  # __post_init__ makes ``eval`` an EvalConfig
