"""Evaluation metrics (scikit-learn) and the quality gates' arithmetic."""

from __future__ import annotations

import numpy as np

from fraud_assets.lib.config import HIGH_RISK_THRESHOLD

DECISION_THRESHOLD = 0.5


def evaluate_scores(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float = DECISION_THRESHOLD,
    *,
    high_risk_threshold: float = HIGH_RISK_THRESHOLD,
    ranking_scores: np.ndarray | None = None,
) -> dict:
    """Accuracy and friends at `threshold`, the threshold-free ROC-AUC / PR-AUC, the confusion
    matrix, and precision/recall of the high-risk bucket (score >= `high_risk_threshold`) the
    alerts act on. `ranking_scores` (the raw model scores behind calibrated `scores`) rank for the
    AUCs: isotonic calibration is monotone but merges ranks into ties, which would understate how
    well the model orders transactions."""
    from sklearn import metrics as skm  # imported where used: loading the code location stays cheap

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    if len(labels) != len(scores) or len(labels) == 0:
        raise ValueError(f"need equally many labels and scores, got {len(labels)} and {len(scores)}")
    predicted = (scores >= threshold).astype(int)
    high_risk = (scores >= high_risk_threshold).astype(int)
    ranking = scores if ranking_scores is None else np.asarray(ranking_scores, dtype=float)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    both_classes = len(np.unique(labels)) == 2
    return {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(labels, ranking)) if both_classes else float("nan"),
        "pr_auc": float(skm.average_precision_score(labels, ranking)) if both_classes else float("nan"),
        "high_risk_precision": float(skm.precision_score(labels, high_risk, zero_division=0)),
        "high_risk_recall": float(skm.recall_score(labels, high_risk, zero_division=0)),
        "high_risk_count": int(high_risk.sum()),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "test_samples": int(len(labels)),
        "positives": int(labels.sum()),
        "threshold": threshold,
        "high_risk_threshold": high_risk_threshold,
        "high_risk_share": float(high_risk.mean()),
    }


HEADLINE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")


def compare_with_production(challenger: dict, champion: dict | None, tolerance: float) -> dict:
    """Champion/challenger on the same test split: a regression is PR-AUC (the metric that
    matters at this imbalance) falling more than `tolerance` below the production model's."""
    if champion is None:
        return {"production_model": None, "regression": False, "reason": "no model in production"}
    deltas = {m: challenger[m] - champion[m] for m in HEADLINE_METRICS if m in champion}
    regression = deltas.get("pr_auc", 0.0) < -tolerance
    return {
        "production_metrics": {m: champion[m] for m in HEADLINE_METRICS if m in champion},
        "deltas": deltas,
        "regression": bool(regression),
        "tolerance": tolerance,
        "reason": (
            f"PR-AUC {challenger['pr_auc']:.4f} is more than {tolerance} below production's {champion['pr_auc']:.4f}"
            if regression
            else "no regression against production"
        ),
    }
