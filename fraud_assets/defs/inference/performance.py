"""Labels come back: fraud_labels (external, daily), the day's scores joined with them
(labelled_scores), and the realised quality of the model that scored the day (model_performance),
recomputed by label_file_sensor whenever a day's label file appears or changes."""

import hashlib

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

from fraud_assets.defs.common import AWS_RETRY_POLICY, INFERENCE, OWNERS, daily_check, daily_partitions, markdown_table, selected_checks
from fraud_assets.defs.resources import AwsClients, FraudPlatform, PerformanceFloors
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.cloudwatch import model_dimensions, publish_metrics
from fraud_assets.lib.aws.storage import S3Uri, StageResult
from fraud_assets.lib.config import TRANSACTION_ID, label_file_key
from fraud_assets.lib.inference import alerts as alerts_lib
from fraud_assets.lib.inference import performance as perf_lib
from fraud_assets.lib.inference.labels import LabelFileError, parse_label_file

fraud_labels = AssetSpec(
    "fraud_labels",
    group_name=INFERENCE,
    partitions_def=daily_partitions,
    description="Confirmed outcomes of the day's transactions (chargebacks, analyst decisions), a JSON array of "
    "{transactionId, isFraud, labelledAt, source} at s3://<data bucket>/labels/{date}.json. Arrives from outside "
    "Dagster, days after the day, and may be replaced by a fuller file.",
    kinds={"s3", "json"},
    owners=OWNERS,
)

_COMMON = dict(group_name=INFERENCE, partitions_def=daily_partitions, owners=OWNERS, retry_policy=AWS_RETRY_POLICY)


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
    date = context.partition_key
    client = s3_client(s3)
    key = label_file_key(date)
    uri = str(S3Uri(platform.data_bucket, key))
    transactions = daily_transactions.tables["transactions"]
    try:
        obj = client.get_object(Bucket=platform.data_bucket, Key=key)
    except client.exceptions.NoSuchKey:
        obj = None
    try:
        # Body and ETag from one response: the ETag recorded is the one of the bytes parsed.
        labels = parse_label_file(obj["Body"].read() if obj else b"[]", uri, known_ids=transactions[TRANSACTION_ID])
    except LabelFileError as err:
        raise Failure(str(err), allow_retries=False) from err
    source = {"uri": uri, "etag": obj["ETag"].strip('"'), "version_id": obj.get("VersionId")} if obj else None
    joined = perf_lib.join_labels(daily_scores.tables["scores"], transactions, labels.accepted)
    counts = labels.summary()
    labelled = int(joined["isFraud"].notna().sum())
    reasons = labels.quarantined["reason"].head(10).tolist()
    context.add_output_metadata(
        output_name="result",
        metadata={
            "received": counts["received"],
            "accepted": counts["accepted"],
            "quarantined": counts["quarantined"],
            "labelled": labelled,
            "label_coverage": labelled / len(joined) if len(joined) else float("nan"),
            "label_file": MetadataValue.path(uri),
            "labels_etag": source["etag"] if source else "",
            "quarantine_sample": MetadataValue.md(
                markdown_table(["reason"], [(r,) for r in reasons]) if reasons else "nothing quarantined"
            ),
        },
    )
    yield Output(
        StageResult(
            summary={
                "date": date,
                "labelsSource": source,
                "endpointName": daily_scores.summary["endpointName"],
                # The thresholds the day was scored, stored and alerted at: what its quality is measured at.
                "thresholds": daily_scores.summary["thresholds"],
                "scored": len(joined),
                "labelled": labelled,
                **counts,
            },
            tables={"labelled_scores": joined, "label_quarantine": labels.quarantined},
        )
    )
    quarantined = counts["quarantineChecks"]
    yield from selected_checks(
        context,
        [
            AssetCheckResult(
                check_name="labels_clean",
                passed=not quarantined,
                severity=AssetCheckSeverity.WARN,
                metadata={"received": counts["received"], "quarantined": counts["quarantined"]},
                description=(
                    f"{counts['quarantined']} of {counts['received']} labels quarantined: "
                    + ", ".join(f"{k} {v}" for k, v in quarantined.items())
                )
                if quarantined
                else f"all {counts['received']} labels accepted",
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
    "accuracy. Writes performance/{date}.json to the metrics bucket and CloudWatch FraudDetection RealisedRecall, "
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
):
    date = context.partition_key
    client = s3_client(s3)
    joined = labelled_scores.tables["labelled_scores"]
    thresholds = labelled_scores.summary["thresholds"]
    record = perf_lib.realised_performance(
        joined, date, labelled_scores.summary["labelsSource"], high_threshold=thresholds["high"], medium_threshold=thresholds["medium"]
    )
    uri = f"s3://{platform.metrics_bucket}/{perf_lib.performance_key(date)}"
    written = not perf_lib.performance_unchanged(client, platform.metrics_bucket, record)
    if written:
        # Metrics before the file: should publishing fail, the retry still finds the figures new.
        publish_metrics(
            aws.client("cloudwatch"),
            {
                "RealisedRecall": record["realised_recall_at_threshold"],
                "RealisedPrecision": record["realised_precision_at_threshold"],
                "RealisedAccuracy": record["accuracy"],
                "AlertPrecision": record["alert_precision"],
            },
            model_dimensions(labelled_scores.summary["endpointName"], record["model_version"]),
        )
        perf_lib.write_performance(client, platform.metrics_bucket, record)
    verdicts = performance_verdicts(record, perf_lib.alert_precision_best_case(joined, thresholds["high"]), performance_floors)
    breached = [v for v in verdicts if not v.passed]
    if breached:
        sns = aws.client("sns")
        # One message per day, model version and set of breached floors: a recomputation that finds
        # the same does not notify again.
        digest = hashlib.sha256("\n".join([str(record["model_version"]), *(v.check_name for v in breached)]).encode()).hexdigest()[:16]
        alerts_lib.publish_alerts(
            sns,
            client,
            topic_arn=alerts_lib.find_topic_arn(sns, platform.monitoring_topic),  # looked up, never created
            ledger_bucket=platform.workflow_bucket,
            ledger_prefix=f"monitoring-ledger/{date}",
            messages=[
                {
                    "messageKey": f"performance-{digest}",
                    "subject": f"Realised model quality below floor on {date}",
                    "batchDate": date,
                    "warnings": [v.description for v in breached],
                    "performance": record,
                }
            ],
        )
    numeric = {k: v for k, v in record.items() if k not in ("date", "model_version", "labels_source", "computed_at")}
    context.add_output_metadata(
        output_name="result",
        metadata={
            **{k: v if isinstance(v, int) else perf_lib.finite_or_nan(v) for k, v in numeric.items()},
            "model_version": str(record["model_version"]),
            "labels_etag": (record["labels_source"] or {}).get("etag") or "",
            "performance_uri": MetadataValue.path(uri),
            "performance_file_written": written,
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
