"""UDR, the Unsupervised Disentanglement Ranking of Duan et al. (2020), "Unsupervised
model selection for variational disentangled representation learning" (ICLR).

The premise: a disentangled representation is found again, up to permutation and
sign, by every seed of a configuration that disentangles; entangled ones differ by
arbitrary rotations.  For two models a, b encoding the same N inputs:

    R[i, j] = |Spearman ρ(z^a_i, z^b_j)|   over the *active* latents only
              (mean KL(q(z_i|x) ‖ p(z_i)) > 0.01; all latents when no KL is known)

    UDR(a, b) = ½ ( mean_j  max_i R[i, j]² / Σ_i R[i, j]
                  + mean_i  max_j R[i, j]² / Σ_j R[i, j] )

with 0/0 read as 0, as in the authors' implementation in disentanglement_lib
(``relative_strength_disentanglement``; the paper's eq. 3 normalises by
d_a + d_b instead of averaging the two sides, which differs only when the two
models have different numbers of active latents).  A pair in which either model has
no active latent scores 0.  A model's UDR is the median of UDR(a, b) over the other
seeds b of its configuration (the paper's UDR_S; the Lasso variant UDR_L needs a
Lasso fit and is not provided).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

KL_ACTIVE = 0.01


def _ranks(x: np.ndarray) -> np.ndarray:
    """Column-wise ranks, ties averaged (as in Spearman's ρ)."""
    return pd.DataFrame(x).rank(axis=0, method="average").to_numpy()


def spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|ρ|`` between every column of ``a`` (N × d_a) and of ``b`` (N × d_b); a constant
    column correlates 0 with everything."""
    ra, rb = _ranks(a), _ranks(b)
    ra = ra - ra.mean(0)
    rb = rb - rb.mean(0)
    norm = np.sqrt((ra**2).sum(0))[:, None] * np.sqrt((rb**2).sum(0))[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra.T @ rb) / norm
    return np.abs(np.nan_to_num(rho, nan=0.0, posinf=0.0, neginf=0.0))


def relative_strength(r: np.ndarray) -> float:
    """½ (mean over columns + mean over rows) of ``max² / sum`` of the correlation matrix."""
    if r.size == 0:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = np.nan_to_num(r.max(0) ** 2 / r.sum(0), nan=0.0)
        rows = np.nan_to_num(r.max(1) ** 2 / r.sum(1), nan=0.0)
    return float((columns.mean() + rows.mean()) / 2)


def active_latents(kl: np.ndarray | None, dim: int, threshold: float = KL_ACTIVE) -> np.ndarray:
    return np.ones(dim, bool) if kl is None else np.asarray(kl) > threshold


def udr_pair(
    codes_a: np.ndarray,
    codes_b: np.ndarray,
    kl_a: np.ndarray | None = None,
    kl_b: np.ndarray | None = None,
    threshold: float = KL_ACTIVE,
) -> float:
    """UDR(a, b) of two models' codes of the same inputs (see the module docstring)."""
    if codes_a.shape[0] != codes_b.shape[0]:
        raise ValueError(f"UDR needs codes of the same inputs: {codes_a.shape[0]} vs {codes_b.shape[0]} rows")
    mask_a = active_latents(kl_a, codes_a.shape[1], threshold)
    mask_b = active_latents(kl_b, codes_b.shape[1], threshold)
    if not mask_a.any() or not mask_b.any():
        return 0.0
    return relative_strength(spearman_matrix(codes_a[:, mask_a], codes_b[:, mask_b]))


def udr_scores(
    codes: Sequence[np.ndarray], kls: Sequence[np.ndarray | None] | None = None, threshold: float = KL_ACTIVE
) -> np.ndarray:
    """Each model's UDR: the median of its pairwise scores with the others (NaN alone)."""
    n = len(codes)
    kls = list(kls) if kls is not None else [None] * n
    pairwise = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(i + 1, n):
            pairwise[i, j] = pairwise[j, i] = udr_pair(codes[i], codes[j], kls[i], kls[j], threshold)
    if n < 2:
        return np.full(n, np.nan)
    return np.array([np.median(np.delete(pairwise[i], i)) for i in range(n)])


def load_codes(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``(mean codes, per-latent KL or None)`` from a trial's ``codes.npz``."""
    with np.load(path) as data:
        return data["mean"], (data["kl"] if "kl" in data.files else None)


def configuration_columns(df: pd.DataFrame) -> list[str]:
    """What identifies a configuration: the variant and every ``<weight>.<param>``."""
    return [c for c in df.columns if c == "variant" or ("." in c and not c.startswith("metric"))]


def udr_by_configuration(
    df: pd.DataFrame, codes_column: str = "codes", by: Sequence[str] | None = None, root: str | Path | None = None
) -> pd.Series:
    """UDR of every trial among the trials of the same configuration.

    Args:
        df: One row per trial; ``codes_column`` names each trial's ``codes.npz`` (null: none).
        codes_column: The column of codes files.
        by: The columns that identify a configuration; default :func:`configuration_columns`,
            i.e. the variant and every ``<weight>.<param>`` (all but the seed).
        root: The folder that relative codes paths are relative to (a study folder records
            them so); default the working directory.

    Returns:
        A float Series ``udr`` on ``df``'s index; NaN for rows without codes or alone in
        their configuration.
    """
    out = pd.Series(np.nan, index=df.index, name="udr", dtype=float)
    if codes_column not in df.columns:
        return out
    have = df[df[codes_column].notna() & (df[codes_column].astype(str) != "")]
    keys = list(by) if by is not None else configuration_columns(df)
    if have.empty or not keys:
        return out
    # NaN keys (a parameter a family does not have) must still group together.
    grouped = pd.Series("", index=have.index, dtype=object)
    for key in keys:  # column by column: a row-wise join takes seconds on 10,000 trials
        grouped = grouped + "|" + have[key].astype(object).map(str)
    for _, index in have.groupby(grouped).groups.items():
        if len(index) < 2:
            continue
        loaded = [load_codes(Path(root or ".") / have.at[i, codes_column]) for i in index]
        out.loc[index] = udr_scores([c for c, _ in loaded], [k for _, k in loaded])
    return out
