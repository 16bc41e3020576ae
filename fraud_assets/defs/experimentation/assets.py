"""Experimentation group: the on-demand hyperparameter search over the training splits."""

import json
from typing import Any, Literal, Optional

import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MetadataValue, asset
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.common import EXPERIMENTATION, OWNERS
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
from fraud_assets.lib.training.hyperparameters import read_hyperparameters
from fraud_assets.lib.training.metrics import HEADLINE_METRICS


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


def _trials_frame(result: ExperimentResult) -> pd.DataFrame:
    """One row per trial; params as JSON text because a categorical dimension may mix types,
    which a parquet column cannot."""
    rows = []
    for t in result.trials:
        metrics = t.get("metrics") or {}
        rows.append(
            {
                "number": t["number"],
                "state": t["state"],
                "value": t["value"],
                **{m: metrics.get(m) for m in HEADLINE_METRICS},
                "best_iteration": t.get("best_iteration"),
                "duration_seconds": t.get("duration_seconds"),
                "params": json.dumps(t["params"], sort_keys=True),
                "error": t.get("error"),
            }
        )
    frame = pd.DataFrame(rows)
    for column in ("value", *HEADLINE_METRICS, "duration_seconds"):
        frame[column] = frame[column].astype("float64")
    frame["best_iteration"] = frame["best_iteration"].astype("Int64")
    return frame


@asset(
    group_name=EXPERIMENTATION,
    kinds={"xgboost", "optuna", "s3"},
    owners=OWNERS,
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
    base: dict[str, Any] = {}
    production = None
    if config.base_on_production:
        production = read_hyperparameters(aws.client("ssm"))
        base.update(production.values)
    base.update(config.base_hyperparameters or {})
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
        base_hyperparameters=base,
        experiment_id=experiment_id,
        nthread=config.nthread,
        timeout_seconds=config.timeout_seconds,
    )
    splits = {**train_split.uris, **validation_split.uris}
    origin = {
        "dagster_run_id": context.run_id,
        "base": "production" if production is not None else "defaults",
        "base_source": production.source if production is not None else None,
        "base_experiment_id": production.experiment_id if production is not None else None,
    }
    uris = record_experiment(s3_client(s3), platform.workflow_bucket, result, splits, origin=origin)
    record = result.config_record(splits, origin)

    metadata: dict[str, Any] = {
        "experiment_id": experiment_id,
        "records": MetadataValue.path(uris["prefix"]),
        "strategy": config.strategy,
        "metric": config.metric,
        "trials_run": len(result.trials),
        "trials_completed": len(result.completed),
        "trials_failed": len(result.failed),
        "duration_seconds": result.duration_seconds,
        "mean_trial_seconds": record["mean_trial_seconds"] or 0.0,
        "top_trials": MetadataValue.md(trials_markdown(result.trials, config.metric, list(result.search_space))),
    }
    if result.best is None:
        errors = sorted({t["error"] for t in result.failed if t.get("error")})
        raise Failure(
            description=f"experiment {experiment_id}: none of {len(result.trials)} trials completed; first errors: {errors[:3]}",
            metadata=metadata,
            allow_retries=False,
        )
    best = result.best
    metadata.update(
        {
            "best_trial": best["number"],
            f"best_{config.metric}": best["value"],
            **{f"best_{m}": float(best["metrics"][m]) for m in HEADLINE_METRICS if best["metrics"].get(m) is not None},
            "best_hyperparameters": MetadataValue.json(best["hyperparameters"]),
            "promote_with": f"fraud-assets promote {experiment_id}",
        }
    )
    context.add_output_metadata(metadata)
    return StageResult(summary={**record, "records": uris}, tables={"trials": _trials_frame(result)})
