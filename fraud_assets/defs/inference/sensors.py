"""Sensors: drift starts retraining (once per drift event, with a cooldown); any failed run is
announced on SNS fraud-detection-failures."""


import json
import time

from dagster import (
    AssetKey,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._core.event_api import AssetRecordsFilter

from fraud_assets.defs.resources import AwsClients, FraudPlatform, RetrainingPolicy


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


@sensor(
    name="drift_retraining_sensor",
    job_name="training_job",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Requests a training_job run when drift_metrics reports drift: once per drift event (run key), "
    "at most one per cooldown (the retraining_policy resource, FRAUD_DRIFT_COOLDOWN_HOURS).",
)
def drift_retraining_sensor(context: SensorEvaluationContext, retraining_policy: RetrainingPolicy):
    cursor = json.loads(context.cursor) if context.cursor else {}
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("drift_metrics"), after_storage_id=cursor.get("last_storage_id")),
        limit=500, ascending=True,
    ).records
    events = []
    for record in records:
        mat = record.asset_materialization
        drifted = mat.metadata.get("drift_detected")
        events.append((record.storage_id, mat.partition, bool(drifted and drifted.value)))
    requests, new_cursor = drift_requests(events, cursor, time.time(), retraining_policy.drift_cooldown_hours * 3600)
    context.update_cursor(json.dumps(new_cursor))
    if not requests:
        return SkipReason(f"{len(events)} new drift_metrics materialisations, no retraining needed")
    return [
        RunRequest(run_key=r["run_key"], tags={"fraud/trigger": "drift", "fraud/drift_partition": str(r["partition"])})
        for r in requests
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
    }
    sns = aws.client("sns")
    topic = sns.create_topic(Name=platform.failures_topic)["TopicArn"]
    sns.publish(TopicArn=topic, Subject=f"fraud_assets run failed: {message['job']}"[:100], Message=json.dumps(message, default=str))


