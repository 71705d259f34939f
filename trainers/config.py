"""Configuration of one training run (plain dataclasses: trainers/ depends on torch and numpy only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trainers.metrics import METRICS
from trainers.precision import PRECISIONS

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class EvalConfig:
    """Held-out evaluation at the end of training.

    Every trial is scored on the same points: the held-out stream is seeded by
    ``seed``, not by the trial's seed, so differences between trials are not
    differences between evaluation samples.
    """

    seed: int = 0
    #: Images on which the final terms (``recon``, ``kl``, ...) are averaged.
    recon_points: int = 2048
    #: Points for MIG (disentanglement_lib: 10,000) and its bins per latent (20).
    mig_points: int = 10_000
    mig_bins: int = 20
    #: Inputs whose mean codes (and per-latent KL) are saved as ``codes.npz`` for
    #: UDR, the cross-seed model selection of Duan et al. (2020) (they used 1,000).
    udr_points: int = 1000
    #: Metrics to compute (names in ``trainers.metrics.METRICS``), with their defaults.
    metrics: list[str] = field(default_factory=lambda: ["mig"])


@dataclass
class TrainConfig:
    variant: str = "beta_vae"
    #: Schedule config per weight name, e.g. ``{"beta": {"schedule": "constant", "value": 4}}``.
    weights: dict[str, Any] = field(default_factory=dict)
    dataset: str = "dsprites"
    #: Options of the data set, e.g. ``{"path": ".../3dshapes.h5"}`` for a file-backed one.
    dataset_options: dict[str, Any] = field(default_factory=dict)
    #: Structural options of the variant (latent groups, discrete sizes, ...).
    variant_options: dict[str, Any] = field(default_factory=dict)
    latent_dim: int = 10
    kernels: str = "code"
    #: Estimator of log q(z) for the decomposition: auto (the variant's), mss, mws, hfvae.
    estimator: str = "auto"
    steps: int = 1000
    batch_size: int = 64
    #: Adam as in disentanglement_lib: lr 1e-4, betas (0.9, 0.999), eps 1e-8.
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    #: Compile the networks (``torch.compile``; a pack compiles its whole forward step).
    compile: bool = False
    #: Intra-op threads for torch; 0 leaves torch's default.
    num_threads: int = 0
    #: Terms are averaged over this many steps and reported.
    log_every: int = 10
    #: Report a resumable checkpoint every N steps (0: never); a multiple of log_every.
    checkpoint_every: int = 0
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        positive = ("steps", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.latent_dim < 2:
            raise ValueError(f"latent_dim: must be >= 2 (MIG needs a gap), got {self.latent_dim}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size: must be >= 2 (the TC estimators need pairs), got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"device: must be one of {DEVICES} or cuda:N, got {self.device!r}")
        if self.checkpoint_every < 0 or (self.checkpoint_every and self.checkpoint_every % self.log_every):
            raise ValueError(
                f"checkpoint_every: must be 0 or a multiple of log_every ({self.log_every}), "
                f"got {self.checkpoint_every}"
            )
        for name in ("recon_points", "mig_points", "mig_bins"):
            if getattr(self.eval, name) < 2:
                raise ValueError(f"eval.{name}: must be >= 2, got {getattr(self.eval, name)}")
        unknown = [m for m in self.eval.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"eval.metrics: unknown metric {unknown[0]!r}; known: {', '.join(METRICS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a training option")
        data = dict(data)
        data["eval"] = EvalConfig(**data.get("eval", {}))
        return cls(**data)
