"""Drift monitoring (the original design's Monitor stage): the day's score metrics against a rolling baseline
of earlier days, plus population stability (PSI) of scores and features against training.

The original design's rule: drift when the average score moves more than 0.1, or the high-risk share more
than 0.05, from the mean of the last 30 days. Fewer than 7 days of history never count as drift:
a new deployment's first week has no baseline worth comparing to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.aws.storage import S3Uri, get_bytes, validate_bucket
from fraud_assets.lib.inference.psi import feature_psi, population_stability_index
from fraud_assets.lib.inference.summaries import ScoreSummary

METRICS_PREFIX = "metrics"
HISTORY_DAYS = 30
# Fixed score bins (width 0.05, with the default 0.5 and 0.8 thresholds on edges): histograms of any two days compare
# bin for bin, so a score PSI against the baseline needs no raw scores from earlier days.
SCORE_BIN_EDGES: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 21), 2).tolist())


def daily_metrics(scores: np.ndarray, date: str, high_threshold: float, medium_threshold: float) -> dict[str, Any]:
    """The day's record for `metrics/{date}.json`: count, avgScore and risk shares as fractions in
    0..1 (None on a day with no scores) at the thresholds of the model that scored the day (recorded
    beside them), and `scoreHistogram` on `SCORE_BIN_EDGES`."""
    _check_date(date)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not ((scores >= 0) & (scores <= 1)).all():
        raise ValueError(f"scores for {date} must be a 1-D array of probabilities in [0, 1]")
    if not 0 <= medium_threshold <= high_threshold <= 1:
        raise ValueError(f"thresholds must satisfy 0 <= medium ({medium_threshold}) <= high ({high_threshold}) <= 1")
    n = len(scores)
    counts, _ = np.histogram(scores, bins=np.asarray(SCORE_BIN_EDGES))
    high = int((scores >= high_threshold).sum())
    medium = int(((scores >= medium_threshold) & (scores < high_threshold)).sum())
    return {
        "date": date,
        "count": n,
        "avgScore": float(scores.mean()) if n else None,
        "highRiskPct": high / n if n else None,
        "mediumRiskPct": medium / n if n else None,
        "lowRiskPct": (n - high - medium) / n if n else None,
        "highRiskThreshold": float(high_threshold),
        "mediumRiskThreshold": float(medium_threshold),
        "scoreHistogram": {"binEdges": list(SCORE_BIN_EDGES), "counts": counts.tolist()},
    }


def baseline(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Mean avgScore and highRiskPct over the days of `history` that scored anything; None when
    there are none. `days` says how many days the means cover."""
    usable = _usable(history)
    if not usable:
        return None
    dates = sorted(str(h.get("date")) for h in usable)
    return {
        "avgScore": float(np.mean([h["avgScore"] for h in usable])),
        "highRiskPct": float(np.mean([h["highRiskPct"] for h in usable])),
        "days": len(usable),
        "firstDate": dates[0],
        "lastDate": dates[-1],
    }


def detect_drift(
    current: dict[str, Any],
    history: list[dict[str, Any]],
    *,
    avg_score_threshold: float = 0.1,
    high_risk_threshold: float = 0.05,
    min_history_days: int = 7,
) -> dict[str, Any]:
    """Compare the day with the baseline of `history` (the caller's earlier days, up to 30).

    Returns `baseline`, `avgScoreDrift` and `highRiskDrift` (absolute differences), `historyDays`,
    `driftDetected` (a drift strictly above its threshold) and `reason`. With fewer than
    `min_history_days` usable days there is no verdict: baseline and drifts are None, reason
    "insufficient history: N of 7 days", never drift."""
    date = current.get("date")
    earlier = [h for h in history if h.get("date") != date]  # today must not be its own baseline
    days = len(_usable(earlier))
    result: dict[str, Any] = {
        "baseline": None,
        "historyDays": days,
        "avgScoreDrift": None,
        "highRiskDrift": None,
        "driftDetected": False,
    }
    if not _usable([current]):
        return {**result, "reason": f"no scores on {date}: nothing to compare"}
    if days < min_history_days:
        return {**result, "reason": f"insufficient history: {days} of {min_history_days} days"}
    base = baseline(earlier)
    assert base is not None
    avg_drift = abs(float(current["avgScore"]) - base["avgScore"])
    high_drift = abs(float(current["highRiskPct"]) - base["highRiskPct"])
    reasons = []
    if avg_drift > avg_score_threshold:
        reasons.append(
            f"avgScore {current['avgScore']:.4f} vs baseline {base['avgScore']:.4f} (drift {avg_drift:.4f} > {avg_score_threshold})"
        )
    if high_drift > high_risk_threshold:
        reasons.append(
            f"highRiskPct {current['highRiskPct']:.4f} vs baseline {base['highRiskPct']:.4f} "
            f"(drift {high_drift:.4f} > {high_risk_threshold})"
        )
    return {
        **result,
        "baseline": base,
        "avgScoreDrift": avg_drift,
        "highRiskDrift": high_drift,
        "driftDetected": bool(reasons),
        "reason": "; ".join(reasons) if reasons else f"within thresholds over {days} days of history",
    }


# Warnings on a day's record: name -> (record key, threshold, what it says). Never a stop: the
# day is recorded either way; the UI's checks, the record's `warnings` and the report all read these.
DRIFT_WARNINGS: dict[str, tuple[str, float, str]] = {
    "average_score_drift": ("avgScoreDrift", 0.1, "Average fraudScore within 0.1 of the 30-day baseline."),
    "high_risk_share_drift": ("highRiskDrift", 0.05, "High-risk share within 0.05 of the 30-day baseline."),
    "score_distribution_psi": (
        "scorePsi",
        0.25,
        "PSI of the day's raw scores against the model's raw validation scores below 0.25.",
    ),
    "train_serve_skew": (
        "maxFeaturePsi",
        0.25,
        "Train/serve skew: PSI of each top model feature, the day's batch against training, below 0.25.",
    ),
}


def drift_warnings(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Each warning's verdict on a day's record: name, value (None: no verdict), threshold,
    passed and a one-line detail."""
    verdicts = []
    for name, (key, threshold, _) in DRIFT_WARNINGS.items():
        value = record.get(key)
        if value is None:
            detail = record.get("reason") or "not enough data for a verdict"
        elif value <= threshold:
            detail = f"{key} {value:.4f} within {threshold}"
        else:
            detail = f"WARNING: {key} {value:.4f} above {threshold}"
        verdicts.append(
            {"name": name, "value": value, "threshold": threshold, "passed": value is None or value <= threshold, "detail": detail}
        )
    return verdicts


# -- a day's drift record (drift_metrics) -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DriftDay:
    """drift_metrics' outcome: `record` is metrics/{date}.json (the original design's camelCase
    shape: avgScore, highRiskPct, ..., driftDetected, scorePsi, featurePsi, warnings)."""

    record: dict[str, Any]
    history_days: int  # earlier records found (usable or not)
    scored_any: bool
    feature_reference: bool

    @property
    def drifted(self) -> bool:
        return bool(self.record["driftDetected"])

    def cloudwatch_metrics(self) -> dict[str, Any]:
        r = self.record
        return {
            "AvgScoreDrift": r.get("avgScoreDrift"),
            "HighRiskDrift": r.get("highRiskDrift"),
            "ScorePsi": r["scorePsi"],
            "MaxFeaturePsi": r["maxFeaturePsi"],
            "DriftDetected": self.drifted,
        }

    def metadata(self) -> dict[str, Any]:
        """Plain values; NaN where a figure is undefined, so the UI plots the rest."""
        r = self.record

        def number(key: str) -> float:
            return r.get(key) if r.get(key) is not None else float("nan")

        return {
            keys.AVG_SCORE: r["avgScore"],
            "high_risk_pct": r["highRiskPct"],
            "avg_score_drift": number("avgScoreDrift"),
            "high_risk_drift": number("highRiskDrift"),
            "history_days": self.history_days,
            keys.DRIFT_DETECTED: self.drifted,
            "score_psi": number("scorePsi"),
            "reason": r.get("reason", ""),
        }

    def monitoring_message(self) -> dict[str, Any]:
        """The one message to fraud-detection-monitoring on a day with drift."""
        date = self.record["date"]
        return {"messageKey": f"drift-{date}", "subject": f"Fraud score drift on {date}", "batchDate": date, "drift": self.record}


def assess_day(
    scores: pd.DataFrame, transactions: pd.DataFrame, scored: ScoreSummary, model_meta: dict[str, Any], history: list[dict[str, Any]]
) -> DriftDay:
    """The day's record: its metrics at the scoring model's thresholds, drift against `history`
    (`load_history`), PSI of the raw scores and of the top features against the reference the
    model package (`model_meta`, the package that scored the day) carries, and the warnings that
    fired. An empty day (an empty batch, or every row quarantined) gets no PSI: no PSI of nothing."""
    from fraud_assets.lib.training.model import model_inputs

    current = daily_metrics(scores["fraudScore"].to_numpy(), scored.date, scored.high_risk_threshold, scored.medium_risk_threshold)
    drift = detect_drift(current, history)
    reference = model_meta.get("reference", {})
    scored_any = len(scores) > 0
    # Raw scores on both sides: the model's own output, continuous; the calibrated ones are mostly ties.
    score_psi = (
        population_stability_index(np.asarray(reference["validation_raw_scores"]), scores["rawScore"].to_numpy())
        if reference.get("validation_raw_scores") and scored_any
        else None
    )
    feature_psi_values: dict[str, float] = {}
    if reference.get("features") and scored_any:
        today = pd.DataFrame(model_inputs(transactions, model_meta), columns=model_meta["feature_names"])
        feature_psi_values = feature_psi(pd.DataFrame(reference["features"]), today, list(reference["features"]))
    record = {
        **current,
        **drift,
        "scorePsi": score_psi,
        "featurePsi": feature_psi_values,
        "maxFeaturePsi": max(feature_psi_values.values()) if feature_psi_values else None,
        "modelVersion": scored.model_version,
    }
    # The warnings that fired, in the record: the report's headline says what the checks say.
    record["warnings"] = [v["name"] for v in drift_warnings(record) if not v["passed"]]
    return DriftDay(record, len(history), scored_any, bool(reference.get("features")))


def metrics_key(date: str) -> str:
    _check_date(date)
    return f"{METRICS_PREFIX}/{date}.json"


def history_keys(date: str, days: int = HISTORY_DAYS) -> list[str]:
    """`metrics/{d}.json` for each of the `days` dates before `date`, oldest first. Explicit keys,
    never "the newest files in the folder": a backfill of an old date sees its own past."""
    day = _check_date(date)
    if days < 0:
        raise ValueError(f"days must be >= 0, not {days}")
    return [metrics_key((day - dt.timedelta(days=back)).isoformat()) for back in range(days, 0, -1)]


def load_history(s3, bucket: str, date: str, days: int = HISTORY_DAYS) -> list[dict[str, Any]]:
    """The metrics records that exist among `history_keys(date, days)`, oldest first. A missing
    day is skipped; a present but unreadable one raises (a silent gap would shift the baseline)."""
    validate_bucket(bucket)
    history = []
    for key in history_keys(date, days):
        try:
            data = get_bytes(s3, S3Uri(bucket, key))
        except s3.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                continue
            raise
        try:
            record = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"s3://{bucket}/{key}: unreadable metrics record: {err}") from err
        if not isinstance(record, dict):
            raise ValueError(f"s3://{bucket}/{key}: metrics record is not a JSON object")
        history.append(record)
    return history


def _usable(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        h
        for h in history
        if isinstance(h, dict) and (h.get("count") or 0) > 0 and _is_number(h.get("avgScore")) and _is_number(h.get("highRiskPct"))
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _check_date(value: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        day = None
    if day is None or day.isoformat() != value:
        raise ValueError(f"date must be YYYY-MM-DD, not {value!r}")
    return day
