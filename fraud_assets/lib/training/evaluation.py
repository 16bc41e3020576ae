"""evaluation_metrics' decisions: which model is the champion, where challenger and champion are
compared, the verdict, the side-by-side and the stage summary deployment reads.

The challenger (the model just trained) is scored on the test split and on the recent labelled
window as production would score it (calibrated, at its own high-risk threshold); the champion (the
model the endpoint serves) the same way. The no-regression gate compares them on the recent window
when it holds both classes (fraud moves: that is where a challenger must not lose), else on the test
split. The verdict (`Evaluation.gates`) is registered with the model package; deployed_endpoint reads
it from the registry (`registry.deployment_refusal`) and the metrics from `EvaluationSummary`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from fraud_assets.lib.config import LABEL_COLUMN, PlatformNames
from fraud_assets.lib.metadata_keys import summary_fields
from fraud_assets.lib.training.calibration import calibrate, thresholds_of
from fraud_assets.lib.training.gates import GateResult, gate_records, model_gates
from fraud_assets.lib.training.metrics import HEADLINE_METRICS, compare_with_production, evaluate_scores
from fraud_assets.lib.training.model import load_model_package, model_inputs, predict

if TYPE_CHECKING:
    import xgboost as xgb

# The figures the UI, CloudWatch and `fraud-assets run` show of an evaluation.
REPORTED_METRICS = (*HEADLINE_METRICS, "high_risk_precision", "high_risk_recall")

# CloudWatch metric names of REPORTED_METRICS (namespace FraudDetection).
CLOUDWATCH_METRIC_NAMES = {
    "accuracy": "EvaluationAccuracy",
    "precision": "EvaluationPrecision",
    "recall": "EvaluationRecall",
    "f1": "EvaluationF1",
    "roc_auc": "EvaluationRocAuc",
    "pr_auc": "EvaluationPrAuc",
    "high_risk_precision": "EvaluationHighRiskPrecision",
    "high_risk_recall": "EvaluationHighRiskRecall",
}

# What the side-by-side shows of each model (name in the summary -> evaluate_scores' key): each
# model at its own released high-risk threshold (recorded beside the figures).
SIDE_BY_SIDE = {
    "recall_at_threshold": "high_risk_recall",
    "precision_at_threshold": "high_risk_precision",
    "high_risk_threshold": "high_risk_threshold",
    "pr_auc": "pr_auc",
    "roc_auc": "roc_auc",
}
# The side-by-side's columns: (model, data).
SIDES = ("challenger_recent", "champion_recent", "challenger_test", "champion_test")

RECENT_WINDOW = "recent_window"
TEST_SPLIT = "test_split"


@dataclasses.dataclass(frozen=True)
class PackagedModel:
    """A model package as loaded: the booster and the package metadata (fraud_model's `ModelFacts`)."""

    booster: xgb.Booster
    meta: dict[str, Any]

    @property
    def version(self) -> str:
        return self.meta["model_version"]

    def evaluate(self, frame: pd.DataFrame) -> dict:
        """The model on raw rows as production sees it: scores calibrated with the package's map,
        the high-risk bucket at its threshold; the AUCs rank the raw scores."""
        raw = predict(self.booster, model_inputs(frame, self.meta), self.meta["feature_names"])
        high, _ = thresholds_of(self.meta)
        return evaluate_scores(
            frame[LABEL_COLUMN].to_numpy(), calibrate(raw, self.meta.get("calibration")), high_risk_threshold=high, ranking_scores=raw
        )


def load_packaged(data: bytes) -> PackagedModel:
    return PackagedModel(*load_model_package(data))


def production_model(s3, names: PlatformNames) -> PackagedModel | None:
    """The champion: the model the endpoint serves now, or None before the first deployment."""
    from fraud_assets.lib.aws.storage import get_bytes
    from fraud_assets.lib.training.endpoint import current_endpoint

    current = current_endpoint(s3, names)
    if current is None:
        return None
    booster, meta = load_model_package(get_bytes(s3, current["model_uri"]))
    meta.setdefault("feature_names", current.get("feature_names"))
    # The pointer's version names the champion (a package's own version is the same unless the
    # package predates the version in its metadata).
    return PackagedModel(booster, {**meta, "model_version": current["model_version"]})


def recent_window_usable(challenger_recent: dict | None) -> bool:
    """Whether the recent window can judge a regression: it has rows and holds both classes."""
    return challenger_recent is not None and 0 < challenger_recent["positives"] < challenger_recent["test_samples"]


def choose_comparison(
    *,
    challenger_test: dict,
    champion_test: dict | None,
    challenger_recent: dict | None,
    champion_recent: dict | None,
    window_dates: Sequence[str],
    window_rows: int,
    champion_version: str | None,
    tolerance: float,
) -> dict:
    """compare_with_production on the recent window when it holds both classes, else on the test
    split, with the basis it used (`basis`: recent_window | test_split) named in `reason`."""
    if recent_window_usable(challenger_recent):
        comparison = compare_with_production(challenger_recent, champion_recent, tolerance)
        basis, where = RECENT_WINDOW, f"on the recent window ({', '.join(window_dates)}; {window_rows} rows)"
    else:
        comparison = compare_with_production(challenger_test, champion_test, tolerance)
        why = "has no rows" if not window_rows else "holds one class only"
        basis, where = TEST_SPLIT, f"on the test split (the recent labelled window {why})"
    return {**comparison, "production_model_version": champion_version, "basis": basis, "reason": f"{comparison['reason']} {where}"}


def side(metrics: dict | None) -> dict:
    """A model's side-by-side figures (None throughout for a model that was not evaluated)."""
    return {name: (metrics[key] if metrics else None) for name, key in SIDE_BY_SIDE.items()}


def side_by_side_rows(sides: Mapping[str, dict]) -> list[tuple]:
    """(figure, *one value per SIDES column) per side-by-side figure, for a table."""
    return [(name, *(sides[s][name] for s in SIDES)) for name in SIDE_BY_SIDE]


@dataclasses.dataclass(frozen=True)
class GateFloors:
    accuracy: float
    pr_auc: float
    high_risk_precision: float
    regression_tolerance: float


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything evaluation_metrics decided about one challenger."""

    model_version: str
    metrics: dict  # the challenger on the test split
    champion_version: str | None
    sides: dict[str, dict]  # SIDES -> side()
    comparison: dict
    gates: list[GateResult]
    window_dates: list[str]
    window_rows: int
    window_fraud: int
    thresholds: dict | None

    @property
    def deploy_recommended(self) -> bool:
        return all(g.passed for g in self.gates)

    def reported(self) -> dict[str, float]:
        return {m: self.metrics[m] for m in REPORTED_METRICS}

    def summary(self) -> EvaluationSummary:
        cm = self.metrics["confusion_matrix"]
        return EvaluationSummary(
            model_version=self.model_version,
            metrics=self.metrics,
            test_samples=self.metrics["test_samples"],
            true_positives=cm["tp"],
            false_positives=cm["fp"],
            comparison=self.comparison,
            recent_window={
                "dates": self.window_dates,
                "rows": self.window_rows,
                "challenger": self.sides["challenger_recent"],
                "champion": self.sides["champion_recent"],
            },
            gates=gate_records(self.gates),
            deploy_recommended=self.deploy_recommended,
            thresholds=self.thresholds,
        )


def evaluate_challenger(
    challenger: PackagedModel,
    champion: PackagedModel | None,
    test: pd.DataFrame,
    window: pd.DataFrame,
    window_dates: Sequence[str],
    floors: GateFloors,
) -> Evaluation:
    """Both models on the test split and the recent window, the comparison and the gates."""
    metrics = challenger.evaluate(test)
    champion_test = champion.evaluate(test) if champion else None
    challenger_recent = challenger.evaluate(window) if len(window) else None
    champion_recent = champion.evaluate(window) if champion and len(window) else None
    comparison = choose_comparison(
        challenger_test=metrics,
        champion_test=champion_test,
        challenger_recent=challenger_recent,
        champion_recent=champion_recent,
        window_dates=window_dates,
        window_rows=len(window),
        champion_version=champion.version if champion else None,
        tolerance=floors.regression_tolerance,
    )
    gates = model_gates(
        metrics,
        comparison,
        accuracy_floor=floors.accuracy,
        pr_auc_floor=floors.pr_auc,
        high_risk_precision_floor=floors.high_risk_precision,
    )
    return Evaluation(
        model_version=challenger.version,
        metrics=metrics,
        champion_version=champion.version if champion else None,
        sides={
            "challenger_test": side(metrics),
            "champion_test": side(champion_test),
            "challenger_recent": side(challenger_recent),
            "champion_recent": side(champion_recent),
        },
        comparison=comparison,
        gates=gates,
        window_dates=list(window_dates),
        window_rows=len(window),
        window_fraud=int(window[LABEL_COLUMN].sum()) if len(window) else 0,
        thresholds=challenger.meta.get("thresholds"),
    )


@dataclasses.dataclass(frozen=True)
class EvaluationSummary:
    """evaluation_metrics' output.json: the evaluation of one model version (its gates as well, for
    the record; deployment reads the verdict from the model registry). deployed_endpoint reads metrics."""

    model_version: str
    metrics: dict
    test_samples: int
    true_positives: int
    false_positives: int
    comparison: dict
    recent_window: dict
    gates: list[dict]
    deploy_recommended: bool
    thresholds: dict | None

    def to_summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> EvaluationSummary:
        return cls(**summary_fields(cls, summary, "evaluation_metrics"))
