"""Feature engineering (the original design's Feature Engineering stage), pandas side. The PySpark twin is
glue_scripts/fraud_feature_eng.py; the parity tests hold the two equal to 1e-9.

Features, appended after the input columns in `engineered_feature_names` order:

- `hour_of_day` = (Time // 3600) % 24 (Python/numpy floor division semantics), `is_night` = hour
  in 0..5 (0/1);
- `log_amount` = log1p(Amount) (NaN for Amount <= -1, outside log1p's domain), `amount_zscore` =
  (Amount - mean) / std with the TRAINING split's mean and sample std (ddof=1);
- only when the frame has `customerId`, `merchant` and `timestamp`:
  `velocity_1h` / `velocity_24h` = how many of the customer's transactions fall in [t - 1 h, t] /
  [t - 24 h, t] by timestamp, itself and same-instant transactions included (a transaction without
  customer or timestamp counts only itself), and `merchant_risk_score` = the merchant's smoothed
  training fraud rate (fraud + a * prior) / (n + a); a merchant not seen in training, or none, gets
  the prior (the training fraud rate).

`fit_feature_stats(train)` returns a JSON-serialisable dict: it goes into the model package and is
what inference uses, so a daily batch is scaled with the training split's numbers, not its own.
Velocity is counted within the frame given: at inference that is the day's batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN
from fraud_assets.lib.metadata_keys import summary_fields

STATS_VERSION = 1
CUSTOMER_FIELDS: tuple[str, ...] = ("customerId", "merchant", "timestamp")
TIME_FEATURES: tuple[str, ...] = ("hour_of_day", "is_night")
AMOUNT_FEATURES: tuple[str, ...] = ("log_amount", "amount_zscore")
CUSTOMER_FEATURES: tuple[str, ...] = ("velocity_1h", "velocity_24h", "merchant_risk_score")

SECONDS_PER_HOUR = 3600.0
NIGHT_END_HOUR = 6  # hours 0..5 are night
MICROS_PER_HOUR = 3_600_000_000
VELOCITY_WINDOWS: dict[str, int] = {"velocity_1h": MICROS_PER_HOUR, "velocity_24h": 24 * MICROS_PER_HOUR}
# Pseudo-count of the merchant prior: a merchant with few training rows scores near the prior,
# one with many near its own rate.
DEFAULT_MERCHANT_SMOOTHING = 10.0


def engineered_feature_names(has_customer_fields: bool) -> list[str]:
    """The model's input columns: the raw features, then the engineered ones, in a fixed order."""
    names = [*FEATURE_COLUMNS, *TIME_FEATURES, *AMOUNT_FEATURES]
    if has_customer_fields:
        names += CUSTOMER_FEATURES
    return names


def has_customer_fields(frame: pd.DataFrame) -> bool:
    return all(c in frame.columns for c in CUSTOMER_FIELDS)


# --------------------------------------------------------------------------- fitting


def fit_feature_stats(train: pd.DataFrame, merchant_smoothing: float = DEFAULT_MERCHANT_SMOOTHING) -> dict[str, Any]:
    """The training split's numbers the features need, as plain JSON types."""
    if len(train) == 0:
        raise ValueError("cannot fit feature statistics on an empty training split")
    if not merchant_smoothing > 0:
        raise ValueError(f"merchant_smoothing must be > 0, got {merchant_smoothing}")
    amount = train["Amount"].to_numpy(dtype="float64")
    stats: dict[str, Any] = {
        "version": STATS_VERSION,
        "train_rows": int(len(train)),
        "amount_mean": float(np.mean(amount)),
        "amount_std": amount_scale(float(np.std(amount, ddof=1)) if len(amount) > 1 else float("nan")),
        "has_customer_fields": has_customer_fields(train),
    }
    if stats["has_customer_fields"]:
        labels = train[LABEL_COLUMN].to_numpy(dtype="int64")
        merchants = train["merchant"]
        known = merchants.notna().to_numpy()
        grouped = pd.DataFrame({"m": merchants[known].astype(str).to_numpy(), "y": labels[known]}).groupby("m", sort=True)["y"]
        counts = grouped.agg(["size", "sum"])
        stats.update(
            merchant_scores(
                int(labels.sum()),
                int(len(labels)),
                {m: (int(n), int(f)) for m, n, f in zip(counts.index, counts["size"], counts["sum"])},
                merchant_smoothing,
            )
        )
    return stats


def amount_scale(std: float) -> float:
    """The z-score divisor: a constant or single-row training amount has no spread, so scale by 1
    rather than divide by zero (the z-score is then just the centred amount)."""
    return std if math.isfinite(std) and std > 0 else 1.0


def merchant_scores(fraud: int, rows: int, per_merchant: dict[str, tuple[int, int]], smoothing: float) -> dict[str, Any]:
    """Smoothed fraud rate per merchant from integer counts (rows, frauds), so pandas and Spark,
    which count the same integers, produce bit-identical scores."""
    prior = fraud / rows
    return {
        "merchant_prior": prior,
        "merchant_smoothing": float(smoothing),
        "merchant_risk": {m: (f + smoothing * prior) / (n + smoothing) for m, (n, f) in sorted(per_merchant.items())},
    }


# --------------------------------------------------------------------------- applying


def add_features(frame: pd.DataFrame, stats: dict[str, Any]) -> pd.DataFrame:
    """A copy of `frame` with the engineered columns appended. Customer features are added when the
    frame carries customerId, merchant and timestamp (and then the stats must have merchant scores)."""
    out = frame.copy()
    time = frame["Time"].to_numpy(dtype="float64")
    amount = frame["Amount"].to_numpy(dtype="float64")
    hour = hour_of_day(time)
    out["hour_of_day"] = hour
    out["is_night"] = (hour < NIGHT_END_HOUR).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["log_amount"] = np.where(amount > -1.0, np.log1p(amount), np.nan)
    out["amount_zscore"] = (amount - float(stats["amount_mean"])) / float(stats["amount_std"])
    if has_customer_fields(frame):
        if "merchant_risk" not in stats:
            raise ValueError("the frame has customer fields but the feature stats were fitted without them")
        micros = timestamp_micros(frame["timestamp"])
        customer = frame["customerId"]
        for name, window in VELOCITY_WINDOWS.items():
            out[name] = velocity_counts(customer, micros, window)
        prior = float(stats["merchant_prior"])
        scores = stats["merchant_risk"]
        merchant = frame["merchant"]
        out["merchant_risk_score"] = np.fromiter(
            (prior if m is None or (isinstance(m, float) and math.isnan(m)) else scores.get(str(m), prior) for m in merchant.tolist()),
            dtype="float64",
            count=len(merchant),
        )
    return out


def hour_of_day(time: np.ndarray) -> np.ndarray:
    """(Time // 3600) % 24 as int64, with numpy's (= Python's) float floor division, which the
    Spark twin reproduces operation by operation."""
    return np.remainder(np.floor_divide(np.asarray(time, dtype="float64"), SECONDS_PER_HOUR), 24.0).astype("int64")


_NO_TIME = np.iinfo(np.int64).min  # NaT's int64 value


def timestamp_micros(values: pd.Series) -> np.ndarray:
    """Epoch microseconds (int64; NaT -> _NO_TIME) of a timestamp column: datetimes or ISO-8601
    strings, a time without offset read as UTC (as the Spark twin's UTC session does)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        ts = values if getattr(values.dt, "tz", None) is not None else values.dt.tz_localize("UTC")
    else:
        ts = pd.to_datetime(values, utc=True, format="ISO8601")
    naive_utc = ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    return naive_utc.to_numpy().view("int64").copy()


def velocity_counts(customer: pd.Series, micros: np.ndarray, window: int) -> np.ndarray:
    """Per row: the customer's transactions with timestamp in [t - window, t] (RANGE semantics, so
    same-instant transactions all count each other). Vectorised: timestamps become dense ranks,
    (customer, rank) one int64 key, and two binary searches per row count the window."""
    n = len(customer)
    result = np.ones(n, dtype="int64")
    codes, _ = pd.factorize(customer, use_na_sentinel=True)
    active = (codes >= 0) & (micros != _NO_TIME)
    if not active.any():
        return result
    ts = micros[active]
    group = codes[active].astype("int64")
    unique = np.unique(ts)
    rank = np.searchsorted(unique, ts, side="left")
    upper = np.searchsorted(unique, ts, side="right")  # ranks of values <= t
    lower = np.searchsorted(unique, ts - window, side="left")  # ranks of values < t - window
    base = group * (len(unique) + 1)  # < 2**63 while rows**2 < 9.2e18
    keys = np.sort(base + rank)
    result[active] = np.searchsorted(keys, base + upper, side="left") - np.searchsorted(keys, base + lower, side="left")
    return result


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
