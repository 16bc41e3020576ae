"""Labels come back: fraud_labels (external, daily), the day's scores joined with them
(labelled_scores), and the realised quality of the model that scored the day (model_performance),
recomputed by label_file_sensor whenever a day's label file appears or changes."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetSpec,
    Failure,
    MetadataValue,
    Output,
    asset,
)
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.common import AWS_RETRY_POLICY, daily_check, daily_partitions, selected_checks
from fraud_assets.defs.inference.assets import quarantine_sample
from fraud_assets.defs.resources import AlertBudget, AwsClients, FraudPlatform, PerformanceFloors
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.storage import S3Uri, StageResult
from fraud_assets.lib.config import label_file_key
from fraud_assets.lib.inference import alerts as alerts_lib
from fraud_assets.lib.inference import performance as perf_lib
from fraud_assets.lib.inference.labels import LabelFileError
from fraud_assets.lib.inference.summaries import LabelledSummary, ScoreSummary

fraud_labels = AssetSpec(
    "fraud_labels",
    partitions_def=daily_partitions,
    description="Confirmed outcomes of the day's transactions (chargebacks, analyst decisions), a JSON array of "
    "{transactionId, isFraud, labelledAt, source} at s3://<data bucket>/labels/{date}.json. Arrives from outside "
    "Dagster, days after the day, and may be replaced by a fuller file.",
    kinds={"s3", "json"},
)

_COMMON = dict(partitions_def=daily_partitions, retry_policy=AWS_RETRY_POLICY)


@asset(
    **_COMMON,
    deps=[fraud_labels],
    kinds={"pandas", "s3", "parquet"},
    description="Every scored transaction of the day with its amount and, once it has come back, its label "
    "(isFraud empty = not labelled yet). Labels for unknown transactions, duplicates, conflicting and non-boolean "
    "labels are quarantined with the reason; received = accepted + quarantined. No label file yet = no labels.",
    check_specs=[
        daily_check("labels_clean", asset="labelled_scores", description="Warns when the day's label file had labels to quarantine.")
    ],
)
def labelled_scores(
    context: AssetExecutionContext,
    daily_scores: StageResult,
    daily_transactions: StageResult,
    s3: S3Resource,
    platform: FraudPlatform,
):
    key = label_file_key(context.partition_key)
    uri = str(S3Uri(platform.data_bucket, key))
    data, source = perf_lib.fetch_label_file(s3_client(s3), platform.data_bucket, key)
    try:
        day = perf_lib.label_day(
            data,
            source,
            uri,
            daily_scores.tables["scores"],
            daily_transactions.tables["transactions"],
            ScoreSummary.from_summary(daily_scores.summary),
        )
    except LabelFileError as err:
        raise Failure(str(err), allow_retries=False) from err
    context.add_output_metadata(
        output_name="result",
        metadata={
            **day.metadata(),
            "label_file": MetadataValue.path(uri),
            "quarantine_sample": quarantine_sample(day.labels.quarantined),
        },
    )
    yield Output(
        StageResult(summary=day.summary.to_summary(), tables={"labelled_scores": day.joined, "label_quarantine": day.labels.quarantined})
    )
    passed, description = day.labels_clean()
    yield from selected_checks(
        context,
        [
            AssetCheckResult(
                check_name="labels_clean",
                passed=passed,
                severity=AssetCheckSeverity.WARN,
                metadata={"received": day.summary.received, "quarantined": day.summary.quarantined},
                description=description,
            )
        ],
    )


# check name -> (what is compared, resource field holding the floor)
PERFORMANCE_WARNINGS = {
    "realised_recall": ("recall at the high-risk threshold", "recall_floor"),
    "realised_alert_precision": ("alert precision (best case: unlabelled alerts counted as fraud)", "alert_precision_floor"),
    "realised_accuracy": ("accuracy", "accuracy_floor"),
}
performance_check_specs = [
    daily_check(
        name,
        asset="model_performance",
        description=f"Realised {what} on the day's labelled transactions at or above the performance_floors "
        f"resource's {field}; a warning, published once to the monitoring topic.",
    )
    for name, (what, field) in PERFORMANCE_WARNINGS.items()
]


@asset(
    **_COMMON,
    kinds={"s3", "sns"},
    description="Realised quality of the model that scored the day, on its labelled transactions: precision, recall "
    "and false positive rate at the high- and medium-risk thresholds of the model that scored the day, alert precision, missed fraud (count, amount), ROC-AUC, PR-AUC, "
    "accuracy, and the investigator measures at k = the alert budget (FRAUD_ALERT_BUDGET, 100): precision@k, card "
    "precision@k, compromised cards found in the top k. Writes performance/{date}.json to the metrics bucket and CloudWatch FraudDetection RealisedRecall, "
    "RealisedPrecision, RealisedAccuracy, AlertPrecision (unchanged figures leave both untouched); warns and "
    "notifies fraud-detection-monitoring below the floors.",
    check_specs=performance_check_specs,
)
def model_performance(
    context: AssetExecutionContext,
    labelled_scores: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
    performance_floors: PerformanceFloors,
    alert_budget: AlertBudget,
):
    date = context.partition_key
    client = s3_client(s3)
    labelled = LabelledSummary.from_summary(labelled_scores.summary)
    joined = labelled_scores.tables["labelled_scores"]
    record = perf_lib.realised_performance(
        joined,
        date,
        labelled.labels_source,
        high_threshold=labelled.high_risk_threshold,
        medium_threshold=labelled.medium_risk_threshold,
        alert_budget=alert_budget.budget,
    )
    # Unchanged figures leave the file and the metrics as they were.
    written = perf_lib.publish_performance(client, aws.client("cloudwatch"), platform.metrics_bucket, record, labelled.endpoint_name)
    best_alert_precision = perf_lib.alert_precision_best_case(joined, labelled.high_risk_threshold)
    verdicts = performance_verdicts(record, best_alert_precision, performance_floors)
    breached = [(v.check_name, v.description) for v in verdicts if not v.passed]
    if breached:
        sns = aws.client("sns")
        alerts_lib.publish_alerts(
            sns,
            client,
            topic_arn=alerts_lib.find_topic_arn(sns, platform.monitoring_topic),  # looked up, never created
            ledger_bucket=platform.workflow_bucket,
            ledger_prefix=f"monitoring-ledger/{date}",
            messages=[perf_lib.floor_breach_message(record, breached)],
        )
    context.add_output_metadata(
        output_name="result",
        metadata={
            **perf_lib.performance_metadata(record, written),
            "performance_uri": MetadataValue.path(f"s3://{platform.metrics_bucket}/{perf_lib.performance_key(date)}"),
        },
    )
    yield Output(StageResult(summary=record))
    yield from selected_checks(context, verdicts)


def performance_verdicts(record: dict, best_alert_precision: float | None, floors: PerformanceFloors) -> list[AssetCheckResult]:
    """Warnings on the realised figures; no verdict (passed) where a figure is undefined. Alert
    precision is judged in its best case (unlabelled alerts counted as fraud), so a warning is never
    taken back by labels arriving later."""
    values = {
        "realised_recall": record["realised_recall_at_threshold"],
        "realised_alert_precision": best_alert_precision if record["labelled"] else None,
        "realised_accuracy": record["accuracy"],
    }
    results = []
    for name, (what, field) in PERFORMANCE_WARNINGS.items():
        value, floor = values[name], getattr(floors, field)
        if value is None:
            detail = f"no {what} for {record['date']} yet (labelled {record['labelled']}, alerted {record['alerted']})"
        else:
            detail = f"{'' if value >= floor else 'WARNING: '}{what} {value:.4f} {'>=' if value >= floor else 'below'} {floor}"
        results.append(
            AssetCheckResult(
                check_name=name,
                severity=AssetCheckSeverity.WARN,
                passed=value is None or value >= floor,
                description=detail,
                metadata={"value": perf_lib.finite_or_nan(value), "floor": floor, "model_version": str(record["model_version"])},
            )
        )
    return results
