"""Analysis of a study's results table (pandas, pyarrow and matplotlib only)."""

from analysis.pareto import nondominated_ranks, pareto_front, pareto_mask, pareto_rank
from analysis.results import load_results

__all__ = ["load_results", "nondominated_ranks", "pareto_front", "pareto_mask", "pareto_rank"]
