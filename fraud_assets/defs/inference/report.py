"""The daily fraud report: the day on one HTML page in the metrics bucket, for the analysts and
their team lead, who never open Dagster."""

import math

import numpy as np
from dagster import AssetExecutionContext, MetadataValue, asset
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.common import AWS_RETRY_POLICY, daily_partitions
from fraud_assets.defs.resources import FraudPlatform
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.storage import StageResult, get_bytes, put_bytes
from fraud_assets.lib.inference import drift as drift_lib
from fraud_assets.lib.inference import report as report_lib
from fraud_assets.lib.inference.performance import load_performance, load_performance_history
from fraud_assets.lib.inference.summaries import AlertSummary, ScoreSummary, TransactionCounts
from fraud_assets.lib.training.model import load_model_package


def _alerts(fraud_alerts: StageResult) -> list[dict]:
    """The alerts exactly as fraud_alerts sent them (ranked, with topReasons)."""
    table = fraud_alerts.tables.get("alerts")
    if table is None or table.empty:
        return []
    records = table.to_dict("records")
    for record in records:
        reasons = record.get("topReasons")
        record["topReasons"] = [dict(r) for r in reasons] if isinstance(reasons, (list, np.ndarray)) else []
    return records


@asset(
    partitions_def=daily_partitions,
    retry_policy=AWS_RETRY_POLICY,
    kinds={"s3", "html"},
    description="The original design's daily report: a self-contained HTML page at s3://<metrics bucket>/reports/fraud-daily-{date}.html "
    "(transactions processed, risk distribution, alerts ranked with their reasons, top merchants and categories among "
    "high-risk transactions, drift and the 30-day trend as inline SVG charts, model version and threshold policy, and "
    "confirmed fraud, false positive rate and alert precision from performance/{date}.json once labels exist, and "
    "precision@k, card precision@k and compromised cards found per labelled day of the last 30).",
)
def daily_report(
    context: AssetExecutionContext,
    daily_transactions: StageResult,
    daily_scores: StageResult,
    fraud_alerts: StageResult,
    drift_metrics: StageResult,
    s3: S3Resource,
    platform: FraudPlatform,
) -> StageResult:
    date = context.partition_key
    client = s3_client(s3)
    scored = ScoreSummary.from_summary(daily_scores.summary)
    alert_summary = AlertSummary.from_summary(fraud_alerts.summary)
    _, model_meta = load_model_package(get_bytes(client, scored.model_uri))
    performance = load_performance(client, platform.metrics_bucket, date)
    figures = report_lib.report_figures(
        date=date,
        counts=TransactionCounts.from_summary(daily_transactions.summary).to_summary(),
        score_summary=scored.to_summary(),
        alerts=_alerts(fraud_alerts),
        drift=drift_metrics.summary,
        history=drift_lib.load_history(client, platform.metrics_bucket, date, days=drift_lib.HISTORY_DAYS - 1),
        model={
            "modelVersion": scored.model_version,
            "thresholds": model_meta.get("thresholds"),
            "calibrated": bool(model_meta.get("calibration")),
        },
        performance=performance,
        alert_messages_sent=alert_summary.alerts_sent,
        performance_history=load_performance_history(client, platform.metrics_bucket, date, report_lib.INVESTIGATOR_DAYS - 1),
        alerts_held_back=alert_summary.alerts_held_back,
        alert_budget=alert_summary.alert_budget,
    )
    page = report_lib.render_html(figures)
    uri = put_bytes(
        client, platform.metrics_bucket, report_lib.report_key(date), page.encode("utf-8"), content_type="text/html; charset=utf-8"
    )
    headline = report_lib.headline(figures)
    context.add_output_metadata(
        {
            "report_uri": MetadataValue.path(str(uri)),
            "report_key": uri.key,
            "report_bytes": len(page.encode("utf-8")),
            "model_version": str(figures["model_version"]),
            "labels_available": performance is not None,
            **headline,
        }
    )
    return StageResult(
        summary={
            "date": date,
            "report_uri": str(uri),
            "model_version": figures["model_version"],
            "labels_available": performance is not None,
            **{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in headline.items()},
        }
    )
