"""Feature engineering (the original design's Feature Engineering stage), pandas side. The PySpark twin is
glue_scripts/fraud_feature_eng.py; the parity tests hold the two equal to 1e-9.

Features, appended after the input columns in `engineered_feature_names` order:

- `hour_of_day` = (Time // 3600) % 24 (Python/numpy floor division semantics), `is_night` = hour
  in 0..5 (0/1);
- `log_amount` = log1p(Amount) (NaN for Amount <= -1, outside log1p's domain), `amount_zscore` =
  (Amount - mean) / std with the TRAINING split's mean and sample std (ddof=1).

Data with `customerId`, `merchant` and `timestamp` also feeds the model the history features
(lib/features/history.py): they need every row's past, not one split or one day's batch, so they
are computed where that past is (the whole data set, the feature store), not here; the model reads
them as columns already present.

`fit_feature_stats(train)` returns a JSON-serialisable dict: it goes into the model package and is
what inference uses, so a daily batch is scaled with the training split's numbers, not its own.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from fraud_assets.lib.config import CUSTOMER_FIELDS, FEATURE_COLUMNS
from fraud_assets.lib.features.history import HISTORY_FEATURES
from fraud_assets.lib.metadata_keys import summary_fields

STATS_VERSION = 1
TIME_FEATURES: tuple[str, ...] = ("hour_of_day", "is_night")
AMOUNT_FEATURES: tuple[str, ...] = ("log_amount", "amount_zscore")

SECONDS_PER_HOUR = 3600.0
NIGHT_END_HOUR = 6  # hours 0..5 are night


def engineered_feature_names(has_customer_fields: bool) -> list[str]:
    """The model's input columns: the raw features, then the engineered ones, then (for data with
    customers and terminals) the history features, in a fixed order."""
    names = [*FEATURE_COLUMNS, *TIME_FEATURES, *AMOUNT_FEATURES]
    if has_customer_fields:
        names += HISTORY_FEATURES
    return names


def has_customer_fields(frame: pd.DataFrame) -> bool:
    return all(c in frame.columns for c in CUSTOMER_FIELDS)


# --------------------------------------------------------------------------- fitting


def fit_feature_stats(train: pd.DataFrame) -> dict[str, Any]:
    """The training split's numbers the features need, as plain JSON types."""
    if len(train) == 0:
        raise ValueError("cannot fit feature statistics on an empty training split")
    amount = train["Amount"].to_numpy(dtype="float64")
    return {
        "version": STATS_VERSION,
        "train_rows": int(len(train)),
        "amount_mean": float(np.mean(amount)),
        "amount_std": amount_scale(float(np.std(amount, ddof=1)) if len(amount) > 1 else float("nan")),
        "has_customer_fields": has_customer_fields(train),
    }


def amount_scale(std: float) -> float:
    """The z-score divisor: a constant or single-row training amount has no spread, so scale by 1
    rather than divide by zero (the z-score is then just the centred amount)."""
    return std if math.isfinite(std) and std > 0 else 1.0


# --------------------------------------------------------------------------- applying


def add_features(frame: pd.DataFrame, stats: dict[str, Any]) -> pd.DataFrame:
    """A copy of `frame` with the time and amount features appended."""
    out = frame.copy()
    time = frame["Time"].to_numpy(dtype="float64")
    amount = frame["Amount"].to_numpy(dtype="float64")
    hour = hour_of_day(time)
    out["hour_of_day"] = hour
    out["is_night"] = (hour < NIGHT_END_HOUR).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["log_amount"] = np.where(amount > -1.0, np.log1p(amount), np.nan)
    out["amount_zscore"] = (amount - float(stats["amount_mean"])) / float(stats["amount_std"])
    return out


def hour_of_day(time: np.ndarray) -> np.ndarray:
    """(Time // 3600) % 24 as int64, with numpy's (= Python's) float floor division, which the
    Spark twin reproduces operation by operation."""
    return np.remainder(np.floor_divide(np.asarray(time, dtype="float64"), SECONDS_PER_HOUR), 24.0).astype("int64")


@dataclasses.dataclass(frozen=True)
class EngineeredFeatures:
    """engineered_features' summary, which fraud_model reads: whether the stage engineered
    features, the model's input columns and the training split's statistics (None when off)."""

    enabled: bool
    feature_names: list[str]
    feature_stats: dict[str, Any] | None

    def to_summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> EngineeredFeatures:
        return cls(**summary_fields(cls, summary, "engineered_features"))
