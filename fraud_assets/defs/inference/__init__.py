"""Inference group wiring: daily-partitioned assets, gates, job, schedule and sensors."""

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from fraud_assets.defs.common import daily_partitions
from fraud_assets.defs.inference.assets import (
    daily_batches,
    daily_scores,
    daily_transactions,
    drift_metrics,
    fraud_alerts,
    stored_scores,
)
from fraud_assets.defs.inference.checks import (
    drift_warnings,
    every_transaction_scored_once,
    row_accounting,
    schema_and_values,
    stored_count_matches_scored,
)
from fraud_assets.defs.inference.sensors import build_drift_retraining_sensor, pipeline_failure_sensor

inference_assets = [daily_batches, daily_transactions, daily_scores, stored_scores, fraud_alerts, drift_metrics]
inference_checks = [row_accounting, schema_and_values, every_transaction_scored_once, stored_count_matches_scored, *drift_warnings]

inference_job = define_asset_job(
    "inference_job",
    selection=AssetSelection.groups("inference"),
    partitions_def=daily_partitions,
    description="Daily scoring of one day's batch: parse, score, store, alert, monitor drift.",
)
# 01:00 UTC each day runs the previous day's partition (the last complete day).
daily_inference_schedule = build_schedule_from_partitioned_job(
    inference_job, name="daily_inference_schedule", hour_of_day=1, minute_of_hour=0
)


def inference_sensors(training_job):
    return [build_drift_retraining_sensor(training_job), pipeline_failure_sensor]
