"""Inference group, one partition per UTC day: parse -> score -> store / alert / monitor drift."""

import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetSpec,
    Config,
    Failure,
    MetadataValue,
    Output,
    asset,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.common import (
    AWS_RETRY_POLICY,
    INFERENCE,
    OWNERS,
    daily_partitions,
    markdown_table,
    selected_checks,
)
from fraud_assets.defs.inference import checks
from fraud_assets.defs.resources import AwsClients, FraudPlatform
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.cloudwatch import model_dimensions, publish_metrics
from fraud_assets.lib.aws.storage import (
    S3Uri,
    StageResult,
    download_to_file,
    get_bytes,
    object_exists,
    put_json,
)
from fraud_assets.lib.config import TRANSACTION_ID, daily_batch_key
from fraud_assets.lib.inference import alerts as alerts_lib
from fraud_assets.lib.inference import drift as drift_lib
from fraud_assets.lib.inference import reasons as reasons_lib
from fraud_assets.lib.inference import score_store, scoring
from fraud_assets.lib.inference.daily import BatchError, MissingBatchError, parse_daily_batch
from fraud_assets.lib.training import endpoint as endpoint_lib
from fraud_assets.lib.training.calibration import calibrate, thresholds_of
from fraud_assets.lib.training.model import load_model_package, model_inputs

daily_batches = AssetSpec(
    "daily_batches",
    group_name=INFERENCE,
    partitions_def=daily_partitions,
    description="The day's card transactions, a JSON array at s3://<data bucket>/daily-batches/{date}.json "
    "(id, timestamp, amount, category, customerId, merchant, features). Arrives from outside Dagster.",
    kinds={"s3", "json"},
    owners=OWNERS,
)

_COMMON = dict(group_name=INFERENCE, partitions_def=daily_partitions, owners=OWNERS, retry_policy=AWS_RETRY_POLICY)


@asset(
    **_COMMON,
    deps=[daily_batches],
    kinds={"pandas", "s3", "parquet", "dynamodb"},
    description="The day's batch parsed and validated (the seeds' ETL stage). Rows with problems go to a "
    "quarantine table with the reason per row; received = accepted + quarantined, always. A row whose key "
    "(transactionId, timestamp) is already stored in FraudScores for another day is quarantined (reused_id): "
    "that day's score stays where it is.",
    check_specs=checks.daily_transaction_check_specs,
)
def daily_transactions(context: AssetExecutionContext, s3: S3Resource, aws: AwsClients, platform: FraudPlatform) -> StageResult:
    date = context.partition_key
    client = s3_client(s3)
    key = daily_batch_key(date)
    source = str(S3Uri(platform.data_bucket, key))
    if not object_exists(client, platform.data_bucket, key):
        raise Failure(str(MissingBatchError(platform.data_bucket, key, date)), allow_retries=False)
    dynamodb = aws.client("dynamodb")
    with tempfile.TemporaryDirectory(prefix="fraud-daily-") as tmp:
        # Streamed to a local file and parsed from it a block at a time: the day's JSON (~0.6 GB at
        # 1M transactions) never sits whole in memory next to the parsed arrays.
        # A score already stored for another day under a row's key stays that day's: the row is quarantined.
        try:
            batch = parse_daily_batch(
                download_to_file(client, source, Path(tmp) / "batch.json"),
                source,
                owner_of=lambda keys: score_store.stored_batch_dates(dynamodb, platform.scores_table, keys, other_than=date),
            )
        except BatchError as err:  # a malformed file: no retry of the step mends it
            raise Failure(str(err), allow_retries=False) from err
    counts = {"received": batch.received, "accepted": len(batch.accepted), "quarantined": len(batch.quarantined)}
    reasons = batch.quarantined["reason"].head(10).tolist() if len(batch.quarantined) else []
    context.add_output_metadata(
        output_name="result",
        metadata={
            **counts,
            "source": MetadataValue.path(source),
            "quarantine_sample": MetadataValue.md(
                markdown_table(["reason"], [(r,) for r in reasons]) if reasons else "nothing quarantined"
            ),
        },
    )
    yield Output(
        StageResult(
            summary={"date": date, "source": source, **counts},
            tables={"transactions": batch.accepted, "quarantine": batch.quarantined},
        )
    )
    yield from selected_checks(
        context, [checks.row_accounting(batch.received, batch.accepted, batch.quarantined), checks.schema_and_values(batch.accepted)]
    )


class DailyScoresConfig(Config):
    top_reasons: int = Field(
        default=reasons_lib.DEFAULT_TOP, ge=0, le=20, description="Contributing features to record per high-risk transaction (0: none)."
    )


@asset(
    **_COMMON,
    kinds={"sagemaker", "s3", "parquet"},
    description="Every accepted transaction scored through the deployed endpoint (boto3 sagemaker-runtime, "
    "byte-sized CSV batches), then calibrated with the model package's map: fraudScore (calibrated), rawScore, riskLevel "
    "(HIGH / MEDIUM / LOW by the model's thresholds, the seeds' 0.8 / 0.5 by default), modelVersion. The high-risk "
    "rows also get their top contributing features (TreeSHAP from the very model package the endpoint serves): "
    "the `reasons` table.",
    # The endpoint it reads is the training graph's deployed_endpoint: lineage shows the link.
    deps=["deployed_endpoint"],
    check_specs=checks.daily_score_check_specs,
)
def daily_scores(
    context: AssetExecutionContext,
    config: DailyScoresConfig,
    daily_transactions: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
):
    client = s3_client(s3)
    current = endpoint_lib.current_endpoint(client, platform.names)
    if current is None:
        raise Failure("no deployed endpoint: materialise the training group (deployed_endpoint) first", allow_retries=False)
    transactions = daily_transactions.tables["transactions"]
    # The package carries the training statistics the model's engineered features need, and the
    # booster the reasons come from: the very artifact the endpoint serves (its recorded URI).
    booster, model_meta = load_model_package(get_bytes(client, current["model_uri"]))
    model_meta.setdefault("feature_names", current["feature_names"])
    features = model_inputs(transactions, model_meta)
    started = time.perf_counter()
    raw_scores = scoring.score_through_endpoint(aws.client("sagemaker-runtime"), current["endpoint_name"], features)
    scoring_seconds = time.perf_counter() - started
    # The built-in XGBoost container serves the booster's raw probability; the package's
    # calibration map and thresholds (fitted in training) turn it into the released score here.
    scores = calibrate(raw_scores, model_meta.get("calibration"))
    high_threshold, medium_threshold = thresholds_of(model_meta)
    scored = pd.DataFrame(
        {
            # The columns' own arrays: to_numpy() would make a Python str and a Timestamp per row.
            TRANSACTION_ID: transactions[TRANSACTION_ID].array,
            "timestamp": transactions["timestamp"].array,
            "fraudScore": scores.astype(float),
            "rawScore": raw_scores.astype(float),
            "riskLevel": scoring.risk_levels(scores, high_threshold, medium_threshold),
            "scoringTimestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "modelVersion": current["model_version"],
            "endpointName": current["endpoint_name"],
        }
    )
    summary = scoring.score_summary(scores, high_threshold, medium_threshold)
    publish_metrics(
        aws.client("cloudwatch"),
        {
            "TransactionsReceived": daily_transactions.summary["received"],
            "TransactionsQuarantined": daily_transactions.summary["quarantined"],
            "TransactionsScored": len(scored),
            "HighRiskCount": summary["highRiskCount"],
            "HighRiskRate": summary["highRiskCount"] / len(scored) if len(scored) else None,
            "AverageScore": summary["averageScore"],
            "ScoringDuration": scoring_seconds,
        },
        model_dimensions(current["endpoint_name"], current["model_version"]),
        units={
            "TransactionsReceived": "Count",
            "TransactionsQuarantined": "Count",
            "TransactionsScored": "Count",
            "HighRiskCount": "Count",
            "ScoringDuration": "Seconds",
        },
    )
    high = np.flatnonzero(scored["riskLevel"].to_numpy() == scoring.HIGH) if config.top_reasons else np.empty(0, dtype=int)
    explanation = reasons_lib.explain(booster, features[high], model_meta["feature_names"])
    reasons = reasons_lib.reason_table(
        scored[TRANSACTION_ID].iloc[high].to_numpy(), features[high], explanation, model_meta["feature_names"], config.top_reasons
    )
    context.add_output_metadata(
        output_name="result",
        metadata={
            "scoring_seconds": scoring_seconds,
            "explained": len(high),
            "scored": len(scored),
            "high_risk": summary["highRiskCount"],
            "medium_risk": summary["mediumRiskCount"],
            "low_risk": summary["lowRiskCount"],
            "avg_score": summary["averageScore"],
            "high_risk_rate": summary["highRiskCount"] / len(scored) if len(scored) else 0.0,
            "model_version": current["model_version"],
            "endpoint_name": current["endpoint_name"],
            "high_risk_threshold": high_threshold,
            "calibrated": bool(model_meta.get("calibration")),
        },
    )
    yield Output(
        StageResult(
            summary={
                "date": context.partition_key,
                "modelVersion": current["model_version"],
                "modelUri": current["model_uri"],
                "endpointName": current["endpoint_name"],
                **summary,
                "explained": len(high),
                "topReasons": config.top_reasons,
                "thresholds": {"high": high_threshold, "medium": medium_threshold},
                "calibrated": bool(model_meta.get("calibration")),
            },
            tables={"scores": scored, "reasons": reasons},
        )
    )
    yield from selected_checks(
        context, [checks.every_transaction_scored_once(scored, transactions), checks.reasons_match_endpoint(explanation, raw_scores[high])]
    )


@asset(
    **_COMMON,
    kinds={"dynamodb"},
    description="The day's scores in DynamoDB FraudScores (PK transactionId, SK timestamp; GSI BatchDateIndex), "
    "25-item batch writes retried until no item is unprocessed. Idempotent: a rerun overwrites the same items.",
    check_specs=checks.stored_score_check_specs,
)
def stored_scores(context: AssetExecutionContext, daily_scores: StageResult, aws: AwsClients, platform: FraudPlatform):
    dynamodb = aws.client("dynamodb")
    # Made a chunk at a time as they are written (and again as they are read back): never the day's items at once.
    items = score_store.ScoreItems(
        daily_scores.tables["scores"], context.partition_key, reasons=reasons_lib.reasons_by_transaction(daily_scores.tables.get("reasons"))
    )
    result = score_store.write_scores(dynamodb, platform.scores_table, items)
    context.add_output_metadata(
        output_name="result", metadata={"written": result.written, "batches": result.batches, "retries": result.retries}
    )
    yield Output(
        StageResult(
            summary={
                "date": context.partition_key,
                "table": platform.scores_table,
                "written": result.written,
                "batches": result.batches,
                "retries": result.retries,
                "riskDistribution": {k: daily_scores.summary[k] for k in ("highRiskCount", "mediumRiskCount", "lowRiskCount")},
            }
        )
    )
    if context.selected_asset_check_keys:  # reads every item back: only when the check is asked for
        yield checks.stored_count_matches_scored(score_store.verify_stored(dynamodb, platform.scores_table, items))


class FraudAlertsConfig(Config):
    resend: bool = Field(default=False, description="Publish every alert message again, even those already sent for this day.")
    urgent_threshold: float = Field(default=0.95, description="fraudScore above which an alert is URGENT.")


@asset(
    **_COMMON,
    kinds={"sns"},
    description="High-risk transactions (calibrated fraudScore >= the model's high-risk threshold, 0.8 by default) "
    "ranked by score with priority, details and top reasons, published to "
    "SNS fraud-detection-alerts at most 100 per message, once per day: a ledger in S3 records what was sent.",
)
def fraud_alerts(
    context: AssetExecutionContext,
    config: FraudAlertsConfig,
    daily_scores: StageResult,
    daily_transactions: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
) -> StageResult:
    date = context.partition_key
    high_threshold = daily_scores.summary["thresholds"]["high"]
    alerts = alerts_lib.high_risk_alerts(
        daily_scores.tables["scores"],
        daily_transactions.tables["transactions"],
        threshold=high_threshold,
        urgent_threshold=max(config.urgent_threshold, high_threshold),
        reasons=reasons_lib.reasons_by_transaction(daily_scores.tables.get("reasons")),
    )
    messages = alerts_lib.alert_messages(alerts, date)
    sns = aws.client("sns")
    published = alerts_lib.publish_alerts(
        sns,
        s3_client(s3),
        topic_arn=_topic_arn(sns, platform.alerts_topic),
        ledger_bucket=platform.workflow_bucket,
        ledger_prefix=f"alert-ledger/{date}",
        messages=messages,
        resend=config.resend,
    )
    sent = set(published.sent)
    publish_metrics(
        aws.client("cloudwatch"),
        # This run's sends: a re-run that finds every message in the ledger sends, and counts, none.
        {"AlertsSent": sum(m["alertCount"] for m in messages if m["messageKey"] in sent), "AlertMessagesSent": len(sent)},
        model_dimensions(daily_scores.summary["endpointName"], daily_scores.summary["modelVersion"]),
        units={"AlertsSent": "Count", "AlertMessagesSent": "Count"},
    )
    context.add_output_metadata(
        {
            "high_risk": len(alerts),
            "urgent": sum(1 for a in alerts if a["alertPriority"] == "URGENT"),
            "messages": len(messages),
            "messages_sent": len(published.sent),
            "messages_skipped": len(published.skipped),
            "top_alerts": MetadataValue.md(
                markdown_table(
                    ["transactionId", "fraudScore", "priority", "amount", "merchant", "top reasons"],
                    [
                        (
                            a["transactionId"],
                            a["fraudScore"],
                            a["alertPriority"],
                            a["amount"],
                            a["merchant"],
                            ", ".join(f"{r['feature']} {r['contribution']:+.2f}" for r in a["topReasons"]),
                        )
                        for a in alerts[:10]
                    ],
                )
            ),
        }
    )
    return StageResult(
        summary={
            "date": date,
            "highRiskCount": len(alerts),
            "alertsSent": len(published.sent),
            "batchCount": len(messages),
            "sentMessageKeys": published.sent,
            "skippedMessageKeys": published.skipped,
        },
        tables={"alerts": pd.DataFrame(alerts)} if alerts else {},
    )


def _topic_arn(sns, name: str) -> str:
    # Looked up, never created: a mistyped name fails the step instead of alerting nobody.
    try:
        return alerts_lib.find_topic_arn(sns, name)
    except alerts_lib.MissingTopicError as err:
        raise Failure(str(err), metadata={"topic": name}, allow_retries=False) from err


@asset(
    **_COMMON,
    kinds={"s3", "sns"},
    description="The day's average score and risk shares against the rolling 30-day baseline (drift when the "
    "average moves > 0.1 or the high-risk share > 0.05; needs 7 days of history), PSI of the scores and top "
    "features against training. Writes metrics/{date}.json; notifies fraud-detection-monitoring on drift.",
    check_specs=checks.drift_check_specs,
)
def drift_metrics(
    context: AssetExecutionContext,
    daily_scores: StageResult,
    daily_transactions: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
):
    date = context.partition_key
    client = s3_client(s3)
    scored = daily_scores.tables["scores"]
    scores = scored["fraudScore"].to_numpy()
    thresholds = daily_scores.summary["thresholds"]
    current = drift_lib.daily_metrics(scores, date, thresholds["high"], thresholds["medium"])
    history = drift_lib.load_history(client, platform.metrics_bucket, date)
    drift = drift_lib.detect_drift(current, history)
    _, model_meta = load_model_package(get_bytes(client, daily_scores.summary["modelUri"]))
    reference = model_meta.get("reference", {})
    today = pd.DataFrame(model_inputs(daily_transactions.tables["transactions"], model_meta), columns=model_meta["feature_names"])
    # An empty day (an empty batch, or every row quarantined) is recorded with no verdict: no PSI of nothing.
    scored_any = len(scores) > 0
    # Raw scores on both sides: the model's own output, continuous; the calibrated ones are mostly ties.
    score_psi = (
        drift_lib.population_stability_index(np.asarray(reference["validation_raw_scores"]), scored["rawScore"].to_numpy())
        if reference.get("validation_raw_scores") and scored_any
        else None
    )
    feature_psi = (
        drift_lib.feature_psi(pd.DataFrame(reference["features"]), today, list(reference["features"]))
        if reference.get("features") and scored_any
        else {}
    )
    record = {
        **current,
        **drift,
        "scorePsi": score_psi,
        "featurePsi": feature_psi,
        "maxFeaturePsi": max(feature_psi.values()) if feature_psi else None,
        "modelVersion": daily_scores.summary["modelVersion"],
    }
    # The warnings that fired, in the record: the report's headline says what the checks say.
    record["warnings"] = [v["name"] for v in drift_lib.drift_warnings(record) if not v["passed"]]
    put_json(client, platform.metrics_bucket, f"metrics/{date}.json", record)
    publish_metrics(
        aws.client("cloudwatch"),
        {
            "AvgScoreDrift": drift.get("avgScoreDrift"),
            "HighRiskDrift": drift.get("highRiskDrift"),
            "ScorePsi": score_psi,
            "MaxFeaturePsi": record["maxFeaturePsi"],
            "DriftDetected": bool(drift["driftDetected"]),
        },
        model_dimensions(daily_scores.summary["endpointName"], daily_scores.summary["modelVersion"]),
    )
    if drift["driftDetected"]:
        sns = aws.client("sns")
        alerts_lib.publish_alerts(
            sns,
            client,
            topic_arn=_topic_arn(sns, platform.monitoring_topic),
            ledger_bucket=platform.workflow_bucket,
            ledger_prefix=f"monitoring-ledger/{date}",
            messages=[{"messageKey": f"drift-{date}", "subject": f"Fraud score drift on {date}", "batchDate": date, "drift": record}],
        )
    context.add_output_metadata(
        output_name="result",
        metadata={
            "avg_score": current["avgScore"],
            "high_risk_pct": current["highRiskPct"],
            "avg_score_drift": drift.get("avgScoreDrift") if drift.get("avgScoreDrift") is not None else float("nan"),
            "high_risk_drift": drift.get("highRiskDrift") if drift.get("highRiskDrift") is not None else float("nan"),
            "history_days": len(history),
            "drift_detected": bool(drift["driftDetected"]),
            "score_psi": score_psi if score_psi is not None else float("nan"),
            "reason": drift.get("reason", ""),
            "feature_psi": MetadataValue.md(
                markdown_table(["feature", "PSI"], sorted(feature_psi.items(), key=lambda kv: -kv[1]))
                if feature_psi
                else "no transactions on this day"
                if not scored_any
                else "no feature reference in the model"
            ),
        },
    )
    yield Output(StageResult(summary=record))
    yield from selected_checks(context, checks.drift_warnings(record))
