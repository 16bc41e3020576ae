"""A week and a day of daily partitions end to end against the local stack: DynamoDB holds one item
per scored transaction, SNS holds ceil(high-risk / 100) alert messages per day, a second
materialisation changes neither, a drifted day raises drift and the sensor asks for one retraining."""

import datetime as dt
import json
import math

import boto3
import pytest
from dagster import DagsterInstance, DagsterRunStatus, build_run_status_sensor_context, build_sensor_context

from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import AwsClients, FraudPlatform, QualityGates
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key
from fraud_assets.lib.inference.score_store import count_items_for_date
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch, generate_transactions, to_csv_bytes

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()
DATES = [f"2026-03-{d:02d}" for d in range(1, 9)]
DRIFT_DATE = DATES[-1]
PER_DAY = 2_000


def subscribe_queue(topic: str, queue: str) -> str:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=sns.create_topic(Name=topic)["TopicArn"], Protocol="sqs", Endpoint=arn)
    return url


def drain(url: str) -> list[dict]:
    sqs, messages = boto3.client("sqs"), []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        messages += [json.loads(json.loads(m["Body"])["Message"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return messages


def test_a_week_of_partitions_is_exact_idempotent_and_drift_triggers_retraining(aws):
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=100_000, seed=11)))
    for i, date in enumerate(DATES):
        batch = generate_daily_batch(date, n_transactions=PER_DAY, seed=100 + i, drift=1.0 if date == DRIFT_DATE else 0.0)
        if i == 1:
            batch[3]["features"]["V3"] = "not-a-number"  # one bad row: quarantined, not dropped
        put_bytes(s3, NAMES.data_bucket, daily_batch_key(date), batch_to_json_bytes(batch))
    alerts_queue = subscribe_queue(NAMES.alerts_topic, "alerts-test")
    monitoring_queue = subscribe_queue(NAMES.monitoring_topic, "monitoring-test")
    failures_queue = subscribe_queue(NAMES.failures_topic, "failures-test")

    defs = location_defs(quality_gates=QualityGates(pr_auc_floor=0.2, high_risk_precision_floor=0.0))
    instance = DagsterInstance.ephemeral()
    assert defs.resolve_job_def("training_job").execute_in_process(instance=instance).success
    inference = defs.resolve_job_def("inference_job")

    days = {}
    for date in DATES:
        result = inference.execute_in_process(instance=instance, partition_key=date)
        mats = {
            e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        days[date] = {k: {m: v.value for m, v in meta.items()} for k, meta in mats.items()}
        days[date]["checks"] = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert all(c.passed for c in result.get_asset_check_evaluations() if c.severity.value == "ERROR")

    assert days[DATES[1]]["daily_transactions"]["quarantined"] == 1
    for date, day in days.items():
        tx, scores = day["daily_transactions"], day["daily_scores"]
        assert tx["received"] == tx["accepted"] + tx["quarantined"] == PER_DAY
        assert scores["scored"] == tx["accepted"]
        assert count_items_for_date(dynamodb, NAMES.scores_table, NAMES.scores_gsi, date) == scores["scored"]
        assert day["fraud_alerts"]["messages_sent"] == math.ceil(scores["high_risk"] / 100)
    alert_messages = drain(alerts_queue)
    assert len(alert_messages) == sum(math.ceil(d["daily_scores"]["high_risk"] / 100) for d in days.values())
    assert all(m["alertCount"] <= 100 for m in alert_messages)

    drifted = [d for d, day in days.items() if day["drift_metrics"]["drift_detected"]]
    assert drifted == [DRIFT_DATE]
    # Calm days are calm by PSI too (the day's raw endpoint scores against the model's raw
    # validation scores, at one precision), and the shifted day is a significant shift.
    for date, day in days.items():
        psi = day["drift_metrics"]["score_psi"]
        if date == DRIFT_DATE:
            assert psi > 0.25 and not day["checks"]["score_distribution_psi"]
        else:
            assert psi < 0.1 and day["checks"]["score_distribution_psi"], (date, psi)

    # CloudWatch FraudDetection: what the days published, read back from the stack.
    cloudwatch = boto3.client("cloudwatch")
    published = {
        m["MetricName"]
        for m in cloudwatch.get_paginator("list_metrics").paginate(Namespace="FraudDetection").build_full_result()["Metrics"]
    }
    assert {
        "TransactionsReceived",
        "TransactionsScored",
        "TransactionsQuarantined",
        "HighRiskCount",
        "HighRiskRate",
        "AverageScore",
        "AlertsSent",
        "ScoringDuration",
        "AvgScoreDrift",
        "DriftDetected",
        "EvaluationPrAuc",
    } <= published
    now = dt.datetime.now(dt.timezone.utc)
    # By model version too: moto matches a query's dimensions as a subset (AWS matches them exactly),
    # so the endpoint alone would add up both dimension sets.
    received = cloudwatch.get_metric_statistics(
        Namespace="FraudDetection",
        MetricName="TransactionsReceived",
        Statistics=["Sum"],
        Period=3600,
        Dimensions=[
            {"Name": "EndpointName", "Value": NAMES.endpoint_name},
            {"Name": "ModelVersion", "Value": days[DATES[0]]["daily_scores"]["model_version"]},
        ],
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(hours=1),
    )["Datapoints"]
    assert sum(p["Sum"] for p in received) == PER_DAY * len(DATES)
    monitoring = drain(monitoring_queue)
    assert len(monitoring) == 1 and monitoring[0]["batchDate"] == DRIFT_DATE

    # Materialising a day again (and a retry) leaves the same items and sends no alert twice.
    again = inference.execute_in_process(instance=instance, partition_key=DATES[2])
    assert again.success
    assert count_items_for_date(dynamodb, NAMES.scores_table, NAMES.scores_gsi, DATES[2]) == days[DATES[2]]["daily_scores"]["scored"]
    assert drain(alerts_queue) == []

    # The drift sensor asks for exactly one training run, and not again on its next tick.
    sensor = location_defs().resolve_sensor_def("drift_retraining_sensor")
    context = build_sensor_context(
        instance=instance, definitions=defs, resources={"retraining_policy": defs.resources["retraining_policy"]}
    )
    requests = sensor(context)
    assert len(requests) == 1 and DRIFT_DATE in requests[0].run_key
    context = build_sensor_context(
        instance=instance, definitions=defs, resources={"retraining_policy": defs.resources["retraining_policy"]}, cursor=context.cursor
    )
    assert not isinstance(sensor(context), list)

    # A missing batch fails the run clearly; the failure sensor announces it on SNS.
    failed = inference.execute_in_process(instance=instance, partition_key="2026-03-20", raise_on_error=False)
    assert not failed.success
    run = instance.get_run_by_id(failed.run_id)
    failure_sensor = defs.resolve_sensor_def("pipeline_failure_sensor")
    failure_event = next(e for e in failed.all_events if e.event_type_value == "PIPELINE_FAILURE")
    failure_context = build_run_status_sensor_context(
        sensor_name="pipeline_failure_sensor",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure_event,
        resources={"aws": AwsClients(), "platform": FraudPlatform()},
    ).for_run_failure()
    failure_sensor(failure_context)
    [announced] = drain(failures_queue)
    assert announced["job"] == "inference_job" and announced["runId"] == failed.run_id
    assert any("daily_transactions" in step["step"] and "2026-03-20" in step["error"] for step in announced["failedSteps"])
    assert DagsterRunStatus.FAILURE == run.status
