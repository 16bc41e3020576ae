"""The training job and its weekly schedule."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job, in_process_executor

from fraud_assets.defs.common import TRAINING

training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.groups(TRAINING),
    description="Weekly retraining: prepare splits, train, evaluate behind the quality gates, deploy.",
    # One process per run: the graph is a chain (xgboost already uses every core), so a process per
    # step would only add the code location's import time to each step.
    executor_def=in_process_executor,
    # No hooks: Dagster captures every step's outputs for a job with any hook (the frames then live
    # until the step's context goes). Freed memory is handed back when the next step loads an input.
)
weekly_training_schedule = ScheduleDefinition(
    name="weekly_training_schedule",
    job=training_job,
    cron_schedule="0 2 * * 0",
    execution_timezone="UTC",
    # Running from the first deployment, as the sensors are: a stopped schedule never trains until someone clicks.
    default_status=DefaultScheduleStatus.RUNNING,
)
