"""Realised model quality of one day: the day's scores joined with the labels that came back for it.

What is measured is the scoring the pipeline recorded for the day (daily_scores, the same scores it
stored in DynamoDB and alerted on). A day scored again after a deployment is measured for the new
version, as FraudScores then holds the new version's scores too. Should one scoring ever carry more
than one version, `model_version` names them all, joined by ",", rather than pretending one.

Definitions (`performance/{date}.json`, snake_case, null where a figure is undefined):

- labelled: scored transactions with an accepted label; label_coverage = labelled / scored.
- fraud: labelled transactions confirmed as fraud.
- high_risk_threshold / medium_risk_threshold: the thresholds of the model that scored the day
  (released with it; the original design's 0.8 / 0.5 by default). Every figure below is at these.
- realised_precision/recall/false_positive_rate_at_threshold (high-risk) and
  _at_medium_threshold: over the labelled transactions, "positive" meaning fraudScore >= the threshold.
- alerted: transactions with fraudScore >= the high-risk threshold, the ones fraud_alerts sent,
  labelled or not; alert_precision: the share of them confirmed as fraud (null while the day has no
  labels at all). An alert without a label (yet) is not confirmed, so alert precision grows as labels
  arrive; realised_precision_at_threshold is the same question asked of the labelled alerts only.
- missed_fraud / missed_fraud_amount: confirmed fraud below the high-risk threshold (never alerted).
- roc_auc / pr_auc (average precision): only when the labels hold both classes.
- accuracy: at 0.5, the training evaluation's decision threshold (the original design's alarm is < 0.85).
- alert_budget, precision_at_k, labelled_at_k, card_precision_at_k, compromised_cards_found,
  compromised_cards, cards, cards_unknown: the investigator measures at k = the alert budget
  (`investigator.py`, where each is defined).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.aws.cloudwatch import model_dimensions, publish_metrics
from fraud_assets.lib.aws.storage import get_json, put_json
from fraud_assets.lib.config import TRANSACTION_ID
from fraud_assets.lib.inference.investigator import DEFAULT_ALERT_BUDGET, INVESTIGATOR_KEYS, investigator_measures
from fraud_assets.lib.inference.labels import LabelBatch, parse_label_file
from fraud_assets.lib.inference.summaries import LabelledSummary, ScoreSummary
from fraud_assets.lib.training.metrics import DECISION_THRESHOLD

PERFORMANCE_PREFIX = "performance"
PERFORMANCE_KEYS: tuple[str, ...] = (
    "date",
    "model_version",
    "labelled",
    "label_coverage",
    "fraud",
    "high_risk_threshold",
    "medium_risk_threshold",
    "realised_precision_at_threshold",
    "realised_recall_at_threshold",
    "realised_false_positive_rate_at_threshold",
    "realised_precision_at_medium_threshold",
    "realised_recall_at_medium_threshold",
    "realised_false_positive_rate_at_medium_threshold",
    "alert_precision",
    "alerted",
    "missed_fraud",
    "missed_fraud_amount",
    "roc_auc",
    "pr_auc",
    "accuracy",
    *INVESTIGATOR_KEYS,
    "labels_source",
    "computed_at",
)
LABELLED_SCORE_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    "fraudScore",
    "modelVersion",
    "amount",
    "isFraud",
    "labelledAt",
    "labelSource",
)
# Carried along when the inputs have them (daily_scores' rawScore, the transaction's customerId):
# the investigator measures rank by the raw score too and group by card.
OPTIONAL_LABELLED_COLUMNS: tuple[str, ...] = ("rawScore", "customerId")


def performance_key(date: str) -> str:
    return f"{PERFORMANCE_PREFIX}/{date}.json"


def join_labels(scores: pd.DataFrame, transactions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Every scored transaction with its amount and, where one was accepted, its label
    (`isFraud` a nullable boolean: <NA> means not labelled yet), and its rawScore and customerId
    where the scores and transactions have them. One row per scored transaction."""
    _require(scores, (TRANSACTION_ID, "fraudScore", "modelVersion"), "scores")
    _require(transactions, (TRANSACTION_ID, "amount"), "transactions")
    _require(labels, (TRANSACTION_ID, "isFraud", "labelledAt", "source"), "labels")
    for name, frame in (("scores", scores), ("transactions", transactions), ("labels", labels)):
        if not frame[TRANSACTION_ID].is_unique:
            dup = frame.loc[frame[TRANSACTION_ID].duplicated(), TRANSACTION_ID].iloc[0]
            raise ValueError(f"{name} hold transaction {dup!r} more than once")
    score_columns = [TRANSACTION_ID, "fraudScore", "modelVersion", *(["rawScore"] if "rawScore" in scores.columns else [])]
    detail_columns = [TRANSACTION_ID, "amount", *(["customerId"] if "customerId" in transactions.columns else [])]
    joined = (
        scores.loc[:, score_columns]
        .merge(transactions.loc[:, detail_columns], on=TRANSACTION_ID, how="left", validate="one_to_one")
        .merge(
            labels.loc[:, [TRANSACTION_ID, "isFraud", "labelledAt", "source"]].rename(columns={"source": "labelSource"}),
            on=TRANSACTION_ID,
            how="left",
            validate="one_to_one",
        )
    )
    if joined["amount"].isna().any():
        missing = joined.loc[joined["amount"].isna(), TRANSACTION_ID].iloc[0]
        raise ValueError(f"scored transaction {missing!r} is not among the day's transactions")
    joined["isFraud"] = joined["isFraud"].astype("boolean")
    return joined.loc[:, [*LABELLED_SCORE_COLUMNS, *(c for c in OPTIONAL_LABELLED_COLUMNS if c in joined.columns)]]


def realised_performance(
    joined: pd.DataFrame,
    date: str,
    labels_source: dict | None,
    *,
    high_threshold: float,
    medium_threshold: float,
    alert_budget: int = DEFAULT_ALERT_BUDGET,
) -> dict[str, Any]:
    """The day's figures (PERFORMANCE_KEYS) from `join_labels`' table at the thresholds of the model
    that scored the day, and the investigator measures at k = `alert_budget`; computed_at is now."""
    from sklearn import metrics as skm  # imported where used: loading the code location stays cheap

    _require(joined, LABELLED_SCORE_COLUMNS, "labelled scores")
    scores = joined["fraudScore"].to_numpy(dtype=np.float64)
    is_labelled = joined["isFraud"].notna().to_numpy()
    truth = joined["isFraud"].fillna(False).to_numpy(dtype=bool)
    alerted = scores >= high_threshold
    y, s = truth[is_labelled].astype(int), scores[is_labelled]
    labelled, fraud = int(is_labelled.sum()), int(y.sum())
    versions = sorted(joined["modelVersion"].astype(str).unique())

    record: dict[str, Any] = {
        "date": date,
        "model_version": ",".join(versions) if versions else None,
        "labelled": labelled,
        "label_coverage": _ratio(labelled, len(joined)),
        "fraud": fraud,
        "high_risk_threshold": float(high_threshold),
        "medium_risk_threshold": float(medium_threshold),
    }
    for suffix, threshold in (("threshold", high_threshold), ("medium_threshold", medium_threshold)):
        tn, fp, fn, tp = _confusion(skm, y, s, threshold)
        record[f"realised_precision_at_{suffix}"] = _ratio(tp, tp + fp)
        record[f"realised_recall_at_{suffix}"] = _ratio(tp, tp + fn)
        record[f"realised_false_positive_rate_at_{suffix}"] = _ratio(fp, fp + tn)
    missed = truth & is_labelled & ~alerted
    both_classes = 0 < fraud < labelled
    tn, fp, fn, tp = _confusion(skm, y, s, DECISION_THRESHOLD)
    record.update(
        # Before any label has come back, "none of the alerts confirmed" would be a verdict nobody gave.
        alert_precision=_ratio(int((alerted & truth & is_labelled).sum()), int(alerted.sum())) if labelled else None,
        alerted=int(alerted.sum()),
        missed_fraud=int(missed.sum()),
        missed_fraud_amount=float(joined["amount"].to_numpy(dtype=np.float64)[missed].sum()),
        roc_auc=float(skm.roc_auc_score(y, s)) if both_classes else None,
        pr_auc=float(skm.average_precision_score(y, s)) if both_classes else None,
        accuracy=_ratio(tp + tn, labelled),
        **investigator_measures(joined, alert_budget),
        labels_source=labels_source,
        computed_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return {k: record[k] for k in PERFORMANCE_KEYS}


def alert_precision_best_case(joined: pd.DataFrame, high_threshold: float) -> float | None:
    """Alert precision if every alert still unlabelled turned out to be fraud: a floor breached even
    so is breached for good, and a warning on it is never taken back by labels arriving later."""
    alerted = joined["fraudScore"].to_numpy(dtype=np.float64) >= high_threshold
    not_refuted = joined["isFraud"].fillna(True).to_numpy(dtype=bool)
    return _ratio(int((alerted & not_refuted).sum()), int(alerted.sum()))


def performance_unchanged(s3, bucket: str, record: dict[str, Any]) -> bool:
    """Whether `performance/{date}.json` already holds these figures (everything but computed_at):
    recomputing from the same scores and labels then leaves the object, and the metrics, as they were."""
    try:
        stored = get_json(s3, f"s3://{bucket}/{performance_key(record['date'])}")
    except s3.exceptions.NoSuchKey:
        return False
    return _figures(stored) == _figures(record)


def write_performance(s3, bucket: str, record: dict[str, Any]) -> None:
    put_json(s3, bucket, performance_key(record["date"]), record)


def load_performance(s3, bucket: str, date: str) -> dict[str, Any] | None:
    """The day's `performance/{date}.json`, or None while the day has not been measured."""
    try:
        return get_json(s3, f"s3://{bucket}/{performance_key(date)}")
    except s3.exceptions.NoSuchKey:
        return None


def load_performance_history(s3, bucket: str, date: str, days: int) -> list[dict[str, Any]]:
    """The `performance/{d}.json` records that exist for the `days` dates before `date`, oldest
    first (explicit keys: a backfill of an old date sees its own past). A day not measured yet is
    skipped; a present but unreadable record raises."""
    day = dt.date.fromisoformat(date)
    if days < 0:
        raise ValueError(f"days must be >= 0, not {days}")
    history = []
    for back in range(days, 0, -1):
        earlier = (day - dt.timedelta(days=back)).isoformat()
        record = load_performance(s3, bucket, earlier)
        if record is not None and not isinstance(record, dict):
            raise ValueError(f"s3://{bucket}/{performance_key(earlier)}: performance record is not a JSON object")
        if record is not None:
            history.append(record)
    return history


# -- labelled_scores ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabelledDay:
    """labelled_scores' outcome: every scored transaction with its label once it came back
    (`join_labels`), the label file's parse, and the typed summary."""

    joined: pd.DataFrame
    labels: LabelBatch
    summary: LabelledSummary

    def metadata(self) -> dict[str, Any]:
        s = self.summary
        return {
            keys.RECEIVED: s.received,
            "accepted": s.accepted,
            keys.QUARANTINED: s.quarantined,
            keys.LABELLED: s.labelled,
            "label_coverage": s.labelled / s.scored if s.scored else float("nan"),
            # "" without a file: model_performance carries it on, and label_file_sensor compares it.
            keys.LABELS_ETAG: s.labels_source["etag"] if s.labels_source else "",
        }

    def labels_clean(self) -> tuple[bool, str]:
        """The labels_clean check's verdict and description: passed when nothing was quarantined."""
        s = self.summary
        if not s.quarantine_checks:
            return True, f"all {s.received} labels accepted"
        return False, f"{s.quarantined} of {s.received} labels quarantined: " + ", ".join(
            f"{k} {v}" for k, v in s.quarantine_checks.items()
        )


def fetch_label_file(s3, bucket: str, key: str) -> tuple[bytes, dict[str, Any] | None]:
    """The label file's bytes and where they came from ({uri, etag, version_id}); no file yet is
    no labels (b"[]", None). Body and ETag from one response: the ETag recorded is the one of the
    bytes parsed."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return b"[]", None
    return obj["Body"].read(), {"uri": f"s3://{bucket}/{key}", "etag": obj["ETag"].strip('"'), "version_id": obj.get("VersionId")}


def label_day(
    data: bytes, labels_source: dict[str, Any] | None, uri: str, scores: pd.DataFrame, transactions: pd.DataFrame, scored: ScoreSummary
) -> LabelledDay:
    """Parse the day's label file (`data`, read from `uri`; LabelFileError when the whole file is
    unusable) against the day's transactions and join the accepted labels to the day's scores. The
    summary carries the endpoint and thresholds the day was scored at: what its quality is measured at."""
    labels = parse_label_file(data, uri, known_ids=transactions[TRANSACTION_ID])
    joined = join_labels(scores, transactions, labels.accepted)
    counts = labels.summary()
    summary = LabelledSummary(
        date=scored.date,
        labels_source=labels_source,
        endpoint_name=scored.endpoint_name,
        high_risk_threshold=scored.high_risk_threshold,
        medium_risk_threshold=scored.medium_risk_threshold,
        scored=len(joined),
        labelled=int(joined["isFraud"].notna().sum()),
        **counts,
    )
    return LabelledDay(joined, labels, summary)


# -- model_performance --------------------------------------------------------------------------


def cloudwatch_metrics(record: dict[str, Any]) -> dict[str, float | None]:
    """The FraudDetection figures of a day's realised quality."""
    return {
        "RealisedRecall": record["realised_recall_at_threshold"],
        "RealisedPrecision": record["realised_precision_at_threshold"],
        "RealisedAccuracy": record["accuracy"],
        "AlertPrecision": record["alert_precision"],
    }


def publish_performance(s3, cloudwatch, bucket: str, record: dict[str, Any], endpoint_name: str) -> bool:
    """Publish the record's CloudWatch figures and write `performance/{date}.json`, unless the file
    already holds these figures (`performance_unchanged`): then neither is touched. Returns whether
    they were. Metrics before the file: should publishing fail, the retry still finds the figures new."""
    if performance_unchanged(s3, bucket, record):
        return False
    publish_metrics(cloudwatch, cloudwatch_metrics(record), model_dimensions(endpoint_name, record["model_version"]))
    write_performance(s3, bucket, record)
    return True


def floor_breach_message(record: dict[str, Any], breached: list[tuple[str, str]]) -> dict[str, Any]:
    """The monitoring message for the (check name, description) of each floor the day breached.
    One message per day, model version and set of breached floors: its key hashes them, so a
    recomputation that finds the same does not notify again."""
    digest = hashlib.sha256("\n".join([str(record["model_version"]), *(name for name, _ in breached)]).encode()).hexdigest()[:16]
    date = record["date"]
    return {
        "messageKey": f"performance-{digest}",
        "subject": f"Realised model quality below floor on {date}",
        "batchDate": date,
        "warnings": [description for _, description in breached],
        "performance": record,
    }


def performance_metadata(record: dict[str, Any], written: bool) -> dict[str, Any]:
    """model_performance's metadata: every figure (NaN where undefined, so the UI plots the rest;
    the sensors read labelled, fraud and realised_recall_at_threshold), the model version, the
    ETag of the label file measured ("" without one) and whether the file was (re)written."""
    numeric = {k: v for k, v in record.items() if k not in ("date", "model_version", "labels_source", "computed_at")}
    return {
        **{k: v if isinstance(v, int) else finite_or_nan(v) for k, v in numeric.items()},
        keys.MODEL_VERSION: str(record["model_version"]),
        keys.LABELS_ETAG: (record["labels_source"] or {}).get("etag") or "",
        "performance_file_written": written,
    }


def _figures(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "computed_at"}


def _confusion(skm, y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    if not len(y):
        return 0, 0, 0, 0
    tn, fp, fn, tp = skm.confusion_matrix(y, (s >= threshold).astype(int), labels=[0, 1]).ravel()
    return int(tn), int(fp), int(fn), int(tp)


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _require(frame: pd.DataFrame, columns, name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lack columns {missing} (has {list(frame.columns)})")


def finite_or_nan(value: float | None) -> float:
    """A figure for asset metadata: NaN where undefined, so the UI can plot the partitions that have one."""
    return float("nan") if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value)
