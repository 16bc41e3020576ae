"""Training group: raw data -> splits -> model -> evaluation -> deployed endpoint."""

import datetime as dt
import time
from typing import Optional

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
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

from fraud_assets.defs.common import OWNERS, TRAINING, markdown_table, selected_checks
from fraud_assets.defs.engines import DataPrepEngine
from fraud_assets.defs.resources import (
    AwsClients,
    FeatureEngineering,
    FraudPlatform,
    QualityGates,
    RiskThresholds,
)
from fraud_assets.defs.training.checks import (
    endpoint_check_specs,
    endpoint_result,
    gate_result,
    model_gate_specs,
    split_check_specs,
)
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.cloudwatch import model_dimensions, publish_metrics
from fraud_assets.lib.aws.storage import SSE, S3Uri, StageResult, get_bytes
from fraud_assets.lib.config import (
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    RAW_DATA_KEY,
    TRANSACTION_ID,
)
from fraud_assets.lib.training import endpoint as endpoint_lib
from fraud_assets.lib.training.calibration import calibrate, release_policy, thresholds_of
from fraud_assets.lib.training.extraction import empty_daily_rows, list_label_dates, load_labelled_day, split_labelled_dates
from fraud_assets.lib.training.features import (
    engineered_feature_names,
    has_customer_fields,
)
from fraud_assets.lib.training.gates import deployment_refusal, gate_records, model_gates, split_gates
from fraud_assets.lib.training.hyperparameters import read_hyperparameters
from fraud_assets.lib.training.metrics import (
    HEADLINE_METRICS,
    compare_with_production,
    evaluate_scores,
)
from fraud_assets.lib.training.model import (
    drift_reference,
    feature_importance,
    load_model_package,
    model_inputs,
    package_model,
    predict,
    train_model,
)
from fraud_assets.lib.training.splits import SPLITS, split_summary

raw_transactions = AssetSpec(
    "raw_transactions",
    group_name=TRAINING,
    description="Historical labelled card transactions (Kaggle credit-card schema: Time, V1..V28, Amount, Class) "
    f"at s3://<data bucket>/{RAW_DATA_KEY}. Uploaded outside Dagster (`fraud-assets seed`).",
    kinds={"s3", "csv"},
    owners=OWNERS,
)


class TrainingDataConfig(Config):
    history_days: int = Field(
        default=180, description="Labelled daily transactions of this many days (the seeds' 6 months) join the raw history."
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
    group_name=TRAINING,
    deps=[raw_transactions, "fraud_labels", "daily_batches"],
    outs={
        "training_dataset": AssetOut(
            description="The seeds' Data Extraction stage: the raw history (raw/creditcard.csv) plus the labelled daily "
            "transactions of the last N days (daily-batches/{date}.json joined with labels/{date}.json; unlabelled rows left "
            "out), deduplicated by transactionId, each row's provenance in `source` (raw / daily:<date>), legitimate rows "
            "optionally sampled (the rate is in the summary). The most recent labelled days are not in it.",
            kinds={"parquet", "s3", "pandas"},
            owners=OWNERS,
            group_name=TRAINING,
        ),
        "recent_labelled_window": AssetOut(
            description="The most recent labelled days (default 7), held out of training: the out-of-time window on which "
            "evaluation_metrics compares the challenger with the model in production.",
            kinds={"parquet", "s3"},
            owners=OWNERS,
            group_name=TRAINING,
        ),
    },
)
def data_extraction(
    context: AssetExecutionContext, config: TrainingDataConfig, s3: S3Resource, platform: FraudPlatform, data_prep_engine: DataPrepEngine
):
    client = s3_client(s3)
    raw_uri = str(S3Uri(platform.data_bucket, RAW_DATA_KEY))
    window = split_labelled_dates(list_label_dates(client, platform.data_bucket), config.history_days, config.recent_window_days)
    days, parts = [], {}
    for date in [*window.training_dates, *window.recent_dates]:
        rows, counts = load_labelled_day(client, platform.data_bucket, date)
        parts[date] = rows
        days.append(counts)
    training_days = [parts[d] for d in window.training_dates if len(parts[d])]
    recent_days = [parts[d] for d in window.recent_dates if len(parts[d])]
    daily = pd.concat(training_days, ignore_index=True) if training_days else empty_daily_rows()
    recent = pd.concat(recent_days, ignore_index=True) if recent_days else empty_daily_rows()
    dataset, summary, engine_metadata = data_prep_engine.extract(client, raw_uri, daily, config.seed, config.legit_sample_cap)
    # A transaction already in the training data (the raw history, a training day) is not evidence of the
    # recent window's performance: an id lands in one place only.
    # (Hashed on the window's side: the data set's ids are millions.)
    window_ids = pa.array(recent[TRANSACTION_ID].astype(str).tolist(), pa.string())
    seen = dataset.column(TRANSACTION_ID).filter(pc.is_in(dataset.column(TRANSACTION_ID), value_set=window_ids))
    recent = recent[~recent[TRANSACTION_ID].isin(seen.to_pylist())].reset_index(drop=True)
    recent_dates = [d for d in window.recent_dates if len(parts[d])]
    summary.update(
        {
            "input": raw_uri,
            "historyDays": config.history_days,
            "trainingDates": window.training_dates,
            "labelledDatesOutsideHistory": window.outside_history,
            "days": days,
            "recentWindow": {"dates": recent_dates, "rows": len(recent), "fraud": int(recent[LABEL_COLUMN].sum())},
        }
    )
    sampling = summary["sampling"]
    yield Output(
        StageResult(summary=summary, tables={"dataset": dataset}),
        output_name="training_dataset",
        metadata={
            "rows": len(dataset),
            "rows_from_raw": summary["rowsFromRaw"],
            "rows_from_daily": summary["rowsFromDaily"],
            "fraud_count": summary["fraudCount"],
            "duplicates_dropped": summary["duplicatesDropped"],
            "labelled_days": len(window.training_dates),
            "legit_sampling_rate": sampling["legitimateRate"],
            "days": MetadataValue.md(
                markdown_table(
                    ["date", "labelled rows", "fraud", "note"],
                    [
                        (
                            d["date"],
                            d["rows"],
                            d.get("fraud", 0),
                            ("recent window" if d["date"] in window.recent_dates else d.get("skipped", "")),
                        )
                        for d in days
                    ],
                )
                if days
                else "no labelled days yet"
            ),
            **engine_metadata,
        },
    )
    yield Output(
        StageResult(
            summary={"dates": recent_dates, "rows": len(recent), "fraud": int(recent[LABEL_COLUMN].sum())}, tables={"window": recent}
        ),
        output_name="recent_labelled_window",
        metadata={"rows": len(recent), "fraud_count": int(recent[LABEL_COLUMN].sum()), "dates": MetadataValue.json(recent_dates)},
    )


class DataPrepConfig(Config):
    seed: int = Field(default=42, description="Seed of the row-key hash that assigns splits.")
    train_ratio: float = 0.70
    validation_ratio: float = 0.15
    test_ratio: float = 0.15


@multi_asset(
    name="prepared_splits",
    group_name=TRAINING,
    ins={"training_dataset": AssetIn()},
    outs={
        f"{split}_split": AssetOut(
            description=f"The {split} split of the training data set ({ratio:.0%} by a deterministic hash of the "
            "transactionId), parquet, with a stable transactionId per row.",
            kinds={"parquet", "s3", "pandas"},
            owners=OWNERS,
            group_name=TRAINING,
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
    """The seeds' DataPrep stage: split the training data set 70/15/15 by its ids, write parquet."""
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
    group_name=TRAINING,
    kinds={"ssm"},
    owners=OWNERS,
    description="XGBoost hyperparameters read from SSM Parameter Store under /fraud-detection/hyperparameters/* "
    "(the seeds' defaults max_depth=5, eta=0.1, objective=binary:logistic when none are set).",
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
    return StageResult(
        summary={"hyperparameters": found.values, "versions": found.versions, "source": found.source, "experimentId": found.experiment_id}
    )


@asset(
    group_name=TRAINING,
    kinds={"pandas", "parquet", "s3"},
    owners=OWNERS,
    description="The seeds' Feature Engineering stage: hour of day, night flag, log amount and amount z-score "
    "against the training split's statistics (plus velocity and merchant risk when the data carries customers "
    "and merchants). Off by default (FRAUD_FEATURE_ENGINEERING=1 or the feature_engineering resource turns it "
    "on); when off the splits pass through with the raw features.",
)
def engineered_features(
    context: AssetExecutionContext,
    train_split: StageResult,
    validation_split: StageResult,
    test_split: StageResult,
    feature_engineering: FeatureEngineering,
    data_prep_engine: DataPrepEngine,
) -> StageResult:
    inputs = {"train": train_split, "validation": validation_split, "test": test_split}
    tables, stored = {}, {}
    if feature_engineering.enabled:
        splits = {name: split.table for name, split in inputs.items()}
        tables, stats = data_prep_engine.engineer_features(splits)
        names = engineered_feature_names(has_customer_fields(splits["train"]))
    else:
        # The splits pass through untouched: output.json points at their parquet, nothing is read or written.
        stored = {name: next(iter(split.stored.values())) for name, split in inputs.items()}
        stats, names = None, list(FEATURE_COLUMNS)
    context.add_output_metadata(
        {
            "enabled": feature_engineering.enabled,
            "engine": data_prep_engine.engine,
            "feature_count": len(names),
            "feature_names": MetadataValue.json(names),
        }
    )
    return StageResult(
        summary={"enabled": feature_engineering.enabled, "featureNames": names, "featureStats": stats}, tables=tables, stored=stored
    )


@asset(
    group_name=TRAINING,
    kinds={"xgboost", "s3"},
    owners=OWNERS,
    description="XGBoost binary classifier trained in-process with early stopping on the validation split; "
    "model.tar.gz holding `xgboost-model` (JSON), loadable by the SageMaker built-in XGBoost container, plus the "
    "isotonic calibration map fitted on validation and the chosen risk thresholds (plain JSON in the package metadata).",
)
def fraud_model(
    context: AssetExecutionContext, engineered_features: StageResult, model_hyperparameters: StageResult, risk_thresholds: RiskThresholds
) -> StageResult:
    hyperparameters = model_hyperparameters.summary["hyperparameters"]
    train, validation = engineered_features.tables["train"], engineered_features.tables["validation"]
    started = time.perf_counter()
    trained = train_model(train, validation, hyperparameters, feature_names=engineered_features.summary["featureNames"])
    seconds = time.perf_counter() - started
    version = f"{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{context.run_id[:8]}"
    experiment_id = model_hyperparameters.summary.get("experimentId")
    calibration, thresholds = release_policy(trained.predict(validation), validation[LABEL_COLUMN].to_numpy(), risk_thresholds.policy())
    metadata = {
        "model_version": version,
        "feature_names": trained.feature_names,
        "hyperparameters": hyperparameters,
        "experiment_id": experiment_id,
        "best_iteration": trained.best_iteration,
        "validation_aucpr": trained.best_validation_score,
        "train_rows": len(train),
        "feature_stats": engineered_features.summary["featureStats"],
        "training_seconds": seconds,
        "calibration": calibration,
        "thresholds": thresholds,
    }
    importance = feature_importance(trained.booster)
    metadata["reference"] = drift_reference(trained, validation, train, [n for n, _ in importance[:5]])
    context.add_output_metadata(
        {
            "model_version": version,
            "feature_names": MetadataValue.json(trained.feature_names),
            "experiment_id": experiment_id or "none",
            "best_iteration": trained.best_iteration,
            "validation_aucpr": trained.best_validation_score,
            "training_seconds": seconds,
            "top_features": MetadataValue.md(markdown_table(["feature", "gain"], importance)),
            "calibration_breakpoints": len(calibration["x"]),
            **_threshold_metadata(thresholds),
        }
    )
    summary = {
        "modelVersion": version,
        "featureNames": trained.feature_names,
        "bestIteration": trained.best_iteration,
        "validationScore": {trained.eval_metric: trained.best_validation_score},
        "hyperparameters": hyperparameters,
        "experimentId": experiment_id,
        "trainingSeconds": seconds,
        "topFeatures": importance,
        "thresholds": thresholds,
    }
    return StageResult(summary=summary, files={"model.tar.gz": package_model(trained.booster, metadata)})


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


def _production_model(s3, platform: FraudPlatform):
    """The model the endpoint serves now (booster, metadata, version), or None before the first deployment."""
    current = endpoint_lib.current_endpoint(s3, platform.names)
    if current is None:
        return None
    booster, meta = load_model_package(get_bytes(s3, current["model_uri"]))
    meta.setdefault("feature_names", current.get("feature_names"))
    return booster, meta, current["model_version"]


def _evaluate(booster, meta, frame) -> dict:
    """A package's model on raw rows as production sees it: scores calibrated with the package's
    map, the high-risk bucket at its threshold; the AUCs rank the raw scores."""
    raw = predict(booster, model_inputs(frame, meta), meta["feature_names"])
    high, _ = thresholds_of(meta)
    return evaluate_scores(
        frame[LABEL_COLUMN].to_numpy(), calibrate(raw, meta.get("calibration")), high_risk_threshold=high, ranking_scores=raw
    )


# What the side-by-side shows of each model, by the names the run summary uses.
# Each model at its own released high-risk threshold (recorded beside the figures).
_SIDE_BY_SIDE = {
    "recall_at_threshold": "high_risk_recall",
    "precision_at_threshold": "high_risk_precision",
    "high_risk_threshold": "high_risk_threshold",
    "pr_auc": "pr_auc",
    "roc_auc": "roc_auc",
}


def _side(metrics: dict | None) -> dict:
    return {name: (metrics[key] if metrics else None) for name, key in _SIDE_BY_SIDE.items()}


_EVALUATION_METRIC_NAMES = {
    "accuracy": "EvaluationAccuracy",
    "precision": "EvaluationPrecision",
    "recall": "EvaluationRecall",
    "f1": "EvaluationF1",
    "roc_auc": "EvaluationRocAuc",
    "pr_auc": "EvaluationPrAuc",
    "high_risk_precision": "EvaluationHighRiskPrecision",
    "high_risk_recall": "EvaluationHighRiskRecall",
}


@asset(
    group_name=TRAINING,
    kinds={"scikitlearn", "s3"},
    owners=OWNERS,
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
    s3: S3Resource,
    platform: FraudPlatform,
    quality_gates: QualityGates,
    aws: AwsClients,
):
    booster, meta = load_model_package(fraud_model.files["model.tar.gz"])
    test = test_split.table
    metrics = _evaluate(booster, meta, test)
    production = _production_model(s3_client(s3), platform)
    champion_version = production[2] if production else None
    champion = _evaluate(*production[:2], test) if production else None
    window = recent_labelled_window.table
    window_dates = recent_labelled_window.summary.get("dates", [])
    recent_challenger = _evaluate(booster, meta, window) if len(window) else None
    recent_champion = _evaluate(*production[:2], window) if production and len(window) else None
    # Fraud moves: where both classes are in the recent window, that is where a challenger must not lose.
    on_recent = recent_challenger is not None and 0 < recent_challenger["positives"] < len(window)
    if on_recent:
        comparison = compare_with_production(recent_challenger, recent_champion, quality_gates.regression_tolerance)
        basis = f"on the recent window ({', '.join(window_dates)}; {len(window)} rows)"
    else:
        comparison = compare_with_production(metrics, champion, quality_gates.regression_tolerance)
        why = "has no rows" if not len(window) else "holds one class only"
        basis = f"on the test split (the recent labelled window {why})"
    comparison.update(
        {
            "production_model_version": champion_version,
            "basis": "recent_window" if on_recent else "test_split",
            "reason": f"{comparison['reason']} {basis}",
        }
    )
    gates = model_gates(
        metrics,
        comparison,
        accuracy_floor=quality_gates.accuracy_floor,
        pr_auc_floor=quality_gates.pr_auc_floor,
        high_risk_precision_floor=quality_gates.high_risk_precision_floor,
    )
    sides = {
        "challenger_test": _side(metrics),
        "champion_test": _side(champion),
        "challenger_recent": _side(recent_challenger),
        "champion_recent": _side(recent_champion),
    }
    cm = metrics["confusion_matrix"]
    # Under the endpoint the candidate is meant for, and its own version (deployed or not).
    publish_metrics(
        aws.client("cloudwatch"),
        {_EVALUATION_METRIC_NAMES[m]: metrics[m] for m in (*HEADLINE_METRICS, "high_risk_precision", "high_risk_recall")},
        model_dimensions(platform.endpoint_name, meta["model_version"]),
    )
    context.add_output_metadata(
        output_name="result",
        metadata={
            **{m: metrics[m] for m in (*HEADLINE_METRICS, "high_risk_precision", "high_risk_recall")},
            "test_samples": metrics["test_samples"],
            "high_risk_share": metrics["high_risk_share"],
            **(_threshold_metadata(meta["thresholds"]) if meta.get("thresholds") else {}),
            "model_version": meta["model_version"],
            "production_model_version": champion_version or "none",
            "recent_window_rows": len(window),
            "recent_window_fraud": int(window[LABEL_COLUMN].sum()) if len(window) else 0,
            **{
                f"{side}_{name}": (value if value is not None else float("nan"))
                for side, values in sides.items()
                if side.endswith("recent")
                for name, value in values.items()
            },
            "champion_vs_challenger": MetadataValue.md(
                markdown_table(
                    [
                        "metric",
                        "challenger (recent window)",
                        "champion (recent window)",
                        "challenger (test split)",
                        "champion (test split)",
                    ],
                    [
                        (
                            name,
                            *(
                                _format(sides[s][name])
                                for s in ("challenger_recent", "champion_recent", "challenger_test", "champion_test")
                            ),
                        )
                        for name in _SIDE_BY_SIDE
                    ],
                )
            ),
            "confusion_matrix": MetadataValue.md(
                markdown_table(["", "predicted legit", "predicted fraud"], [("legit", cm["tn"], cm["fp"]), ("fraud", cm["fn"], cm["tp"])])
            ),
            "gates": MetadataValue.md(markdown_table(["gate", "passed", "detail"], [(g.name, g.passed, g.message) for g in gates])),
        },
    )
    summary = {
        "model_version": meta["model_version"],
        "metrics": metrics,
        "test_samples": metrics["test_samples"],
        "true_positives": cm["tp"],
        "false_positives": cm["fp"],
        "comparison": comparison,
        "recent_window": {
            "dates": window_dates,
            "rows": len(window),
            "challenger": sides["challenger_recent"],
            "champion": sides["champion_recent"],
        },
        "gates": gate_records(gates),
        "deploy_recommended": all(g.passed for g in gates),
        "thresholds": meta.get("thresholds"),
    }
    yield Output(StageResult(summary=summary))
    yield from selected_checks(context, (gate_result("evaluation_metrics", gate) for gate in gates))


def _format(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


@asset(
    group_name=TRAINING,
    kinds={"sagemaker", "s3"},
    owners=OWNERS,
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
    s3: S3Resource,
    aws: AwsClients,
    platform: FraudPlatform,
):
    names = platform.names
    client = s3_client(s3)
    booster, meta = load_model_package(fraud_model.files["model.tar.gz"])
    version = meta["model_version"]
    refusal = deployment_refusal(version, evaluation_metrics.summary)
    if refusal:
        # Before anything is copied or created: the pointer and the serving endpoint stay as they are.
        serving = (endpoint_lib.current_endpoint(client, names) or {}).get("model_version")
        raise Failure(
            description=f"{refusal}; not deployed, {names.endpoint_name} keeps serving {serving or 'nothing (no model deployed yet)'}",
            metadata={"model_version": version, "serving_model_version": serving or "none"},
            allow_retries=False,
        )
    # The model registry copy: executions/ is an audit trail, the models bucket is what endpoints run.
    source = S3Uri.parse(fraud_model.uris["model.tar.gz"])
    model_key = f"models/{version}/model.tar.gz"
    client.copy_object(
        Bucket=names.models_bucket, Key=model_key, CopySource={"Bucket": source.bucket, "Key": source.key}, ServerSideEncryption=SSE
    )
    model_uri = str(S3Uri(names.models_bucket, model_key))
    test = test_split.table
    known = test[test[LABEL_COLUMN] == 1].head(1) if (test[LABEL_COLUMN] == 1).any() else test.head(1)
    features = model_inputs(known, meta)[0]
    expected = float(predict(booster, features.reshape(1, -1), meta["feature_names"])[0])
    deployed = endpoint_lib.deploy_model(
        sagemaker=aws.client("sagemaker"),
        runtime=aws.client("sagemaker-runtime"),
        s3=client,
        names=names,
        model_uri=model_uri,
        model_version=version,
        feature_names=meta["feature_names"],
        health_check_features=features.tolist(),
        expected_score=expected,
        extra_metadata={
            "metrics": {m: evaluation_metrics.summary["metrics"][m] for m in HEADLINE_METRICS},
            "experiment_id": meta.get("experiment_id"),
            "health_check_transaction": str(known[TRANSACTION_ID].iloc[0]),
            "run_id": context.run_id,
            "thresholds": meta.get("thresholds"),
            # The endpoint serves raw probabilities (the built-in container has no calibration
            # hook); this is what the known transaction's calibrated score is client-side.
            "health_check_calibrated_score": float(calibrate([expected], meta.get("calibration"))[0]),
        },
    )
    context.add_output_metadata(
        output_name="result",
        metadata={
            "endpoint_name": deployed["endpoint_name"],
            "model_version": version,
            "model_uri": MetadataValue.path(model_uri),
            "experiment_id": deployed.get("experiment_id") or "none",
            "deployed_at": deployed["deployed_at"],
            "health_check_score": deployed["health_check"]["served_score"],
            "deployment_history": MetadataValue.md(
                markdown_table(endpoint_lib.HISTORY_COLUMNS, endpoint_lib.history_rows(endpoint_lib.deployment_history(client, names)))
            ),
        },
    )
    yield Output(StageResult(summary=deployed))
    if context.selected_asset_check_keys:
        # After the pointer moved: what a caller reaching the endpoint now gets.
        pointer = endpoint_lib.current_endpoint(client, names) or {}
        served = endpoint_lib.invoke_one(aws.client("sagemaker-runtime"), deployed["endpoint_name"], deployed["health_check"]["features"])
        yield endpoint_result(served, deployed["health_check"]["expected_score"], version, pointer.get("model_version"))
