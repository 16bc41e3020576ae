"""Drift: daily metrics, PSI, the rolling baseline and the original design's drift rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fraud_assets.lib.aws.storage import put_bytes, put_json
from fraud_assets.lib.inference.drift import (
    SCORE_BIN_EDGES,
    baseline,
    daily_metrics,
    detect_drift,
    history_keys,
    load_history,
)
from fraud_assets.lib.inference.psi import feature_psi, histogram_psi, population_stability_index

samples = hnp.arrays(np.float64, st.integers(1, 200), elements=st.floats(-1e6, 1e6, allow_nan=False))


def test_daily_metrics_are_fractions_with_a_fixed_histogram():
    m = daily_metrics(np.array([0.1, 0.55, 0.8, 0.95, 0.2]), "2024-05-01", 0.8, 0.5)
    assert m["date"] == "2024-05-01" and m["count"] == 5
    assert m["avgScore"] == pytest.approx(0.52)
    assert (m["highRiskPct"], m["mediumRiskPct"], m["lowRiskPct"]) == (0.4, 0.2, 0.4)
    assert m["scoreHistogram"]["binEdges"] == list(SCORE_BIN_EDGES)
    counts = m["scoreHistogram"]["counts"]
    assert len(counts) == 20 and sum(counts) == 5 and counts[16] == 1 and counts[19] == 1  # 0.8 in [0.8, 0.85)


def test_an_empty_day_has_no_averages():
    m = daily_metrics(np.array([]), "2024-05-01", 0.8, 0.5)
    assert m["count"] == 0 and m["avgScore"] is None and m["highRiskPct"] is None
    assert detect_drift(m, [day(i, 0.1, 0.05) for i in range(10)])["reason"] == "no scores on 2024-05-01: nothing to compare"


def test_daily_metrics_refuse_non_probabilities_and_bad_dates():
    with pytest.raises(ValueError, match="probabilities"):
        daily_metrics(np.array([0.2, 1.2]), "2024-05-01", 0.8, 0.5)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        daily_metrics(np.array([0.2]), "2024-5-1", 0.8, 0.5)


@settings(max_examples=80, deadline=None)
@given(samples, samples, st.integers(2, 20))
def test_psi_is_never_negative_and_zero_against_itself(expected, actual, bins):
    assert population_stability_index(expected, expected, bins) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(expected, actual, bins) >= 0.0


def test_psi_reads_a_real_shift_as_significant_and_noise_as_stable():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=20_000)
    assert population_stability_index(reference, rng.normal(size=20_000)) < 0.01
    assert population_stability_index(reference, rng.normal(loc=1.0, size=20_000)) > 0.25
    # A constant reference collapses to two open-ended bins instead of failing.
    assert population_stability_index(np.zeros(100), np.ones(100)) > 0.25
    with pytest.raises(ValueError, match="non-empty"):
        population_stability_index(np.array([]), reference)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float32, st.integers(1, 6), elements=st.floats(0, 1, width=32), unique=True),
    st.lists(st.integers(0, 5), min_size=50, max_size=400),
    st.integers(2, 20),
)
def test_psi_of_tied_values_is_zero_whatever_their_precision(values, picks, bins):
    # A model's scores are float32 and heavily tied; the reference is stored rounded, the day
    # arrives as float32 or as text. The same values on both sides never straddle a bin edge.
    day = values[np.asarray(picks) % len(values)]
    stored = [round(float(v), 6) for v in day]
    assert population_stability_index(np.asarray(stored), day, bins) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(day.astype(np.float64), np.asarray([repr(float(v)) for v in day], dtype=float), bins) == (
        pytest.approx(0.0, abs=1e-12)
    )


def test_daily_metrics_count_high_risk_at_the_models_threshold():
    m = daily_metrics(np.array([0.1, 0.35, 0.62, 0.7, 0.9]), "2024-05-01", 0.6, 0.3)
    assert (m["highRiskPct"], m["mediumRiskPct"], m["lowRiskPct"]) == (0.6, 0.2, 0.2)
    assert (m["highRiskThreshold"], m["mediumRiskThreshold"]) == (0.6, 0.3)
    with pytest.raises(ValueError, match="thresholds"):
        daily_metrics(np.array([0.2]), "2024-05-01", 0.3, 0.6)


def test_histogram_psi_compares_two_days_bin_for_bin():
    assert histogram_psi([10, 0, 5], [20, 0, 10]) == pytest.approx(0.0)
    assert histogram_psi([10, 10], [19, 1]) > 0.25
    with pytest.raises(ValueError, match="shape"):
        histogram_psi([1, 2], [1, 2, 3])


def test_feature_psi_per_feature_and_missing_columns_named():
    rng = np.random.default_rng(5)
    train = pd.DataFrame({"V1": rng.normal(size=2000), "V2": rng.normal(size=2000)})
    today = pd.DataFrame({"V1": rng.normal(size=500), "V2": rng.normal(loc=2.0, size=500)})
    psi = feature_psi(train, today, ["V1", "V2"])
    assert psi["V1"] < 0.1 < 0.25 < psi["V2"]
    with pytest.raises(KeyError, match="V3"):
        feature_psi(train, today, ["V3"])


def day(i: int, avg: float, high: float, count: int = 100) -> dict:
    return {"date": f"2024-04-{i + 1:02d}", "count": count, "avgScore": avg, "highRiskPct": high}


unit = st.floats(0, 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(unit, unit), max_size=30), unit, unit, st.integers(1, 10))
def test_drift_is_the_absolute_difference_from_the_baseline_mean(past, avg, high, min_days):
    history = [day(i, a, h) for i, (a, h) in enumerate(past)]
    current = {**day(29, avg, high), "date": "2024-05-01"}
    result = detect_drift(current, history, min_history_days=min_days)
    assert result["historyDays"] == len(past)
    if len(past) < min_days:
        assert result["driftDetected"] is False and result["baseline"] is None
        assert result["reason"] == f"insufficient history: {len(past)} of {min_days} days"
        return
    base_avg = float(np.mean([a for a, _ in past]))
    base_high = float(np.mean([h for _, h in past]))
    assert result["baseline"]["avgScore"] == pytest.approx(base_avg)
    assert result["avgScoreDrift"] == pytest.approx(abs(avg - base_avg))
    assert result["highRiskDrift"] == pytest.approx(abs(high - base_high))
    assert result["driftDetected"] == (result["avgScoreDrift"] > 0.1 or result["highRiskDrift"] > 0.05)
    assert result["avgScoreDrift"] >= 0 and result["highRiskDrift"] >= 0


@settings(deadline=None)
@given(st.integers(0, 6), unit, unit)
def test_fewer_than_seven_days_never_drift(days, avg, high):
    history = [day(i, 0.0, 0.0) for i in range(days)]
    result = detect_drift({**day(20, avg, high), "date": "2024-05-01"}, history)
    assert result["driftDetected"] is False
    assert result["reason"] == f"insufficient history: {days} of 7 days"


def test_the_original_designs_thresholds_are_strict_and_days_without_scores_do_not_count():
    history = [day(i, 0.25, 0.0625) for i in range(7)] + [day(8, 0.9, 0.9, count=0)]
    at_threshold = detect_drift(
        {**day(20, 0.375, 0.125), "date": "2024-05-01"}, history, avg_score_threshold=0.125, high_risk_threshold=0.0625
    )
    assert at_threshold["historyDays"] == 7 and at_threshold["driftDetected"] is False
    above = detect_drift({**day(20, 0.5, 0.0625), "date": "2024-05-01"}, history)
    assert above["driftDetected"] and above["reason"].startswith("avgScore 0.5000 vs baseline 0.2500 (drift 0.2500 > 0.1)")
    # Today's own record in the history (a re-run) is not its own baseline.
    today = {**day(20, 0.5, 0.0625), "date": "2024-05-01"}
    assert detect_drift(today, history[:6] + [today])["historyDays"] == 6
    assert baseline([]) is None


def test_history_keys_are_the_explicit_days_before_the_date():
    keys = history_keys("2024-03-02", 3)
    assert keys == ["metrics/2024-02-28.json", "metrics/2024-02-29.json", "metrics/2024-03-01.json"]
    assert len(history_keys("2024-05-01")) == 30 and history_keys("2024-05-01")[-1] == "metrics/2024-04-30.json"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        history_keys("../2024-05-01")


def test_load_history_reads_the_days_that_exist_and_refuses_corrupt_ones(aws):
    s3 = aws.client("s3")
    bucket = aws.names.metrics_bucket
    for d in ("2024-04-28", "2024-04-30", "2024-05-01", "2024-03-01"):  # today and too old: not history
        put_json(s3, bucket, f"metrics/{d}.json", {"date": d, "count": 10, "avgScore": 0.1, "highRiskPct": 0.01})
    history = load_history(s3, bucket, "2024-05-01")
    assert [h["date"] for h in history] == ["2024-04-28", "2024-04-30"]
    put_bytes(s3, bucket, "metrics/2024-04-29.json", b"{not json")
    with pytest.raises(ValueError, match=r"s3://fraud-detection-metrics-local/metrics/2024-04-29.json: unreadable"):
        load_history(s3, bucket, "2024-05-01")


def test_missing_values_are_a_bin_of_their_own_in_psi():
    values = np.linspace(0.0, 1.0, 1000)
    with_missing = np.where(np.arange(1000) % 10 == 0, np.nan, values)
    assert population_stability_index(with_missing, with_missing) == 0.0
    more_missing = np.where(np.arange(1000) % 2 == 0, np.nan, values)  # half the cards lost their customer
    assert population_stability_index(with_missing, more_missing) > 0.25
    with pytest.raises(ValueError, match="infinite"):
        population_stability_index(values, np.append(values, np.inf))
