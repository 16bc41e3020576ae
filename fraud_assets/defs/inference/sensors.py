"""Sensors: drift starts retraining (once per drift event, with a cooldown); a new or changed label
file recomputes that day's measured quality; any failed run is announced on SNS fraud-detection-failures."""

import json
import re
import time
from typing import Callable

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.resources import AwsClients, FraudPlatform, RetrainingPolicy
from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.cloudwatch import publish_metrics
from fraud_assets.lib.config import LABELS_PREFIX
from fraud_assets.lib.inference.alerts import find_topic_arn


def drift_requests(events: list[tuple[int, str | None, bool]], cursor: dict, now: float, cooldown_s: float) -> tuple[list[dict], dict]:
    """Pure decision: (storage id, partition, drift?) events after the cursor -> retraining requests.
    A drift event inside the cooldown of the last request is absorbed by it."""
    last_request = cursor.get("last_request_at")
    requests = []
    for storage_id, partition, drifted in events:
        if storage_id <= cursor.get("last_storage_id", 0):
            continue
        cursor = {**cursor, "last_storage_id": storage_id}
        if drifted and (last_request is None or now - last_request >= cooldown_s):
            last_request = now
            requests.append({"run_key": f"drift-{partition}-{storage_id}", "partition": partition, "storage_id": storage_id})
    return requests, {**cursor, "last_request_at": last_request}


def performance_requests(
    events: list[tuple[int, str | None, bool | None]], cursor: dict, now: float, cooldown_s: float, days_needed: int
) -> tuple[list[dict], dict]:
    """Pure decision: (storage id, partition, recall below the floor?) model_performance events after
    the cursor -> at most one retraining request, once `days_needed` distinct labelled days since
    the last request were below the floor (a recomputed day counts once, its latest verdict wins).
    A verdict of None (an unreadable materialization) is passed over: the day keeps its standing."""
    low = dict.fromkeys(cursor.get("low_recall_partitions", []))
    last_id = cursor.get("last_performance_storage_id", 0)
    for storage_id, partition, below in events:
        if storage_id <= last_id:
            continue
        last_id = storage_id
        if below is None:
            continue
        if below:
            low[str(partition)] = None
        else:
            low.pop(str(partition), None)
    cursor = {**cursor, "last_performance_storage_id": last_id, "low_recall_partitions": sorted(low)}
    last_request = cursor.get("last_request_at")
    if len(low) < days_needed or (last_request is not None and now - last_request < cooldown_s):
        return [], cursor
    days = sorted(low)
    request = {"run_key": f"performance-{days[0]}-{days[-1]}", "partitions": days}
    return [request], {**cursor, "last_request_at": now, "low_recall_partitions": []}


def _materializations_after(context, asset: str, storage_id: int | None):
    """The asset's materializations recorded after the cursor's storage id, oldest first."""
    return context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), after_storage_id=storage_id), limit=500, ascending=True
    ).records


def _required(context, record, asset: str, *names: str) -> list | None:
    """The values of `names` in a materialization's metadata, which its asset always records; None,
    with a warning naming the key, for one that lacks any (written before a rename of the key).

    Skipped, not raised: these sensors walk materializations by storage id and a tick that raises
    keeps its cursor, so one old materialization (immutable: it never gains the key) would stop
    every later retraining for good, the failure this contract exists to prevent. Skipping costs
    that one day's vote and says so in the tick's log; new materializations carry the keys because
    their writers use the same constants (lib/metadata_keys.py), which the tests pin."""
    materialization = record.asset_materialization
    where = f"{asset} materialization {record.storage_id} (partition {materialization.partition})"
    try:
        return [keys.require(materialization.metadata, name, where).value for name in names]
    except keys.MissingMetadata as err:
        context.log.warning(f"{err}; skipped: it neither starts nor counts toward a retraining")
        return None


def _performance_events(context, cursor: dict, policy: RetrainingPolicy) -> list[tuple[int, str | None, bool | None]]:
    records = _materializations_after(context, "model_performance", cursor.get("last_performance_storage_id"))
    events = []
    for record in records:
        values = _required(context, record, "model_performance", keys.REALISED_RECALL_AT_THRESHOLD, keys.FRAUD)
        below = None
        if values is not None:
            recall, fraud = values
            below = (
                isinstance(recall, (int, float))
                and recall == recall
                and fraud >= policy.min_labelled_fraud
                and recall < policy.realised_recall_floor
            )
        events.append((record.storage_id, record.asset_materialization.partition, below))
    return events


@sensor(
    name="drift_retraining_sensor",
    job_name="training_job",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests a training_job run when drift_metrics reports drift, or when model_performance shows realised "
    "recall below the floor on enough labelled days: once per drift event (run key), at most one per cooldown (the "
    "retraining_policy resource).",
)
def drift_retraining_sensor(context: SensorEvaluationContext, retraining_policy: RetrainingPolicy):
    cursor = json.loads(context.cursor) if context.cursor else {}
    records = _materializations_after(context, "drift_metrics", cursor.get("last_storage_id"))
    events = []
    for record in records:
        values = _required(context, record, "drift_metrics", keys.DRIFT_DETECTED)
        events.append((record.storage_id, record.asset_materialization.partition, bool(values and values[0])))
    now, cooldown = time.time(), retraining_policy.drift_cooldown_hours * 3600
    requests, new_cursor = drift_requests(events, cursor, now, cooldown)
    performance = _performance_events(context, new_cursor, retraining_policy)
    by_recall, new_cursor = performance_requests(performance, new_cursor, now, cooldown, retraining_policy.performance_drift_days)
    context.update_cursor(json.dumps(new_cursor))
    if not requests and not by_recall:
        return SkipReason(
            f"{len(events)} new drift_metrics and {len(performance)} new model_performance materialisations, no retraining needed"
        )
    return [
        RunRequest(run_key=r["run_key"], tags={"fraud/trigger": "drift", "fraud/drift_partition": str(r["partition"])}) for r in requests
    ] + [
        RunRequest(run_key=r["run_key"], tags={"fraud/trigger": "realised_recall", "fraud/low_recall_days": ",".join(r["partitions"])})
        for r in by_recall
    ]


@run_failure_sensor(
    name="pipeline_failure_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    description="Publishes every failed run (job, run id, failed steps and their errors) to SNS fraud-detection-failures.",
)
def pipeline_failure_sensor(context: RunFailureSensorContext, aws: AwsClients, platform: FraudPlatform):
    failed_steps = [
        {"step": e.step_key, "error": (e.event_specific_data.error.message.strip()[:500] if e.event_specific_data.error else "")}
        for e in context.get_step_failure_events()
    ]
    message = {
        "job": context.dagster_run.job_name,
        "runId": context.dagster_run.run_id,
        "failedSteps": failed_steps,
        "error": context.failure_event.message,
        "partition": context.dagster_run.tags.get("dagster/partition"),
        # The deduplication id: the sensor may announce a run again after a daemon restart.
        "messageKey": f"run-failure-{context.dagster_run.run_id}",
    }
    sns = aws.client("sns")
    # No dimensions: the template's pipeline-failures alarm counts every failed run (first: it must
    # count even when the topic below is missing).
    publish_metrics(aws.client("cloudwatch"), {"PipelineFailures": 1}, {}, units={"PipelineFailures": "Count"})
    # Looked up, never created (MissingTopicError names it): a typo must not swallow failure reports.
    topic = find_topic_arn(sns, platform.failures_topic)
    sns.publish(
        TopicArn=topic,
        Subject=f"fraud_assets run failed: {message['job']}"[:100],
        Message=json.dumps(message, default=str),
        MessageAttributes={"messageKey": {"DataType": "String", "StringValue": f"run-failure-{message['runId']}"}},
    )


_LABEL_FILE = re.compile(rf"^{LABELS_PREFIX}/(\d{{4}}-\d{{2}}-\d{{2}})\.json$")


def label_requests(
    listed: dict[str, str], cursor: dict[str, str], scored: Callable[[str], bool], measured_etag: Callable[[str], str | None]
) -> tuple[list[dict], dict[str, str]]:
    """Pure decision: label files now (date -> ETag) against the cursor (date -> ETag handled) ->
    model_performance runs to request, and the new cursor. A new or changed file of a scored day is
    one request (its run key holds the ETag), unless the day's performance was already computed from
    exactly that file (its inference run found the labels there). A day not scored yet is left for
    its inference run, which measures whatever labels exist then. A removed file of a day measured
    with labels is one request too: its performance goes back to "no labels"."""
    handled, requests = dict(cursor), []
    for date, etag in sorted(listed.items()):
        if handled.get(date) == etag or not scored(date):
            continue
        handled[date] = etag
        if measured_etag(date) != etag:
            requests.append({"run_key": f"labels-{date}-{etag}", "partition": date})
    for date in sorted(set(handled) - set(listed)):
        old = handled.pop(date)
        if scored(date) and measured_etag(date):
            requests.append({"run_key": f"labels-{date}-removed-{old}", "partition": date})
    return requests, handled


@sensor(
    name="label_file_sensor",
    job_name="model_performance_job",
    minimum_interval_seconds=120,
    default_status=DefaultSensorStatus.RUNNING,
    description="Lists s3://<data bucket>/labels/ and requests a model_performance_job run for a day whose label "
    "file appeared, changed (ETag) or went away: exactly one run per change (the run key holds the ETag).",
)
def label_file_sensor(context: SensorEvaluationContext, s3: S3Resource, platform: FraudPlatform):
    cursor = json.loads(context.cursor) if context.cursor else {}
    listed: dict[str, str] = {}
    for page in s3_client(s3).get_paginator("list_objects_v2").paginate(Bucket=platform.data_bucket, Prefix=f"{LABELS_PREFIX}/"):
        for obj in page.get("Contents", []):
            if match := _LABEL_FILE.match(obj["Key"]):
                listed[match.group(1)] = obj["ETag"].strip('"')

    def latest(asset: str, date: str):
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[date]), limit=1
        ).records
        return records[0].asset_materialization if records else None

    def measured_etag(date: str) -> str | None:
        materialization = latest("model_performance", date)
        if materialization is None:
            return None
        try:
            return keys.require(materialization.metadata, keys.LABELS_ETAG, f"model_performance of {date}").value
        except keys.MissingMetadata as err:
            # Not raised: every tick would fail on it. The day is measured again instead, which
            # records the key: the one materialization that lacks it is superseded.
            context.log.warning(f"{err}; taken as measured from no known label file")
            return None

    requests, handled = label_requests(listed, cursor, lambda date: latest("daily_scores", date) is not None, measured_etag)
    context.update_cursor(json.dumps(handled, sort_keys=True))
    if not requests:
        return SkipReason(f"{len(listed)} label files, none new or changed for a scored day")
    return [RunRequest(run_key=r["run_key"], partition_key=r["partition"], tags={"fraud/trigger": "labels"}) for r in requests]
