"""Training group: raw data -> splits -> model -> evaluation -> deployed endpoint."""

import datetime as dt
import time
from typing import Optional

from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    AssetSpec,
    Config,
    Failure,
    MetadataValue,
    Output,
    asset,
    multi_asset,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.common import markdown_table, selected_checks
from fraud_assets.defs.engines import DataPrepEngine
from fraud_assets.defs.resources import (
    AwsClients,
    FeatureEngineering,
    FraudPlatform,
    QualityGates,
    RiskThresholds,
    TrainingEngine,
)
from fraud_assets.defs.training.checks import (
    endpoint_check_specs,
    endpoint_result,
    gate_result,
    model_gate_specs,
    split_check_specs,
)
from fraud_assets.defs.training.rollback import history_table
from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.cloudwatch import model_dimensions, publish_metrics
from fraud_assets.lib.aws.storage import S3Uri, StageResult, get_table_columns
from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_DATA_KEY
from fraud_assets.lib.features.training_history import empty_history, join_history, transaction_history, with_history
from fraud_assets.lib.training import endpoint as endpoint_lib
from fraud_assets.lib.training.calibration import release_policy
from fraud_assets.lib.training.evaluation import (
    CLOUDWATCH_METRIC_NAMES,
    Evaluation,
    EvaluationSummary,
    GateFloors,
    evaluate_challenger,
    load_packaged,
    production_model,
    side_by_side_rows,
)
from fraud_assets.lib.training.extraction import (
    LabelledDays,
    dataset_summary,
    hold_out,
    load_labelled_days,
    recent_window_summary,
)
from fraud_assets.lib.training.features import EngineeredFeatures, engineered_feature_names
from fraud_assets.lib.training.gates import gate_records, split_gates
from fraud_assets.lib.training.hyperparameters import HyperparameterSet, read_hyperparameters
from fraud_assets.lib.training.model import (
    ModelFacts,
    load_model_package,
    model_version,
    package_model,
    reference_features,
    train_model,
)
from fraud_assets.lib.training.registry import deployment_refusal, find_model, register_model
from fraud_assets.lib.training.splits import SPLITS, split_summary
from fraud_assets.lib.training.training_job import train_with_job

raw_transactions = AssetSpec(
    "raw_transactions",
    description="Historical labelled card transactions (Kaggle credit-card schema: Time, V1..V28, Amount, Class) "
    f"at s3://<data bucket>/{RAW_DATA_KEY}. Uploaded outside Dagster (`fraud-assets seed`).",
    kinds={"s3", "csv"},
)


class TrainingDataConfig(Config):
    history_days: int = Field(
        default=180, description="Labelled daily transactions of this many days (the original design's 6 months) join the raw history."
    )
    recent_window_days: int = Field(
        default=7, description="The most recent labelled days held out of training: the out-of-time window evaluation compares models on."
    )
    legit_sample_cap: Optional[int] = Field(
        default=None, description="Keep about this many legitimate rows (every fraud is kept); none: no sampling."
    )
    seed: int = Field(default=42, description="Seed of the id hash that samples legitimate rows.")


@multi_asset(
    name="data_extraction",
    deps=[raw_transactions, "fraud_labels", "daily_batches"],
    outs={
        "training_dataset": AssetOut(
            description="The original design's Data Extraction stage: the raw history (raw/creditcard.csv) plus the labelled daily "
            "transactions of the last N days (daily-batches/{date}.json joined with labels/{date}.json; unlabelled rows left "
            "out), deduplicated by transactionId, each row's provenance in `source` (raw / daily:<date>), legitimate rows "
            "optionally sampled (the rate is in the summary). The most recent labelled days are not in it.",
            kinds={"parquet", "s3", "pandas"},
        ),
        "recent_labelled_window": AssetOut(
            description="The most recent labelled days (default 7), held out of training: the out-of-time window on which "
            "evaluation_metrics compares the challenger with the model in production.",
            kinds={"parquet", "s3"},
        ),
        "transaction_history": AssetOut(
            description="Point-in-time history features of every transaction of the raw history and the labelled days "
            "(customer counts and mean amounts over 1, 7 and 30 days, velocity over 1 h and 24 h, terminal transactions and "
            "risk over 1, 7 and 30 labelled days shifted back by the label delay), computed over the whole timeline before "
            "any sampling or split, by transactionId. Empty when the raw data has no customers (the Kaggle schema) or "
            "feature engineering is off.",
            kinds={"parquet", "s3", "pandas"},
        ),
    },
)
def data_extraction(
    context: AssetExecutionContext,
    config: TrainingDataConfig,
    s3: S3Resource,
    platform: FraudPlatform,
    data_prep_engine: DataPrepEngine,
    feature_engineering: FeatureEngineering,
):
    client = s3_client(s3)
    raw_uri = str(S3Uri(platform.data_bucket, RAW_DATA_KEY))
    labelled = load_labelled_days(client, platform.data_bucket, config.history_days, config.recent_window_days)
    history = _transaction_history(client, platform, labelled, feature_engineering, data_prep_engine)
    dataset, summary, engine_metadata = data_prep_engine.extract(client, raw_uri, labelled.daily, config.seed, config.legit_sample_cap)
    recent = hold_out(labelled.recent, dataset)
    recent = recent if history is None else join_history(recent, history)
    summary = dataset_summary(summary, raw_uri=raw_uri, history_days=config.history_days, labelled=labelled, recent=recent)
    yield Output(
        StageResult(summary=summary, tables={"dataset": dataset}),
        output_name="training_dataset",
        metadata={**_dataset_metadata(len(dataset), summary, labelled), **engine_metadata},
    )
    window = recent_window_summary(recent, labelled.recent_dates)
    yield Output(
        StageResult(summary=window, tables={"window": recent}),
        output_name="recent_labelled_window",
        metadata={keys.ROWS: window["rows"], "fraud_count": window["fraud"], keys.DATES: MetadataValue.json(window["dates"])},
    )
    rows = 0 if history is None else len(history)
    yield Output(
        StageResult(
            summary={"rows": rows, "label_delay_days": feature_engineering.label_delay_days},
            tables={"history": history if rows else empty_history()},
        ),
        output_name="transaction_history",
        metadata={keys.ROWS: rows, "label_delay_days": feature_engineering.label_delay_days},
    )


def _transaction_history(
    client, platform: FraudPlatform, labelled: LabelledDays, feature_engineering: FeatureEngineering, engine: DataPrepEngine
):
    """The history table, or None: feature engineering switched off, or no customers in the raw data."""
    if feature_engineering.enabled is False:
        return None
    delay = feature_engineering.label_delay_days
    return transaction_history(
        client, platform.data_bucket, [labelled.daily, labelled.recent], lambda source: engine.history_features(source, delay)
    )


def _dataset_metadata(rows: int, summary: dict, labelled: LabelledDays) -> dict:
    """training_dataset's UI metadata from its summary (the camelCase counts the engines write)."""
    days = labelled.day_rows()
    return {
        keys.ROWS: rows,
        "rows_from_raw": summary["rowsFromRaw"],
        keys.ROWS_FROM_DAILY: summary["rowsFromDaily"],
        "fraud_count": summary["fraudCount"],
        "duplicates_dropped": summary["duplicatesDropped"],
        "labelled_days": len(labelled.window.training_dates),
        "legit_sampling_rate": summary["sampling"]["legitimateRate"],
        "days": MetadataValue.md(markdown_table(["date", "labelled rows", "fraud", "note"], days) if days else "no labelled days yet"),
    }


class DataPrepConfig(Config):
    seed: int = Field(default=42, description="Seed of the row-key hash that assigns splits.")
    train_ratio: float = 0.70
    validation_ratio: float = 0.15
    test_ratio: float = 0.15


@multi_asset(
    name="prepared_splits",
    ins={"training_dataset": AssetIn()},
    outs={
        f"{split}_split": AssetOut(
            description=f"The {split} split of the training data set ({ratio:.0%} by a deterministic hash of the "
            "transactionId), parquet, with a stable transactionId per row.",
            kinds={"parquet", "s3", "pandas"},
        )
        for split, ratio in zip(SPLITS, (0.70, 0.15, 0.15))
    },
    check_specs=split_check_specs,
)
def prepared_splits(
    context: AssetExecutionContext,
    config: DataPrepConfig,
    training_dataset: StageResult,
    s3: S3Resource,
    data_prep_engine: DataPrepEngine,
    quality_gates: QualityGates,
):
    """The original design's DataPrep stage: split the training data set 70/15/15 by its ids, write parquet."""
    dataset_uri = training_dataset.uris["dataset"]
    ratios = (config.train_ratio, config.validation_ratio, config.test_ratio)
    started = time.perf_counter()
    # The engine reads the stored parquet itself: the data set's rows never load here.
    records = int(training_dataset.stored["dataset"]["rows"])
    prepared = data_prep_engine.split_dataset(context, s3_client(s3), dataset_uri, records, config.seed, ratios)
    splits = prepared.frames
    # The input's own record count, not the splits' sum: the counts_add_up gate compares the two.
    received = int(prepared.metadata["input_records"])
    summary = split_summary(received, splits)
    sampling_rate = training_dataset.summary["sampling"]["legitimateRate"]
    summary.update(
        {
            "input": dataset_uri,
            "seed": config.seed,
            "ratios": ratios,
            "engine": data_prep_engine.engine,
            "legitimateSamplingRate": sampling_rate,
        }
    )
    elapsed = time.perf_counter() - started
    engine_metadata = {k: v for k, v in prepared.metadata.items() if k != "input_records"}
    for name in SPLITS:
        frame = splits[name]
        stats = summary["splits"][name]
        yield Output(
            StageResult(summary={**summary, "split": name}, tables={name: frame}),
            output_name=f"{name}_split",
            metadata={
                "rows": len(frame),
                "fraud_count": stats["fraudCount"],
                "fraud_rate": stats["fraudRate"],
                "fraction": stats["fraction"],
                "record_count": received,
                "prep_seconds": elapsed,
                "legit_sampling_rate": sampling_rate,
                **engine_metadata,
            },
        )
    verdicts = split_gates(splits, received, quality_gates.split_ratio_tolerance)
    yield from selected_checks(context, (gate_result(f"{split}_split", gate) for split, gates in verdicts.items() for gate in gates))


@asset(
    kinds={"ssm"},
    description="XGBoost hyperparameters read from SSM Parameter Store under /fraud-detection/hyperparameters/* "
    "(the original design's defaults max_depth=5, eta=0.1, objective=binary:logistic when none are set).",
)
def model_hyperparameters(context: AssetExecutionContext, aws: AwsClients) -> StageResult:
    found = read_hyperparameters(aws.client("ssm"))
    rows = [(name, value, found.versions.get(name, "default")) for name, value in sorted(found.values.items())]
    context.add_output_metadata(
        {
            "source": found.source,
            "experiment_id": found.experiment_id or "none",
            "hyperparameters": MetadataValue.md(markdown_table(["parameter", "value", "SSM version"], rows)),
            **{f"param_{k}": v for k, v in found.values.items() if isinstance(v, (int, float))},
        }
    )
    return StageResult(summary=found.to_summary())


@asset(
    kinds={"pandas", "parquet", "s3"},
    description="The original design's Feature Engineering stage: hour of day, night flag, log amount and amount z-score "
    "against the training split's statistics, plus the point-in-time history features of transaction_history when the "
    "data carries customers and terminals. On by default where the data has customers (the simulated world), off for "
    "the Kaggle schema; FRAUD_FEATURE_ENGINEERING=1 / 0 or the feature_engineering resource decides otherwise. When off "
    "the splits pass through with the raw features.",
)
def engineered_features(
    context: AssetExecutionContext,
    train_split: StageResult,
    validation_split: StageResult,
    test_split: StageResult,
    transaction_history: StageResult,
    feature_engineering: FeatureEngineering,
    data_prep_engine: DataPrepEngine,
) -> StageResult:
    inputs = {"train": train_split, "validation": validation_split, "test": test_split}
    history = transaction_history.tables["history"]
    with_history = len(history) > 0
    enabled = with_history if feature_engineering.enabled is None else feature_engineering.enabled
    tables, stored = {}, {}
    if enabled:
        splits = {name: split.table for name, split in inputs.items()}
        if with_history:
            splits = {name: join_history(frame, history) for name, frame in splits.items()}
        tables, stats = data_prep_engine.engineer_features(splits)
        names = engineered_feature_names(with_history)
        if with_history:  # what serving needs to compute them the same way
            stats["history_features"] = {"label_delay_days": int(transaction_history.summary["label_delay_days"])}
    else:
        # The splits pass through untouched: output.json points at their parquet, nothing is read or written.
        stored = {name: next(iter(split.stored.values())) for name, split in inputs.items()}
        stats, names = None, list(FEATURE_COLUMNS)
    context.add_output_metadata(
        {
            "enabled": enabled,
            "history_features": with_history and enabled,
            "engine": data_prep_engine.engine,
            "feature_count": len(names),
            "feature_names": MetadataValue.json(names),
        }
    )
    summary = EngineeredFeatures(enabled=enabled, feature_names=names, feature_stats=stats)
    return StageResult(summary=summary.to_summary(), tables=tables, stored=stored)


@asset(
    kinds={"xgboost", "sagemaker", "s3"},
    description="XGBoost binary classifier with early stopping on the validation split, trained as a SageMaker "
    "training job (the built-in XGBoost algorithm's contract: label-first CSV channels train and validation, one or "
    "more hosts; the job's log lines stream into the run's log) or in-process (the training_engine resource). "
    "model.tar.gz holds the job's booster as `xgboost-model`, loadable by the built-in container, plus the isotonic "
    "calibration map fitted on validation and the chosen risk thresholds (plain JSON in the package metadata).",
)
def fraud_model(
    context: AssetExecutionContext,
    engineered_features: StageResult,
    model_hyperparameters: StageResult,
    risk_thresholds: RiskThresholds,
    training_engine: TrainingEngine,
    aws: AwsClients,
    s3: S3Resource,
    platform: FraudPlatform,
) -> StageResult:
    hyperparameters = HyperparameterSet.from_summary(model_hyperparameters.summary)
    features = EngineeredFeatures.from_summary(engineered_features.summary)
    started = time.perf_counter()
    trained, training = _train(
        context, training_engine, engineered_features, hyperparameters.values, features.feature_names, aws, s3, platform
    )
    seconds = time.perf_counter() - started
    train, validation = _fitted_frames(training_engine, engineered_features, trained, features.feature_names, s3)
    calibration, thresholds = release_policy(trained.predict(validation), validation[LABEL_COLUMN].to_numpy(), risk_thresholds.policy())
    facts = ModelFacts.of(
        trained,
        model_version=model_version(dt.datetime.now(dt.timezone.utc), context.run_id),
        hyperparameters=hyperparameters.values,
        experiment_id=hyperparameters.experiment_id,
        train=train,
        train_rows=int(engineered_features.stored["train"]["rows"]),
        validation=validation,
        feature_stats=features.feature_stats,
        training_seconds=seconds,
        calibration=calibration,
        thresholds=thresholds,
        training=training,
    )
    context.add_output_metadata(_model_metadata(facts))
    return StageResult(summary=facts.to_summary(), files={"model.tar.gz": package_model(trained.booster, facts.package_metadata())})


def _train(context, engine: TrainingEngine, splits: StageResult, hyperparameters: dict, feature_names: list[str], aws, s3, platform):
    """(TrainedModel, where it trained): in the Dagster process (both splits loaded whole), or as a
    SageMaker training job whose name derives from the run (the root run's, so a re-executed step
    finds its job), its channels streamed from the splits' stored parquet: nothing loaded here."""
    if engine.engine == "in-process":
        return train_model(splits.tables["train"], splits.tables["validation"], hyperparameters, feature_names=feature_names), {
            "engine": "in-process"
        }
    sagemaker = aws.client("sagemaker")
    run_id = context.run.root_run_id or context.run_id
    return train_with_job(
        sagemaker=sagemaker,
        logs=aws.client("logs"),
        s3=s3_client(s3),
        run_id=run_id,
        train=splits.uris["train"],
        validation=splits.uris["validation"],
        feature_names=feature_names,
        hyperparameters=hyperparameters,
        role_arn=platform.sagemaker_role_arn,
        region=sagemaker.meta.region_name,
        channel_bucket=platform.workflow_bucket,
        channel_prefix=f"executions/{context.run_id}/fraud_model/channels",
        output_path=f"s3://{platform.models_bucket}/training-jobs",
        settings=engine.settings(),
        on_log_line=lambda stream, line: context.log.info(f"[{stream}] {line}"),
    )


def _fitted_frames(engine: TrainingEngine, splits: StageResult, trained, feature_names: list[str], s3):
    """(train, validation) as calibration, thresholds and the drift reference read them. In-process
    training loaded both whole already; after a job only what they need is read from the stored
    parquet: validation's label and model columns, the train split's reference feature columns."""
    if engine.engine == "in-process":
        return splits.tables["train"], splits.tables["validation"]
    client = s3_client(s3)
    return (
        get_table_columns(client, splits.uris["train"], reference_features(trained.booster)),
        get_table_columns(client, splits.uris["validation"], [LABEL_COLUMN, *feature_names]),
    )


def _model_metadata(facts: ModelFacts) -> dict:
    """fraud_model's UI metadata."""
    return {
        keys.MODEL_VERSION: facts.model_version,
        keys.FEATURE_NAMES: MetadataValue.json(facts.feature_names),
        "experiment_id": facts.experiment_id or "none",
        "best_iteration": facts.best_iteration,
        "validation_aucpr": facts.validation_score,
        "training_seconds": facts.training_seconds,
        "training_engine": facts.training["engine"],
        "training_job_name": facts.training.get("job_name") or "none",
        "top_features": MetadataValue.md(markdown_table(["feature", "gain"], facts.top_features)),
        "calibration_breakpoints": len(facts.calibration["x"]),
        **_threshold_metadata(facts.thresholds),
    }


def _threshold_metadata(thresholds: dict) -> dict:
    """The chosen thresholds and what they gave on validation, as UI metadata."""
    expected = thresholds["expected"]

    def number(value):
        return float("nan") if value is None else value

    return {
        "threshold_policy": thresholds["policy"]
        + (f" {thresholds['target']}" if thresholds["target"] is not None else "")
        + ("" if thresholds["target_met"] else " (not reached: fixed threshold kept)"),
        "high_risk_threshold": thresholds["high"],
        "medium_risk_threshold": thresholds["medium"],
        "expected_high_risk_precision": number(expected["high"]["precision"]),
        "expected_high_risk_recall": number(expected["high"]["recall"]),
        "thresholds": MetadataValue.md(
            markdown_table(
                ["bucket", "threshold (calibrated)", "validation precision", "validation recall", "validation share"],
                [
                    (
                        name,
                        thresholds[name],
                        *("-" if expected[name][k] is None else expected[name][k] for k in ("precision", "recall", "share")),
                    )
                    for name in ("high", "medium")
                ],
            )
        ),
    }


@asset(
    kinds={"scikitlearn", "s3"},
    description="The model scored on the test split: accuracy, precision, recall, F1, ROC-AUC, PR-AUC, confusion "
    "matrix, the high-risk bucket (calibrated score >= the model's high-risk threshold, 0.8 by default); and the "
    "challenger against the model in production (champion) on the recent labelled window and the test split. The no-regression gate compares them on the recent window when "
    "it holds both classes, else on the test split.",
    check_specs=model_gate_specs,
)
def evaluation_metrics(
    context: AssetExecutionContext,
    fraud_model: StageResult,
    test_split: StageResult,
    recent_labelled_window: StageResult,
    transaction_history: StageResult,
    s3: S3Resource,
    platform: FraudPlatform,
    quality_gates: QualityGates,
    aws: AwsClients,
):
    evaluation = evaluate_challenger(
        challenger=load_packaged(fraud_model.files["model.tar.gz"]),
        champion=production_model(s3_client(s3), platform.names),
        test=with_history(test_split.table, transaction_history.tables["history"]),
        window=recent_labelled_window.table,
        window_dates=recent_labelled_window.summary["dates"],
        floors=GateFloors(
            accuracy=quality_gates.accuracy_floor,
            pr_auc=quality_gates.pr_auc_floor,
            high_risk_precision=quality_gates.high_risk_precision_floor,
            regression_tolerance=quality_gates.regression_tolerance,
        ),
    )
    # Under the endpoint the candidate is meant for, and its own version (deployed or not).
    publish_metrics(
        aws.client("cloudwatch"),
        {CLOUDWATCH_METRIC_NAMES[m]: value for m, value in evaluation.reported().items()},
        model_dimensions(platform.endpoint_name, evaluation.model_version),
    )
    # Every evaluated model is registered, Approved only when every gate passed: the verdict
    # deployment reads, whatever starts it.
    registered = register_model(
        aws.client("sagemaker"),
        model_version=evaluation.model_version,
        model_data_url=endpoint_lib.copy_to_registry(
            s3_client(s3), platform.names, fraud_model.uris["model.tar.gz"], evaluation.model_version
        ),
        image_uri=platform.xgboost_image_uri,
        gates=gate_records(evaluation.gates),
        metrics=evaluation.reported(),
        provenance={"run_id": context.run_id, **_training_provenance(fraud_model.summary)},
    )
    context.add_output_metadata(
        output_name="result",
        metadata={**_evaluation_metadata(evaluation), "model_package_arn": registered.arn, "approval_status": registered.approval_status},
    )
    yield Output(StageResult(summary=evaluation.summary().to_summary()))
    yield from selected_checks(context, (gate_result("evaluation_metrics", gate) for gate in evaluation.gates))


def _training_provenance(model_summary: dict) -> dict:
    """Where the model's data and training came from, as the registry records it."""
    training = model_summary.get("training") or {}
    return {
        "training_engine": training.get("engine"),
        "training_job_name": training.get("job_name"),
        "train_rows": model_summary.get("train_rows"),
        "experiment_id": model_summary.get("experiment_id"),
    }


def _evaluation_metadata(evaluation: Evaluation) -> dict:
    """evaluation_metrics' UI metadata: the figures, the side-by-side, the confusion matrix, the gates."""
    metrics, cm = evaluation.metrics, evaluation.metrics["confusion_matrix"]
    recent_figures = {
        keys.challenger_recent_key(model, name): (value if value is not None else float("nan"))
        for model in ("challenger", "champion")
        for name, value in evaluation.sides[f"{model}_recent"].items()
    }
    return {
        **evaluation.reported(),
        "test_samples": metrics["test_samples"],
        "high_risk_share": metrics["high_risk_share"],
        **(_threshold_metadata(evaluation.thresholds) if evaluation.thresholds else {}),
        keys.MODEL_VERSION: evaluation.model_version,
        "production_model_version": evaluation.champion_version or "none",
        "recent_window_rows": evaluation.window_rows,
        "recent_window_fraud": evaluation.window_fraud,
        **recent_figures,
        "champion_vs_challenger": MetadataValue.md(
            markdown_table(
                ["metric", "challenger (recent window)", "champion (recent window)", "challenger (test split)", "champion (test split)"],
                [(name, *map(_format, values)) for name, *values in side_by_side_rows(evaluation.sides)],
            )
        ),
        "confusion_matrix": MetadataValue.md(
            markdown_table(["", "predicted legit", "predicted fraud"], [("legit", cm["tn"], cm["fp"]), ("fraud", cm["fn"], cm["tp"])])
        ),
        "gates": MetadataValue.md(markdown_table(["gate", "passed", "detail"], [(g.name, g.passed, g.message) for g in evaluation.gates])),
    }


def _format(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


@asset(
    kinds={"sagemaker", "s3"},
    description="The production SageMaker endpoint serving this model. Deploys only a model whose recorded evaluation "
    "(evaluation_metrics of that exact model version) passed every blocking gate, however the run starts; otherwise it "
    "refuses, naming the failed gates. Health-checked with a known transaction before the endpoint pointer in the config "
    "bucket moves; on a failed check the previous model stays in service.",
    check_specs=endpoint_check_specs,
)
def deployed_endpoint(
    context: AssetExecutionContext,
    fraud_model: StageResult,
    evaluation_metrics: StageResult,
    test_split: StageResult,
    transaction_history: StageResult,
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
):
    names, client = platform.names, s3_client(s3)
    booster, meta = load_model_package(fraud_model.files["model.tar.gz"])
    version = meta["model_version"]
    registered = find_model(aws.client("sagemaker"), version)
    refusal = deployment_refusal(version, registered)
    if refusal:
        # Before anything is created: the pointer and the serving endpoint stay as they are.
        _refuse(refusal, version, (endpoint_lib.current_endpoint(client, names) or {}).get("model_version"), names.endpoint_name)
    evaluation = EvaluationSummary.from_summary(evaluation_metrics.summary)
    model_uri = registered.model_data_url  # the Approved package's artifact
    probe = endpoint_lib.health_check_probe(booster, meta, with_history(test_split.table, transaction_history.tables["history"]))
    deployed = endpoint_lib.deploy_model(
        sagemaker=aws.client("sagemaker"),
        runtime=aws.client("sagemaker-runtime"),
        s3=client,
        names=names,
        model_uri=model_uri,
        model_version=version,
        feature_names=meta["feature_names"],
        health_check_features=probe.features,
        expected_score=probe.expected_score,
        extra_metadata={
            **endpoint_lib.deployment_record(evaluation.metrics, meta, probe, context.run_id),
            "model_package_arn": registered.arn,
        },
    )
    history = endpoint_lib.deployment_history(client, names)
    context.add_output_metadata(output_name="result", metadata=_deployment_metadata(deployed, model_uri, history))
    yield Output(StageResult(summary=deployed))
    if context.selected_asset_check_keys:
        # After the pointer moved: what a caller reaching the endpoint now gets.
        pointer = endpoint_lib.current_endpoint(client, names) or {}
        served = endpoint_lib.invoke_one(aws.client("sagemaker-runtime"), deployed["endpoint_name"], deployed["health_check"]["features"])
        yield endpoint_result(served, deployed["health_check"]["expected_score"], version, pointer.get("model_version"))


def _refuse(refusal: str, version: str, serving: str | None, endpoint_name: str):
    raise Failure(
        description=f"{refusal}; not deployed, {endpoint_name} keeps serving {serving or 'nothing (no model deployed yet)'}",
        metadata={keys.MODEL_VERSION: version, "serving_model_version": serving or "none"},
        allow_retries=False,
    )


def _deployment_metadata(deployed: dict, model_uri: str, history: list[dict]) -> dict:
    """deployed_endpoint's UI metadata: what serves now, and the deployment history."""
    return {
        keys.ENDPOINT_NAME: deployed["endpoint_name"],
        keys.MODEL_VERSION: deployed["model_version"],
        keys.MODEL_URI: MetadataValue.path(model_uri),
        "experiment_id": deployed.get("experiment_id") or "none",
        "deployed_at": deployed["deployed_at"],
        "model_package_arn": deployed.get("model_package_arn") or "none",
        "health_check_score": deployed["health_check"]["served_score"],
        "deployment_history": history_table(history),
    }
