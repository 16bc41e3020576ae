"""The daily inference job and its schedule."""

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from fraud_assets.defs.common import INFERENCE, daily_partitions

inference_job = define_asset_job(
    "inference_job",
    selection=AssetSelection.groups(INFERENCE),
    partitions_def=daily_partitions,
    description="Daily scoring of one day's batch: parse, score, store, alert, monitor drift.",
)
# 01:00 UTC each day runs the previous day's partition (the last complete day).
daily_inference_schedule = build_schedule_from_partitioned_job(
    inference_job, name="daily_inference_schedule", hour_of_day=1, minute_of_hour=0
)
