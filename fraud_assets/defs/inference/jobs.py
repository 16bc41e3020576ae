"""The daily inference job and its schedule.

A schedule, not a sensor on the batch's arrival: the original design's EventBridge rule runs at 01:00 UTC,
after the upstream export, and the team expects the day to be processed then. A tick whose batch
has not landed is skipped with the reason (no failed run), and each tick also catches up the
previous days whose batch landed late or whose run failed (an endpoint down, SNS unreachable).

A day is done when every inference asset has materialised its partition, not when its run started
or its first step succeeded. A day not done is requested again at each tick of its catch-up window,
for what it still lacks only (its scored, stored and alerted parts are not redone), with a new run
key per attempt (`{day}:attempt-{n}`) and at most MAX_ATTEMPTS scheduled runs per day: a day that
fails that often needs a person (the failure sensor has told them on every failure).
"""

import datetime as dt
from typing import Callable, NamedTuple

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    schedule,
)
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.common import INFERENCE, daily_partitions
from fraud_assets.defs.resources import FraudPlatform
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.storage import object_exists
from fraud_assets.lib.config import daily_batch_key

CATCH_UP_DAYS = 7
MAX_ATTEMPTS = 3
PARTITION_TAG = "dagster/partition"  # set by Dagster on every partitioned run
SCHEDULE_TAGS = {"fraud/trigger": "schedule"}
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]

inference_assets = AssetSelection.groups(INFERENCE)

inference_job = define_asset_job(
    "inference_job",
    selection=inference_assets,
    partitions_def=daily_partitions,
    description="Daily scoring of one day's batch: parse, score, store, alert, monitor drift.",
    # One process per run: the steps form a chain over one day's data, and a process per step
    # would pay the code location's import once per step for nothing.
    executor_def=in_process_executor,
    # No hooks: Dagster captures every step's outputs for a job with any hook (the frames then live
    # until the step's context goes). Freed memory is handed back when the next step loads an input.
)


class DayPlan(NamedTuple):
    """What a tick does with each day of its window, newest first."""

    run: list[tuple[str, int]]  # (day, attempt number) to request
    waiting: list[str]  # the batch has not landed
    running: list[str]  # a run of the day is queued or in progress
    given_up: list[str]  # MAX_ATTEMPTS scheduled runs and still not done
    done: list[str]  # every inference asset materialised


def days_to_run(
    yesterday: dt.date,
    first_day: dt.date,
    *,
    landed: Callable[[str], bool],
    done: Callable[[str], bool],
    attempts: Callable[[str], int],
    running: Callable[[str], bool] = lambda day: False,
    max_attempts: int = MAX_ATTEMPTS,
) -> DayPlan:
    """Pure decision over yesterday and the CATCH_UP_DAYS before it that are partitions: each day
    lands in exactly one list of the plan. `attempts` counts the day's scheduled runs so far."""
    plan = DayPlan([], [], [], [], [])
    for back in range(CATCH_UP_DAYS + 1):
        day = yesterday - dt.timedelta(days=back)
        if day < first_day:
            break
        key = day.isoformat()
        if done(key):
            plan.done.append(key)
        elif running(key):
            plan.running.append(key)
        elif not landed(key):
            plan.waiting.append(key)
        elif (made := attempts(key)) >= max_attempts:
            plan.given_up.append(key)
        else:
            plan.run.append((key, made + 1))
    return plan


def skip_message(plan: DayPlan, where: Callable[[str], str]) -> str:
    """Why a tick requests nothing, day by day (`where` names a day's batch object)."""
    if not (plan.waiting or plan.running or plan.given_up):
        if not plan.done:
            return "nothing to score: no day of the catch-up window is a partition yet"
        return f"nothing to score: every day from {plan.done[-1]} to {plan.done[0]} is scored"
    parts = []
    if plan.waiting:
        parts.append("waiting for " + ", ".join(where(d) for d in plan.waiting))
    if plan.running:
        parts.append("a run is in progress for " + ", ".join(plan.running))
    if plan.given_up:
        parts.append(
            f"{', '.join(plan.given_up)} failed {MAX_ATTEMPTS} scheduled attempts: "
            "materialise the missing assets by hand once the cause is fixed"
        )
    return "nothing to score: " + "; ".join(parts)


@schedule(
    name="daily_inference_schedule",
    job=inference_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    # Running from the first deployment: a stopped schedule never scores until someone clicks.
    default_status=DefaultScheduleStatus.RUNNING,
    description="01:00 UTC: the previous day's partition (the last complete day), once its batch has landed; "
    f"also any of the {CATCH_UP_DAYS} days before whose batch landed late or whose run failed (what it lacks only, "
    f"at most {MAX_ATTEMPTS} scheduled attempts per day). Skips with the reason otherwise.",
)
def daily_inference_schedule(context: ScheduleEvaluationContext, s3: S3Resource, platform: FraudPlatform):
    yesterday = (context.scheduled_execution_time.astimezone(dt.timezone.utc) - dt.timedelta(days=1)).date()
    first_day = daily_partitions.start.date()
    client, instance = s3_client(s3), context.instance
    assets = sorted(
        inference_assets.materializable().resolve(set(context.repository_def.assets_defs_by_key.values())),
        key=lambda k: k.to_user_string(),
    )
    materialized = {key: instance.get_materialized_partitions(key) for key in assets}

    def missing(day: str) -> list[AssetKey]:
        return [key for key in assets if day not in materialized[key]]

    def runs(day: str, tags: dict | None = None, statuses: list[DagsterRunStatus] | None = None) -> int:
        return instance.get_runs_count(
            RunsFilter(job_name=inference_job.name, tags={PARTITION_TAG: day, **(tags or {})}, statuses=statuses)
        )

    plan = days_to_run(
        yesterday,
        first_day,
        landed=lambda day: object_exists(client, platform.data_bucket, daily_batch_key(day)),
        done=lambda day: not missing(day),
        attempts=lambda day: runs(day, tags=SCHEDULE_TAGS),
        running=lambda day: runs(day, statuses=IN_FLIGHT) > 0,
    )
    if plan.given_up:
        context.log.warning(f"not requested again after {MAX_ATTEMPTS} failed scheduled attempts: {', '.join(plan.given_up)}")
    if not plan.run:
        return SkipReason(skip_message(plan, lambda day: f"s3://{platform.data_bucket}/{daily_batch_key(day)}"))
    requests = []
    for day, attempt in plan.run:
        lacking = missing(day)
        requests.append(
            RunRequest(
                run_key=f"{day}:attempt-{attempt}",
                partition_key=day,
                # A day run before lacks only what failed: its scores, items and alerts stay as made.
                asset_selection=None if len(lacking) == len(assets) else lacking,
                tags={**SCHEDULE_TAGS, "fraud/attempt": str(attempt)},
            )
        )
    return requests


# What label_file_sensor runs when a day's label file appears or changes: the day's measured quality
# again, from its recorded scores (the scoring itself is not repeated).
model_performance_job = define_asset_job(
    "model_performance_job",
    selection=AssetSelection.assets("labelled_scores", "model_performance", "terminal_risk_aggregates"),
    partitions_def=daily_partitions,
    description="Recompute one day's realised model quality (labelled_scores, model_performance) from its scores and label "
    "file, and the day's terminal counts the risk features of later days read (terminal_risk_aggregates).",
    executor_def=in_process_executor,
)
