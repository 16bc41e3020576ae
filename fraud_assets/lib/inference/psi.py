"""Population stability index (PSI): how far a sample's distribution moved from a reference's.
Drift monitoring compares the day's scores and features with the model's training reference; the
model package stores that reference at the precision `comparable` gives both sides."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

# Both sides of a PSI at one precision: the reference is stored rounded, the day arrives as float32
# model inputs or as the endpoint's text. Compared unrounded, values that are equal straddle a bin
# edge placed on them, and a calm day reads as a shift.
PSI_DECIMALS = 6
# Floor for an empty bin's share: ln(a/e) is infinite at 0, and a floor keeps PSI finite and >= 0.
PSI_EPSILON = 1e-4


def comparable(values) -> np.ndarray:
    """`values` as PSI compares them: through float32 (what the model sees and the endpoint
    returns), then rounded to PSI_DECIMALS; equal inputs on either side stay equal."""
    return np.round(np.asarray(values, dtype=np.float32).astype(np.float64), PSI_DECIMALS)


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """PSI of `actual` against `expected`, both first made `comparable`: bins at the deciles (for
    bins=10) of `expected` (repeated edges merged, outer bins open-ended; every edge a value both
    sides can hold exactly, so a tie is never split), plus one bin for missing values (NaN: a
    history feature of a transaction without customer; more of them is a shift too), shares
    floored at `PSI_EPSILON`, Σ (a − e)·ln(a / e). Always >= 0, and 0 for identical samples.

    The usual reading: < 0.1 stable, 0.1–0.25 a moderate shift worth a look, > 0.25 a significant
    shift (retrain or investigate the data)."""
    expected = _sample(expected, "expected")
    actual = _sample(actual, "actual")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, not {bins}")
    present_expected = comparable(expected[~np.isnan(expected)])
    present_actual = comparable(actual[~np.isnan(actual)])
    quantiles = np.quantile(present_expected, np.linspace(0.0, 1.0, bins + 1)[1:-1]) if len(present_expected) else []
    edges = np.unique(quantiles)
    # Bin i holds values in (edges[i-1], edges[i]]; below the first edge and above the last are
    # bins of their own, so values outside the expected range still count. The last bin: missing.
    expected_counts = _counts(edges, present_expected, len(expected))
    actual_counts = _counts(edges, present_actual, len(actual))
    return histogram_psi(expected_counts, actual_counts)


def _counts(edges: np.ndarray, present: np.ndarray, total: int) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return np.append(counts, total - len(present))


def histogram_psi(expected_counts: Sequence[float], actual_counts: Sequence[float]) -> float:
    """PSI of two histograms on the same bins (e.g. two days' `scoreHistogram` counts)."""
    e = np.asarray(expected_counts, dtype=np.float64)
    a = np.asarray(actual_counts, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"histograms differ in shape: {e.shape} vs {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0 or (e < 0).any() or (a < 0).any():
        raise ValueError("PSI needs two non-empty histograms of non-negative counts")
    e = np.maximum(e / e.sum(), PSI_EPSILON)
    a = np.maximum(a / a.sum(), PSI_EPSILON)
    # Each term is >= 0: (a − e) and ln(a / e) always share a sign.
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(train: pd.DataFrame, today: pd.DataFrame, features: Sequence[str]) -> dict[str, float]:
    """PSI per feature of today's transactions against the training reference."""
    missing = [f for f in features if f not in train.columns or f not in today.columns]
    if missing:
        raise KeyError(f"features {missing} missing from the training reference or today's transactions")
    return {f: population_stability_index(train[f].to_numpy(dtype=np.float64), today[f].to_numpy(dtype=np.float64)) for f in features}


def _sample(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if not len(values):
        raise ValueError(f"PSI needs a non-empty {name} sample")
    if np.isinf(values).any():
        raise ValueError(f"the {name} sample holds infinite values")
    return values
