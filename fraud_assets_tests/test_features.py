"""Feature engineering (pandas side): definitions checked against brute force, invariants by hypothesis."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_COLUMNS
from fraud_assets.lib.features.history import HISTORY_FEATURES
from fraud_assets.lib.training.features import add_features, engineered_feature_names, fit_feature_stats, hour_of_day

BASE = pd.Timestamp("2026-01-15T00:00:00Z")


def raw_frame(amounts, times=None, labels=None) -> pd.DataFrame:
    n = len(amounts)
    data = {c: np.zeros(n) for c in FEATURE_COLUMNS}
    data["Time"] = np.asarray(times if times is not None else np.arange(n) * 100.0, dtype="float64")
    data["Amount"] = np.asarray(amounts, dtype="float64")
    data[LABEL_COLUMN] = np.asarray(labels if labels is not None else np.zeros(n), dtype="int64")
    return pd.DataFrame(data, columns=list(RAW_COLUMNS))


@st.composite
def customer_frames(draw, min_rows: int = 1, max_rows: int = 40):
    """Small frames that also carry customers, merchants and timestamps (some missing)."""
    n = draw(st.integers(min_rows, max_rows))
    offsets = draw(st.lists(st.integers(0, 30 * 3600), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    amounts = draw(st.lists(st.floats(0, 5000, allow_nan=False), min_size=n, max_size=n))
    frame = raw_frame(amounts, times=offsets, labels=labels)
    frame["customerId"] = pd.Series(draw(st.lists(st.sampled_from(["c1", "c2", None]), min_size=n, max_size=n)), dtype="object")
    frame["merchant"] = pd.Series(draw(st.lists(st.sampled_from(["m1", "m2", None]), min_size=n, max_size=n)), dtype="object")
    frame["timestamp"] = pd.Series([BASE + pd.Timedelta(seconds=o) for o in offsets], dtype="datetime64[us, UTC]")
    return frame


def test_feature_names_fixed_order():
    base = engineered_feature_names(False)
    assert base[: len(FEATURE_COLUMNS)] == list(FEATURE_COLUMNS)
    assert base[len(FEATURE_COLUMNS) :] == ["hour_of_day", "is_night", "log_amount", "amount_zscore"]
    assert engineered_feature_names(True) == base + list(HISTORY_FEATURES)


def test_kaggle_schema_gets_time_and_amount_features_only():
    frame = raw_frame([0.0, 10.0, 100.0], times=[0.0, 3 * 3600 + 5, 23 * 3600 + 3599.5])
    stats = fit_feature_stats(frame)
    out = add_features(frame, stats)
    assert list(out.columns) == list(RAW_COLUMNS) + engineered_feature_names(False)[len(FEATURE_COLUMNS) :]
    assert out["hour_of_day"].tolist() == [0, 3, 23]
    assert out["is_night"].tolist() == [1, 1, 0]
    assert out["log_amount"].tolist() == [0.0, math.log1p(10.0), math.log1p(100.0)]
    assert not stats["has_customer_fields"]
    assert list(frame.columns) == list(RAW_COLUMNS)  # the input is not modified


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(-1e7, 1e7, allow_nan=False) | st.sampled_from([3600.0 * k + d for k in range(-3, 30) for d in (-1e-9, 0.0, 1e-9)]),
        min_size=1,
        max_size=30,
    )
)
def test_hour_of_day_is_python_floor_division(times):
    got = hour_of_day(np.array(times))
    assert got.tolist() == [int((t // 3600) % 24) for t in times]
    assert all(0 <= h <= 23 for h in got)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e5, allow_nan=False), min_size=2, max_size=200))
def test_training_zscore_is_standardised(amounts):
    train = raw_frame(amounts)
    stats = fit_feature_stats(train)
    z = add_features(train, stats)["amount_zscore"]
    if np.std(amounts, ddof=1) > 1e-6 * max(1.0, max(amounts)):
        assert abs(z.mean()) < 1e-9 * max(1.0, abs(stats["amount_mean"]) / stats["amount_std"])
        assert z.std(ddof=1) == pytest.approx(1.0, rel=1e-9)
    assert math.isfinite(stats["amount_std"]) and stats["amount_std"] > 0


def test_constant_or_single_amount_does_not_divide_by_zero():
    for amounts in ([5.0], [5.0, 5.0, 5.0]):
        stats = fit_feature_stats(raw_frame(amounts))
        assert stats["amount_std"] == 1.0
        assert add_features(raw_frame(amounts), stats)["amount_zscore"].tolist() == [0.0] * len(amounts)
    with pytest.raises(ValueError, match="empty"):
        fit_feature_stats(raw_frame([]))


@settings(max_examples=30, deadline=None)
@given(customer_frames(min_rows=2))
def test_stats_are_json_and_round_trip(train):
    stats = fit_feature_stats(train)
    again = json.loads(json.dumps(stats, allow_nan=False))
    assert again == stats
    pd.testing.assert_frame_equal(add_features(train, again), add_features(train, stats))


def test_customer_fields_pass_through_without_features():
    """History features need the rows' past (lib/features/history.py); add_features adds the time
    and amount features only, whatever else the frame carries."""
    frame = raw_frame([1.0, 2.0]).assign(customerId=["a", None], merchant=["m", "m"], timestamp=pd.Timestamp("2026-01-01", tz="UTC"))
    stats = fit_feature_stats(frame)
    assert stats["has_customer_fields"] and set(stats) == {"version", "train_rows", "amount_mean", "amount_std", "has_customer_fields"}
    out = add_features(frame, stats)
    assert list(out.columns) == [*frame.columns, "hour_of_day", "is_night", "log_amount", "amount_zscore"]
    pd.testing.assert_frame_equal(out[list(frame.columns)], frame)
