"""Disentanglement metrics, registered by name.

Each entry is a :class:`Metric`: a function ``(representation, data, seed,
**options) -> {name: value}`` and the kind of representation it takes — ``mean``
(the posterior mean, μ(x)), ``sampled`` (z ~ q(z|x)) or ``posterior`` (x ↦ (μ, log σ²)).
The pure cores (``mig_from_codes``, ``sap_from_codes``, ...) take arrays.  A metric
with ``details`` also fills a ``details=`` dict with the arrays its values come from
(MIG: the latent × factor mutual-information matrix), which the evaluation keeps.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainers.metrics.beta_vae_score import compute_beta_vae_score
from trainers.metrics.dci import compute_dci, compute_dci_fast
from trainers.metrics.factor_vae_score import compute_factor_vae_score
from trainers.metrics.irs import compute_irs
from trainers.metrics.mig import MigDetails, compute_mig, mig_details, mig_from_codes
from trainers.metrics.mig_sampled import compute_mig_sampled
from trainers.metrics.modularity_explicitness import compute_modularity_explicitness
from trainers.metrics.sap import compute_sap
from trainers.metrics.unsupervised import compute_active_units, compute_unsupervised

#: Arguments of a metric's compute function that are not options a spec sets.
_NOT_OPTIONS = ("representation", "posterior", "data", "seed", "device", "details")


@dataclass(frozen=True)
class Metric:
    compute: Callable[..., dict[str, float]]
    representation: str  # "mean", "sampled" or "posterior"
    #: The names of the values it returns.
    values: tuple[str, ...]
    #: Where its options are declared, if not in ``compute``'s signature (a wrapper's ``**options``).
    options_of: Callable[..., dict[str, float]] | None = None
    #: Options of ``options_of`` the wrapper sets itself.
    fixed: tuple[str, ...] = ()
    #: ``compute`` takes ``details=`` (a dict it fills with the arrays behind its values).
    details: bool = False

    @property
    def options(self) -> dict[str, Any]:
        """Every option a spec may set (``evaluation.metric_options.<metric>``) with its default."""
        signature = inspect.signature(self.options_of or self.compute)
        return {
            name: p.default
            for name, p in signature.parameters.items()
            if name not in _NOT_OPTIONS and name not in self.fixed and p.kind is p.POSITIONAL_OR_KEYWORD
        }


METRICS: dict[str, Metric] = {
    "mig": Metric(compute_mig, "mean", ("mig",), details=True),
    "mig_sampled": Metric(compute_mig_sampled, "posterior", ("mig_sampled",)),
    "beta_vae_score": Metric(compute_beta_vae_score, "mean", ("beta_vae_score", "beta_vae_score_train")),
    "factor_vae_score": Metric(
        compute_factor_vae_score, "mean", ("factor_vae_score", "factor_vae_score_train", "factor_vae_active_dims")
    ),
    "dci": Metric(
        compute_dci,
        "mean",
        ("dci_disentanglement", "dci_completeness", "dci_informativeness", "dci_informativeness_train"),
    ),
    "dci_fast": Metric(
        compute_dci_fast,
        "mean",
        (
            "dci_disentanglement_fast",
            "dci_completeness_fast",
            "dci_informativeness_fast",
            "dci_informativeness_train_fast",
        ),
        options_of=compute_dci,
        fixed=("importance",),
    ),
    "sap": Metric(compute_sap, "mean", ("sap_discrete", "sap_continuous")),
    "modularity_explicitness": Metric(
        compute_modularity_explicitness, "mean", ("modularity", "explicitness", "explicitness_train")
    ),
    "irs": Metric(compute_irs, "mean", ("irs", "irs_active_dims")),
    "unsupervised": Metric(
        compute_unsupervised,
        "sampled",
        (
            "gaussian_total_correlation",
            "gaussian_wasserstein_correlation",
            "gaussian_wasserstein_correlation_norm",
            "mutual_info_score",
        ),
    ),
    "active_units": Metric(compute_active_units, "mean", ("active_units",)),
}

#: Every value name a metric can produce (objectives may name any of these).
METRIC_VALUES: frozenset[str] = frozenset(v for m in METRICS.values() for v in m.values)

__all__ = ["METRICS", "METRIC_VALUES", "Metric", "MigDetails", "compute_mig", "mig_details", "mig_from_codes"]
