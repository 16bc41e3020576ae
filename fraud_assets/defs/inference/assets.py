"""Inference group, one partition per UTC day: parse -> score -> store / alert / monitor drift."""

import functools
import tempfile
from pathlib import Path

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    Config,
    Failure,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.common import (
    AWS_RETRY_POLICY,
    daily_partitions,
    markdown_table,
    selected_checks,
)
from fraud_assets.defs.inference import checks
from fraud_assets.defs.resources import AlertBudget, AwsClients, FraudPlatform
from fraud_assets.lib import metadata_keys as keys
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
from fraud_assets.lib.config import daily_batch_key
from fraud_assets.lib.features.serving import serve_history, with_served_history
from fraud_assets.lib.features.store import AggregateItemError
from fraud_assets.lib.inference import alerts as alerts_lib
from fraud_assets.lib.inference import drift as drift_lib
from fraud_assets.lib.inference import reasons as reasons_lib
from fraud_assets.lib.inference import score_store, scoring
from fraud_assets.lib.inference.daily import BatchError, MissingBatchError, parse_daily_batch
from fraud_assets.lib.inference.summaries import ScoreSummary, TransactionCounts
from fraud_assets.lib.training import endpoint as endpoint_lib
from fraud_assets.lib.training.model import MissingModelInputs, load_model_package

daily_batches = AssetSpec(
    "daily_batches",
    partitions_def=daily_partitions,
    description="The day's card transactions, a JSON array at s3://<data bucket>/daily-batches/{date}.json "
    "(id, timestamp, amount, category, customerId, merchant, features). Arrives from outside Dagster.",
    kinds={"s3", "json"},
)

_COMMON = dict(partitions_def=daily_partitions, retry_policy=AWS_RETRY_POLICY)


@asset(
    **_COMMON,
    deps=[daily_batches],
    kinds={"pandas", "s3", "parquet", "dynamodb"},
    description="The day's batch parsed and validated (the original design's ETL stage). Rows with problems go to a "
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
    counts = TransactionCounts(date, source, batch.received, len(batch.accepted), len(batch.quarantined))
    context.add_output_metadata(
        output_name="result",
        metadata={
            keys.RECEIVED: counts.received,
            "accepted": counts.accepted,
            keys.QUARANTINED: counts.quarantined,
            # Scored with the features that need no history (history features missing).
            "without_customer": int(batch.accepted["customerId"].isna().sum()),
            "without_terminal": int(batch.accepted["merchant"].isna().sum()),
            "source": MetadataValue.path(source),
            "quarantine_sample": quarantine_sample(batch.quarantined),
        },
    )
    yield Output(StageResult(summary=counts.to_summary(), tables={"transactions": batch.accepted, "quarantine": batch.quarantined}))
    yield from selected_checks(
        context, [checks.row_accounting(batch.received, batch.accepted, batch.quarantined), checks.schema_and_values(batch.accepted)]
    )


def quarantine_sample(quarantined: pd.DataFrame) -> MetadataValue:
    """The first reasons a table of quarantined rows (a batch's, a label file's) gives, as markdown."""
    reasons = quarantined["reason"].head(10).tolist() if len(quarantined) else []
    return MetadataValue.md(markdown_table(["reason"], [(r,) for r in reasons]) if reasons else "nothing quarantined")


class DailyScoresConfig(Config):
    top_reasons: int = Field(
        default=reasons_lib.DEFAULT_TOP, ge=0, le=20, description="Contributing features to record per high-risk transaction (0: none)."
    )


@asset(
    **_COMMON,
    kinds={"sagemaker", "s3", "parquet"},
    description="Every accepted transaction scored through the deployed endpoint (boto3 sagemaker-runtime, "
    "byte-sized CSV batches), then calibrated with the model package's map: fraudScore (calibrated), rawScore, riskLevel "
    "(HIGH / MEDIUM / LOW by the model's thresholds, the original design's 0.8 / 0.5 by default), modelVersion. The high-risk "
    "rows also get their top contributing features (TreeSHAP from the very model package the endpoint serves): "
    "the `reasons` table.",
    # The endpoint it reads is the training graph's deployed_endpoint, the customer history the
    # aggregates written up to the day before: lineage shows both links.
    deps=[
        "deployed_endpoint",
        AssetDep("feature_aggregates", partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)),
    ],
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
    # Through the endpoint, released with the very model package it serves (its recorded URI).
    try:
        day = scoring.score_day(
            aws.client("sagemaker-runtime"),
            current,
            get_bytes(client, current["model_uri"]),
            transactions,
            context.partition_key,
            config.top_reasons,
            serve_history=functools.partial(serve_history, aws.client("dynamodb"), platform.aggregates_table, context.partition_key),
        )
    except (MissingModelInputs, AggregateItemError) as err:  # bad input: no retry mends it
        raise Failure(str(err), allow_retries=False) from err
    summary = day.summary
    publish_metrics(
        aws.client("cloudwatch"),
        day.cloudwatch_metrics(TransactionCounts.from_summary(daily_transactions.summary)),
        model_dimensions(summary.endpoint_name, summary.model_version),
        units=scoring.SCORING_METRIC_UNITS,
    )
    context.add_output_metadata(output_name="result", metadata=day.metadata())
    yield Output(StageResult(summary=summary.to_summary(), tables=day.tables()))
    yield from selected_checks(
        context,
        [
            checks.every_transaction_scored_once(day.scores, transactions),
            checks.reasons_match_endpoint(day.explanation, day.explained_raw_scores),
        ],
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
                "risk_distribution": ScoreSummary.from_summary(daily_scores.summary).risk_distribution(),
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
    "SNS fraud-detection-alerts at most 100 per message, once per day: a ledger in S3 records what was sent. With the "
    "alert_budget resource's cap_at_budget (FRAUD_ALERT_CAP_AT_BUDGET=1) only the day's budget (FRAUD_ALERT_BUDGET, 100) "
    "highest-ranked alerts are sent; alerts_held_back counts the rest.",
)
def fraud_alerts(
    context: AssetExecutionContext,
    config: FraudAlertsConfig,
    daily_scores: StageResult,
    daily_transactions: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
    alert_budget: AlertBudget,
) -> StageResult:
    scored = ScoreSummary.from_summary(daily_scores.summary)
    sns = aws.client("sns")
    day = alerts_lib.send_day_alerts(
        sns,
        s3_client(s3),
        date=context.partition_key,
        scores=daily_scores.tables["scores"],
        transactions=daily_transactions.tables["transactions"],
        reasons=daily_scores.tables.get("reasons"),
        high_threshold=scored.high_risk_threshold,
        urgent_threshold=config.urgent_threshold,
        topic_arn=_topic_arn(sns, platform.alerts_topic),
        ledger_bucket=platform.workflow_bucket,
        resend=config.resend,
        budget=alert_budget.budget if alert_budget.cap_at_budget else None,
    )
    context.log.info(day.held_back_note())
    publish_metrics(
        aws.client("cloudwatch"),
        day.cloudwatch_metrics(),
        model_dimensions(scored.endpoint_name, scored.model_version),
        units=alerts_lib.ALERT_METRIC_UNITS,
    )
    context.add_output_metadata(
        {
            **day.metadata(),
            keys.ALERT_BUDGET: alert_budget.budget,
            "capped": alert_budget.cap_at_budget,
            "top_alerts": _top_alerts(day.alerts),
        }
    )
    return StageResult(summary=day.summary().to_summary(), tables={"alerts": pd.DataFrame(day.alerts)} if day.alerts else {})


def _top_alerts(alerts: list[dict]) -> MetadataValue:
    """The ten first alerts, as the messages rank them, with their reasons (markdown)."""
    return MetadataValue.md(
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
    scored = ScoreSummary.from_summary(daily_scores.summary)
    _, model_meta = load_model_package(get_bytes(client, scored.model_uri))
    day = drift_lib.assess_day(
        daily_scores.tables["scores"],
        with_served_history(daily_transactions.tables["transactions"], daily_scores.tables.get("history_features")),
        scored,
        model_meta,
        history=drift_lib.load_history(client, platform.metrics_bucket, date),
    )
    put_json(client, platform.metrics_bucket, drift_lib.metrics_key(date), day.record)
    publish_metrics(aws.client("cloudwatch"), day.cloudwatch_metrics(), model_dimensions(scored.endpoint_name, scored.model_version))
    if day.drifted:
        sns = aws.client("sns")
        alerts_lib.publish_alerts(
            sns,
            client,
            topic_arn=_topic_arn(sns, platform.monitoring_topic),
            ledger_bucket=platform.workflow_bucket,
            ledger_prefix=f"monitoring-ledger/{date}",
            messages=[day.monitoring_message()],
        )
    context.add_output_metadata(output_name="result", metadata={**day.metadata(), "feature_psi": _feature_psi(day)})
    yield Output(StageResult(summary=day.record))
    yield from selected_checks(context, checks.drift_warnings(day.record))


def _feature_psi(day: drift_lib.DriftDay) -> MetadataValue:
    """The features' PSI against training, largest first (markdown), or why there is none."""
    psi = day.record["featurePsi"]
    if psi:
        return MetadataValue.md(markdown_table(["feature", "PSI"], sorted(psi.items(), key=lambda kv: -kv[1])))
    return MetadataValue.md("no transactions on this day" if not day.scored_any else "no feature reference in the model")
