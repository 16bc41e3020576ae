"""Score calibration and the threshold policy: what makes 0.8 mean the same after every retraining.

Calibration is isotonic regression (scikit-learn) of the model's raw probabilities against the
validation split's labels, fitted in training and carried in the model package as plain JSON
breakpoints (no pickle). Applying it is `np.interp` over the breakpoints, which is exactly what
`IsotonicRegression(out_of_bounds="clip").predict` computes, so every consumer (evaluation, the
deployment health check, daily scoring, reasons, the report) gets the same calibrated score
without scikit-learn. The SageMaker built-in XGBoost container serves raw probabilities and has no
hook for a calibration map, so daily scoring applies it client-side after the endpoint call.

The high-risk threshold is then chosen on the calibrated validation scores: the original design's fixed 0.8
by default, or the highest threshold reaching a target recall, or the lowest reaching a target
precision. The chosen thresholds and the precision/recall they gave on validation travel with the
model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from fraud_assets.lib.config import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD

ISOTONIC = "isotonic"
FIXED, TARGET_RECALL, TARGET_PRECISION = "fixed", "target_recall", "target_precision"


def fit_isotonic(raw_scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The calibration map {method, x, y}: x the raw-score breakpoints (increasing), y the
    calibrated probability at each (non-decreasing, in [0, 1])."""
    from sklearn.isotonic import IsotonicRegression

    raw_scores = np.asarray(raw_scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    if len(raw_scores) != len(labels) or len(np.unique(labels)) != 2:
        raise ValueError(
            f"calibration needs one label per score and both classes ({len(raw_scores)} scores, classes {np.unique(labels).tolist()})"
        )
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True).fit(raw_scores, labels)
    return {
        "method": ISOTONIC,
        "fitted_on": "validation",
        "samples": int(len(labels)),
        "x": [float(v) for v in iso.X_thresholds_],
        "y": [float(v) for v in iso.y_thresholds_],
    }


def calibrate(raw_scores: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """Calibrated probabilities for raw model scores; the identity for a package without a map
    (models trained before calibration existed)."""
    raw_scores = np.asarray(raw_scores, dtype=np.float64)
    if not calibration:
        return raw_scores
    if calibration.get("method") != ISOTONIC:
        raise ValueError(f"unknown calibration method {calibration.get('method')!r}")
    x, y = np.asarray(calibration["x"], dtype=np.float64), np.asarray(calibration["y"], dtype=np.float64)
    if len(x) == 0 or len(x) != len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0):
        raise ValueError("calibration map must hold equally many increasing x and non-decreasing y breakpoints")
    return np.clip(np.interp(raw_scores, x, y), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class ThresholdPolicy:
    high: float = HIGH_RISK_THRESHOLD
    medium: float = MEDIUM_RISK_THRESHOLD
    target_recall: float | None = None
    target_precision: float | None = None

    def __post_init__(self):
        if self.target_recall is not None and self.target_precision is not None:
            raise ValueError("choose the high-risk threshold by a target recall or a target precision, not both")
        for name in ("target_recall", "target_precision"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], not {value}")
        if not 0.0 <= self.medium <= self.high <= 1.0:
            raise ValueError(f"need 0 <= medium ({self.medium}) <= high ({self.high}) <= 1")


def _at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | None]:
    flagged = scores >= threshold
    tp = int((flagged & (labels == 1)).sum())
    positives, n_flagged = int(labels.sum()), int(flagged.sum())
    return {
        "precision": tp / n_flagged if n_flagged else None,
        "recall": tp / positives if positives else None,
        "share": n_flagged / len(labels) if len(labels) else None,
    }


def choose_thresholds(scores: np.ndarray, labels: np.ndarray, policy: ThresholdPolicy = ThresholdPolicy()) -> dict[str, Any]:
    """The high and medium thresholds on calibrated `scores` under `policy`, with the precision,
    recall and flagged share each gives on these (validation) rows. A target no threshold
    reaches keeps the fixed threshold and says so (`target_met: false`)."""
    from sklearn.metrics import precision_recall_curve

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    high, target, kind, met = policy.high, None, FIXED, True
    if policy.target_recall is not None or policy.target_precision is not None:
        precision, recall, thresholds = precision_recall_curve(labels, scores)
        # thresholds ascend; precision[i], recall[i] belong to thresholds[i]
        precision, recall = precision[:-1], recall[:-1]
        if policy.target_recall is not None:
            kind, target = TARGET_RECALL, policy.target_recall
            reaching = np.flatnonzero(recall >= target)
            met = bool(len(reaching))
            high = float(thresholds[reaching[-1]]) if met else policy.high  # the highest that still reaches it
        else:
            kind, target = TARGET_PRECISION, policy.target_precision
            reaching = np.flatnonzero(precision >= target)
            met = bool(len(reaching))
            high = float(thresholds[reaching[0]]) if met else policy.high  # the lowest that reaches it
    medium = min(policy.medium, high)
    return {
        "policy": kind,
        "target": target,
        "target_met": met,
        "high": high,
        "medium": medium,
        "expected": {"high": _at(scores, labels, high), "medium": _at(scores, labels, medium)},
        "validation_samples": int(len(labels)),
    }


def thresholds_of(metadata: dict[str, Any]) -> tuple[float, float]:
    """(high, medium) a model package was released with; the original design's 0.8/0.5 for older packages."""
    chosen = metadata.get("thresholds") or {}
    return float(chosen.get("high", HIGH_RISK_THRESHOLD)), float(chosen.get("medium", MEDIUM_RISK_THRESHOLD))


def release_policy(raw_validation_scores: np.ndarray, labels: np.ndarray, policy: ThresholdPolicy = ThresholdPolicy()) -> tuple[dict, dict]:
    """What a trained model is released with: the calibration map fitted on its raw validation
    scores, and the thresholds chosen on the calibrated ones."""
    calibration = fit_isotonic(raw_validation_scores, labels)
    return calibration, choose_thresholds(calibrate(raw_validation_scores, calibration), labels, policy)
