"""Training group wiring: assets, gates, job and weekly schedule."""

from dagster import AssetSelection, ScheduleDefinition, define_asset_job

from fraud_assets.defs.training.assets import (
    deployed_endpoint,
    engineered_features,
    evaluation_metrics,
    fraud_model,
    model_hyperparameters,
    prepared_splits,
    raw_transactions,
)
from fraud_assets.defs.training.checks import endpoint_serves_deployed_model, model_quality_gates, split_quality_checks

training_assets = [raw_transactions, prepared_splits, engineered_features, model_hyperparameters, fraud_model, evaluation_metrics, deployed_endpoint]
training_checks = [split_quality_checks, model_quality_gates, endpoint_serves_deployed_model]

training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.groups("training"),
    description="Weekly retraining: prepare splits, train, evaluate behind the quality gates, deploy.",
)
weekly_training_schedule = ScheduleDefinition(
    name="weekly_training_schedule", job=training_job, cron_schedule="0 2 * * 0", execution_timezone="UTC"
)
