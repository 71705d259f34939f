"""Analysis of a study's results table (pandas, pyarrow and matplotlib only)."""

from analysis.pareto import hypervolume, hypervolume_of, nondominated_ranks, pareto_front, pareto_mask, pareto_rank
from analysis.results import load_results

__all__ = [
    "hypervolume",
    "hypervolume_of",
    "load_results",
    "nondominated_ranks",
    "pareto_front",
    "pareto_mask",
    "pareto_rank",
]
