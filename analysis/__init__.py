"""Analysis of a study's results table (pandas, pyarrow and matplotlib only)."""

from analysis.pareto import (
    front_mask,
    hypervolume,
    hypervolume_of,
    nondominated_ranks,
    pareto_front,
    pareto_mask,
    pareto_rank,
)
from analysis.results import load_results
from analysis.summaries import metric_distributions, rank_correlations, variance_explained

__all__ = [
    "front_mask",
    "hypervolume",
    "hypervolume_of",
    "load_results",
    "metric_distributions",
    "nondominated_ranks",
    "pareto_front",
    "pareto_mask",
    "pareto_rank",
    "rank_correlations",
    "variance_explained",
]
