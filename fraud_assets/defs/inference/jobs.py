"""The daily inference job and its schedule.

A schedule, not a sensor on the batch's arrival: the seeds' EventBridge rule runs at 01:00 UTC,
after the upstream export, and the team expects the day to be processed then. A tick whose batch
has not landed is skipped with the reason (no failed run), and each tick also catches up the
previous days whose batch landed late and were never processed (one run per day: run key = date).
"""

import datetime as dt

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    schedule,
)
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.common import INFERENCE, daily_partitions, release_freed_memory_hook
from fraud_assets.defs.resources import FraudPlatform, s3_client
from fraud_assets.lib.aws.storage import object_exists
from fraud_assets.lib.config import daily_batch_key

CATCH_UP_DAYS = 7


inference_job = define_asset_job(
    "inference_job",
    selection=AssetSelection.groups(INFERENCE),
    partitions_def=daily_partitions,
    description="Daily scoring of one day's batch: parse, score, store, alert, monitor drift.",
    # One process per run: the steps form a chain over one day's data, and a process per step
    # would pay the code location's import once per step for nothing.
    executor_def=in_process_executor,
    hooks={release_freed_memory_hook},
)


def days_to_run(yesterday: dt.date, first_day: dt.date, landed, processed) -> tuple[list[str], list[str]]:
    """Pure decision: (days to run, days still waiting for their batch), newest first, over
    yesterday and the CATCH_UP_DAYS before it that are partitions."""
    run, waiting = [], []
    for back in range(CATCH_UP_DAYS + 1):
        day = yesterday - dt.timedelta(days=back)
        if day < first_day:
            break
        key = day.isoformat()
        if processed(key):
            continue
        (run if landed(key) else waiting).append(key)
    return run, waiting


@schedule(
    name="daily_inference_schedule",
    job=inference_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="01:00 UTC: the previous day's partition (the last complete day), once its batch has landed; "
    f"also any of the {CATCH_UP_DAYS} days before whose batch landed late. Skips with the reason otherwise.",
)
def daily_inference_schedule(context: ScheduleEvaluationContext, s3: S3Resource, platform: FraudPlatform):
    yesterday = (context.scheduled_execution_time.astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date()
    first_day = daily_partitions.start.date()
    client = s3_client(s3)
    materialized = context.instance.get_materialized_partitions(AssetKey("daily_transactions"))
    run, waiting = days_to_run(
        yesterday,
        first_day,
        landed=lambda day: object_exists(client, platform.data_bucket, daily_batch_key(day)),
        processed=lambda day: day in materialized,
    )
    if not run:
        where = ", ".join(f"s3://{platform.data_bucket}/{daily_batch_key(d)}" for d in waiting) or "none"
        return SkipReason(f"nothing to score: no unprocessed day has its batch yet (waiting for {where})")
    return [RunRequest(run_key=day, partition_key=day, tags={"fraud/trigger": "schedule"}) for day in run]


# What label_file_sensor runs when a day's label file appears or changes: the day's measured quality
# again, from its recorded scores (the scoring itself is not repeated).
model_performance_job = define_asset_job(
    "model_performance_job",
    selection=AssetSelection.assets("labelled_scores", "model_performance"),
    partitions_def=daily_partitions,
    description="Recompute one day's realised model quality (labelled_scores, model_performance) from its scores and label file.",
    executor_def=in_process_executor,
)
