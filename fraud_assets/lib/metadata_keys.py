"""The metadata contract: the materialization metadata keys one module writes and another reads
(the IO manager, the sensors, `main_job` and the CLI read what the assets record). One name per
fact, snake_case, defined here once; a reader takes a key with `require`, so a rename fails loudly
where it is read instead of turning a summary into None or silencing a sensor.

Stage summaries (`output.json`) that another asset reads have typed shapes in the domain's lib
module (e.g. `lib/training/evaluation.py`); these keys are what the UI, sensors and the CLI see."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

# Written by the IO manager on every stored output.
OUTPUT_URI = "output_uri"

# Training: fraud_model, evaluation_metrics, deployed_endpoint, data_extraction.
MODEL_VERSION = "model_version"
MODEL_URI = "model_uri"
FEATURE_NAMES = "feature_names"
ENDPOINT_NAME = "endpoint_name"
ROWS = "rows"
ROWS_FROM_DAILY = "rows_from_daily"
DATES = "dates"
HIGH_RISK_THRESHOLD = "high_risk_threshold"

# Inference: daily_transactions, daily_scores, fraud_alerts, drift_metrics, labelled_scores,
# model_performance.
RECEIVED = "received"
QUARANTINED = "quarantined"
SCORED = "scored"
HIGH_RISK = "high_risk"
AVG_SCORE = "avg_score"
MESSAGES_SENT = "messages_sent"
DRIFT_DETECTED = "drift_detected"
LABELLED = "labelled"
FRAUD = "fraud"
LABELS_ETAG = "labels_etag"
REALISED_RECALL_AT_THRESHOLD = "realised_recall_at_threshold"
REALISED_PRECISION_AT_THRESHOLD = "realised_precision_at_threshold"
ALERT_PRECISION = "alert_precision"
# fraud_alerts under the alert budget (model_performance records alert_budget too, with the
# investigator measures: lib/inference/investigator.py's INVESTIGATOR_KEYS).
ALERT_BUDGET = "alert_budget"
ALERTS_HELD_BACK = "alerts_held_back"


class MissingMetadata(KeyError):
    """A materialization lacks a key the contract promises: the writer and the reader disagree."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def artifact_uri_key(name: str) -> str:
    """The metadata key under which the IO manager records where a table or file went
    (`model.tar.gz` -> `model_tar_gz_uri`): dots are not allowed in Dagster metadata keys' UI paths."""
    return f"{name.replace('.', '_')}_uri"


def challenger_recent_key(side: str, measure: str) -> str:
    """evaluation_metrics' side-by-side figure on the recent labelled window, e.g.
    `challenger_recent_recall_at_threshold`."""
    if side not in ("challenger", "champion"):
        raise ValueError(f"side must be challenger or champion, not {side!r}")
    return f"{side}_recent_{measure}"


def require(metadata: Mapping[str, Any], key: str, where: str) -> Any:
    """metadata[key], or MissingMetadata naming the key, where it was read and what is there."""
    try:
        return metadata[key]
    except KeyError:
        raise MissingMetadata(f"{where}: no {key!r} in its metadata (has {sorted(metadata)})") from None


class MissingSummaryKey(KeyError):
    """A stage summary (output.json) lacks a key its typed shape requires: the writer and the
    reader disagree (or the summary was written before a rename)."""

    def __str__(self) -> str:
        return str(self.args[0])


def summary_keys(summary: Mapping[str, Any], keys: Sequence[str], stage: str) -> dict[str, Any]:
    """`keys` read out of `stage`'s summary, or MissingSummaryKey naming every missing key and what
    is there: what the typed summaries' `from_summary` is made of."""
    missing = [k for k in keys if k not in summary]
    if missing:
        raise MissingSummaryKey(f"{stage}'s summary has no {', '.join(map(repr, missing))} (has {sorted(summary)})")
    return {k: summary[k] for k in keys}


def summary_fields(shape: type, summary: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """summary_keys for the fields of the dataclass `shape` (a summary written by its to_summary)."""
    import dataclasses

    return summary_keys(summary, [f.name for f in dataclasses.fields(shape)], stage)
