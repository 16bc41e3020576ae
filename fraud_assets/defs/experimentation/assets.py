"""Experimentation group: the on-demand comparison of algorithms, feature sets and hyperparameters
over the training splits (decisions in lib/experimentation, wiring here)."""

import base64
from typing import Any, Literal, Optional

from dagster import AssetExecutionContext, Config, Failure, MetadataValue, TableColumn, TableRecord, TableSchema, asset
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.resources import AwsClients, FeatureEngineering, FraudPlatform, RiskThresholds
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.storage import StageResult
from fraud_assets.lib.experimentation.algorithms import ALGORITHMS, SERVABLE
from fraud_assets.lib.experimentation.experiments import (
    DEFAULT_SEARCH_SPACE,
    MAXIMISED_METRICS,
    ExperimentResult,
    base_hyperparameters,
    comparison_rows,
    metric_plot_svg,
    new_experiment_id,
    record_experiment,
    run_experiment,
    trials_markdown,
)
from fraud_assets.lib.experimentation.feature_sets import FEATURE_SETS
from fraud_assets.lib.experimentation.tuning import (
    best_figures,
    describe_search,
    experiment_origin,
    no_completed_trials,
    promote_hint,
    run_figures,
    trials_frame,
)
from fraud_assets.lib.experimentation.validation import DEFAULT_BLOCK_DAYS, DEFAULT_FOLDS, ValidationError, ValidationSpec
from fraud_assets.lib.training.hyperparameters import read_hyperparameters


class TuningExperimentConfig(Config):
    strategy: Literal["grid", "random", "bayesian"] = Field(
        default="bayesian", description="optuna sampler: grid (GridSampler), random (RandomSampler), bayesian (TPESampler)."
    )
    n_trials: int = Field(
        default=20, ge=1, le=1000, description="Trials per algorithm and feature set (a grid stops early when exhausted)."
    )
    algorithms: list[str] = Field(
        default=["xgboost"],
        description=f"Algorithms compared, each with its own search space: any of {', '.join(ALGORITHMS)}. "
        f"Only {', '.join(SERVABLE)} can be promoted (the endpoint runs the built-in XGBoost container).",
    )
    feature_sets: list[str] = Field(
        default=["raw"], description=f"Feature sets compared: any of {', '.join(FEATURE_SETS)} (history needs customer fields)."
    )
    validation: Literal["random", "prequential"] = Field(
        default="random",
        description="random: the train/validation splits; prequential: time-ordered folds of train / delay / validation blocks "
        "over both splits, shifted back one block per fold (the test split stays held out).",
    )
    block_days: float = Field(
        default=DEFAULT_BLOCK_DAYS, gt=0, description="Prequential block size in days (Kaggle's 2 days: e.g. 0.3333)."
    )
    n_folds: int = Field(default=DEFAULT_FOLDS, ge=1, le=52, description="Prequential folds.")
    delay_blocks: int = Field(default=1, ge=0, description="Prequential blocks between train and validation (label delay).")
    search_space: Optional[dict[str, dict[str, Any]]] = Field(
        default=None,
        description="Parameter name -> {type: int|float|categorical, low, high, log, step, choices, grid, grid_points}, or such a "
        f"mapping per algorithm ({{lightgbm: {{...}}}}). Default xgboost space: {', '.join(DEFAULT_SEARCH_SPACE)} "
        "(see fraud_assets.lib.experimentation.algorithms).",
    )
    metric: str = Field(default="pr_auc", description=f"Validation metric to maximise: one of {', '.join(MAXIMISED_METRICS)}.")
    seed: int = Field(default=0, description="Sampler seed: the same seed and data give the same trials.")
    base_on_production: bool = Field(
        default=True,
        description="Start every xgboost trial from the production hyperparameters in Parameter Store (else the defaults).",
    )
    base_hyperparameters: Optional[dict[str, Any]] = Field(
        default=None,
        description="Fixed hyperparameters laid over the base, e.g. {num_round: 300} (xgboost's when flat with several algorithms), "
        "or per algorithm ({lightgbm: {n_estimators: 500}}); searched names override them.",
    )
    timeout_seconds: Optional[float] = Field(default=None, description="Stop starting new trials after this long.")
    nthread: Optional[int] = Field(default=None, description="Threads per trial (default: all cores).")


_COMPARISON_COLUMNS = (
    ("algorithm", "string"),
    ("feature_set", "string"),
    ("trial", "int"),
    ("pr_auc", "float"),
    ("pr_auc_std", "float"),
    ("roc_auc", "float"),
    ("roc_auc_std", "float"),
    ("high_risk_precision", "float"),
    ("high_risk_precision_std", "float"),
    ("high_risk_recall", "float"),
    ("high_risk_recall_std", "float"),
    ("threshold", "float"),
    ("folds", "int"),
    ("fit_seconds", "float"),
    ("mean_trial_seconds", "float"),
    ("model_size", "int"),
    ("model_size_unit", "string"),
    ("servable", "bool"),
)


def comparison_table(result: ExperimentResult) -> MetadataValue:
    """The best trial per algorithm (and feature set) as a Dagster table."""
    schema = TableSchema(columns=[TableColumn(name, kind) for name, kind in _COMPARISON_COLUMNS])
    records = [
        TableRecord({name: row.get(name) for name, _ in _COMPARISON_COLUMNS if row.get(name) is not None})
        for row in comparison_rows(result.trials, result.metric)
    ]
    return MetadataValue.table(records=records, schema=schema)


def metric_plot(result: ExperimentResult) -> MetadataValue:
    # An SVG data URI inside markdown: the UI renders it inline, and no plotting library is needed.
    svg = base64.b64encode(metric_plot_svg(result.trials, result.metric).encode()).decode()
    return MetadataValue.md(f"![{result.metric} by trial](data:image/svg+xml;base64,{svg})")


@asset(
    kinds={"xgboost", "lightgbm", "scikitlearn", "optuna", "s3"},
    description="Algorithms (XGBoost, LightGBM, random forest, MLP), feature sets and hyperparameters compared by an optuna "
    "search (grid, random or Bayesian/TPE) on the train/validation splits, validated on the random split or on "
    "prequential folds in time, each trial scored as training releases a model (calibration + threshold policy). "
    "Every trial, failed ones included, is recorded in s3://<workflow bucket>/experiments/<experiment id>/ "
    "(config.json, trials.json, best.json). Run on demand; promote an XGBoost winner with the promote_experiment job "
    "or `fraud-assets promote <id>`.",
)
def tuning_experiment(
    context: AssetExecutionContext,
    config: TuningExperimentConfig,
    train_split: StageResult,
    validation_split: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
    risk_thresholds: RiskThresholds,
    feature_engineering: FeatureEngineering,
) -> StageResult:
    production = read_hyperparameters(aws.client("ssm")) if config.base_on_production and "xgboost" in config.algorithms else None
    base = base_hyperparameters(config.algorithms, production.values if production else None, config.base_hyperparameters)
    # The run id in the experiment id ties the S3 records to this run.
    experiment_id = new_experiment_id(config.strategy, suffix=context.run_id[:8])
    context.log.info(f"experiment {experiment_id}: {describe_search(config.model_dump())}")
    try:
        result = run_experiment(
            train_split.table,
            validation_split.table,
            strategy=config.strategy,
            n_trials=config.n_trials,
            algorithms=config.algorithms,
            feature_sets=config.feature_sets,
            label_delay_days=feature_engineering.label_delay_days,
            validation_spec=ValidationSpec(
                config.validation, block_days=config.block_days, n_folds=config.n_folds, delay_blocks=config.delay_blocks
            ),
            search_space=config.search_space,
            metric=config.metric,
            seed=config.seed,
            base_hyperparameters=base,
            threshold_policy=risk_thresholds.policy(),
            experiment_id=experiment_id,
            nthread=config.nthread,
            timeout_seconds=config.timeout_seconds,
        )
    except (ValueError, ValidationError) as err:
        # Refused before any trial (unknown algorithm, empty space, folds that do not fit): bad
        # config, which a retry would not fix.
        raise Failure(description=f"experiment {experiment_id} refused before any trial: {err}", allow_retries=False) from err
    splits = {**train_split.uris, **validation_split.uris}
    origin = experiment_origin(context.run_id, production)
    uris = record_experiment(s3_client(s3), platform.workflow_bucket, result, splits, origin=origin)
    record = result.config_record(splits, origin)
    metadata = _experiment_metadata(result, record, uris)
    if (why := no_completed_trials(result)) is not None:
        raise Failure(description=why, metadata=metadata, allow_retries=False)
    context.add_output_metadata({**metadata, **_best_metadata(result)})
    return StageResult(summary={**record, "records": uris}, tables={"trials": trials_frame(result)})


def _experiment_metadata(result: ExperimentResult, record: dict, uris: dict) -> dict[str, Any]:
    """tuning_experiment's UI metadata, whatever the outcome: the run's figures, the comparison table and the plot."""
    return {
        **run_figures(result, record),
        "records": MetadataValue.path(uris["prefix"]),
        "algorithms": ", ".join(result.algorithms),
        "feature_sets": ", ".join(result.feature_sets),
        "validation": MetadataValue.json(result.validation),
        "best_per_algorithm": comparison_table(result),
        f"{result.metric}_by_trial": metric_plot(result),
        "top_trials": MetadataValue.md(trials_markdown(result.trials, result.metric)),
    }


def _best_metadata(result: ExperimentResult) -> dict[str, Any]:
    best = result.best
    return {
        **best_figures(result),
        "best_algorithm": best["algorithm"],
        "best_feature_set": best["feature_set"],
        "best_hyperparameters": MetadataValue.json(best["hyperparameters"]),
        "promote_with": promote_hint(result),
    }
