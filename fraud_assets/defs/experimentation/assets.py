"""Experimentation group: the on-demand hyperparameter search over the training splits."""

from typing import Any, Literal, Optional

from dagster import AssetExecutionContext, Config, Failure, MetadataValue, asset
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.resources import AwsClients, FraudPlatform
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.storage import StageResult
from fraud_assets.lib.experimentation.experiments import (
    DEFAULT_SEARCH_SPACE,
    MAXIMISED_METRICS,
    ExperimentResult,
    new_experiment_id,
    record_experiment,
    run_experiment,
    trials_markdown,
)
from fraud_assets.lib.experimentation.tuning import (
    best_figures,
    experiment_origin,
    no_completed_trials,
    run_figures,
    trial_base,
    trials_frame,
)
from fraud_assets.lib.training.hyperparameters import read_hyperparameters


class TuningExperimentConfig(Config):
    strategy: Literal["grid", "random", "bayesian"] = Field(
        default="bayesian", description="optuna sampler: grid (GridSampler), random (RandomSampler), bayesian (TPESampler)."
    )
    n_trials: int = Field(default=20, ge=1, le=1000, description="Trials to run (a grid stops early when exhausted).")
    search_space: Optional[dict[str, dict[str, Any]]] = Field(
        default=None,
        description="Parameter name -> {type: int|float|categorical, low, high, log, step, choices, grid, grid_points}. "
        f"Default: {', '.join(DEFAULT_SEARCH_SPACE)} (see fraud_assets.lib.experimentation.experiments).",
    )
    metric: str = Field(default="pr_auc", description=f"Validation metric to maximise: one of {', '.join(MAXIMISED_METRICS)}.")
    seed: int = Field(default=0, description="Sampler seed: the same seed and data give the same trials.")
    base_on_production: bool = Field(
        default=True, description="Start every trial from the production hyperparameters in Parameter Store (else the defaults)."
    )
    base_hyperparameters: Optional[dict[str, Any]] = Field(
        default=None, description="Fixed hyperparameters laid over the base, e.g. {num_round: 300}; searched names override them."
    )
    timeout_seconds: Optional[float] = Field(default=None, description="Stop starting new trials after this long.")
    nthread: Optional[int] = Field(default=None, description="xgboost threads per trial (default: all cores).")


@asset(
    kinds={"xgboost", "optuna", "s3"},
    description="A hyperparameter search (grid, random or Bayesian/TPE, by optuna) training XGBoost on the train split "
    "with early stopping and scoring each trial on the validation split. Every trial, failed ones included, is "
    "recorded in s3://<workflow bucket>/experiments/<experiment id>/ (config.json, trials.json, best.json). "
    "Run on demand; promote the winner with the promote_experiment job or `fraud-assets promote <id>`.",
)
def tuning_experiment(
    context: AssetExecutionContext,
    config: TuningExperimentConfig,
    train_split: StageResult,
    validation_split: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
) -> StageResult:
    production = read_hyperparameters(aws.client("ssm")) if config.base_on_production else None
    # The run id in the experiment id ties the S3 records to this run.
    experiment_id = new_experiment_id(config.strategy, suffix=context.run_id[:8])
    context.log.info(f"experiment {experiment_id}: {config.strategy} search, {config.n_trials} trials, maximising {config.metric}")
    result = run_experiment(
        train_split.table,
        validation_split.table,
        strategy=config.strategy,
        n_trials=config.n_trials,
        search_space=config.search_space,
        metric=config.metric,
        seed=config.seed,
        base_hyperparameters=trial_base(production, config.base_hyperparameters),
        experiment_id=experiment_id,
        nthread=config.nthread,
        timeout_seconds=config.timeout_seconds,
    )
    splits = {**train_split.uris, **validation_split.uris}
    origin = experiment_origin(context.run_id, production)
    uris = record_experiment(s3_client(s3), platform.workflow_bucket, result, splits, origin=origin)
    record = result.config_record(splits, origin)
    metadata = _experiment_metadata(result, record, uris["prefix"])
    failure = no_completed_trials(result)
    if failure:
        raise Failure(description=failure, metadata=metadata, allow_retries=False)
    context.add_output_metadata(metadata)
    return StageResult(summary={**record, "records": uris}, tables={"trials": trials_frame(result)})


def _experiment_metadata(result: ExperimentResult, record: dict[str, Any], records_prefix: str) -> dict[str, Any]:
    """The experiment as UI metadata: how the search went, and the winner when there is one."""
    metadata: dict[str, Any] = {
        **run_figures(result, record),
        "records": MetadataValue.path(records_prefix),
        "top_trials": MetadataValue.md(trials_markdown(result.trials, result.metric, list(result.search_space))),
    }
    if result.best is not None:
        metadata.update(
            {
                **best_figures(result),
                "best_hyperparameters": MetadataValue.json(result.best["hyperparameters"]),
                "promote_with": f"fraud-assets promote {result.experiment_id}",
            }
        )
    return metadata
