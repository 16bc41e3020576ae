"""Training group: raw data -> splits -> model -> evaluation -> deployed endpoint."""


import datetime as dt
import time

from dagster import (
    AssetExecutionContext,
    AssetOut,
    AssetSpec,
    Config,
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
    s3_client,
)
from fraud_assets.defs.training.checks import (
    endpoint_check_specs,
    endpoint_result,
    gate_result,
    model_gate_specs,
    split_check_specs,
)
from fraud_assets.lib.aws.storage import SSE, S3Uri, StageResult, get_bytes
from fraud_assets.lib.config import (
    FEATURE_COLUMNS,
    LABEL_COLUMN,
    RAW_DATA_KEY,
    TRANSACTION_ID,
)
from fraud_assets.lib.training import endpoint as endpoint_lib
from fraud_assets.lib.training.features import (
    engineered_feature_names,
    has_customer_fields,
)
from fraud_assets.lib.training.gates import model_gates, split_gates
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


class DataPrepConfig(Config):
    seed: int = Field(default=42, description="Seed of the row-key hash that assigns splits.")
    train_ratio: float = 0.70
    validation_ratio: float = 0.15
    test_ratio: float = 0.15


@multi_asset(
    name="prepared_splits",
    group_name=TRAINING,
    deps=[raw_transactions],
    outs={
        f"{split}_split": AssetOut(
            description=f"The {split} split of the raw transactions ({ratio:.0%} by a deterministic hash of the "
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
    context: AssetExecutionContext, config: DataPrepConfig, s3: S3Resource, platform: FraudPlatform, data_prep_engine: DataPrepEngine,
    quality_gates: QualityGates,
):
    """The seeds' DataPrep stage: validate the record count and schema, split 70/15/15, write parquet."""
    raw_uri = str(S3Uri(platform.data_bucket, RAW_DATA_KEY))
    ratios = (config.train_ratio, config.validation_ratio, config.test_ratio)
    started = time.perf_counter()
    prepared = data_prep_engine.prepare_detailed(context, s3_client(s3), raw_uri, config.seed, ratios)
    splits = prepared.frames
    # The input's own record count, not the splits' sum: the counts_add_up gate compares the two.
    received = int(prepared.metadata["input_records"])
    summary = split_summary(received, splits)
    summary.update({"input": raw_uri, "seed": config.seed, "ratios": ratios, "engine": data_prep_engine.engine})
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
    context: AssetExecutionContext, train_split: StageResult, validation_split: StageResult, test_split: StageResult,
    feature_engineering: FeatureEngineering, data_prep_engine: DataPrepEngine,
) -> StageResult:
    splits = {"train": train_split.table, "validation": validation_split.table, "test": test_split.table}
    if feature_engineering.enabled:
        tables, stats = data_prep_engine.engineer_features(splits)
        names = engineered_feature_names(has_customer_fields(splits["train"]))
    else:
        stats, tables, names = None, splits, list(FEATURE_COLUMNS)
    context.add_output_metadata(
        {"enabled": feature_engineering.enabled, "engine": data_prep_engine.engine, "feature_count": len(names),
         "feature_names": MetadataValue.json(names)}
    )
    return StageResult(summary={"enabled": feature_engineering.enabled, "featureNames": names, "featureStats": stats}, tables=tables)


@asset(
    group_name=TRAINING,
    kinds={"xgboost", "s3"},
    owners=OWNERS,
    description="XGBoost binary classifier trained in-process with early stopping on the validation split; "
    "model.tar.gz holding `xgboost-model` (JSON), loadable by the SageMaker built-in XGBoost container.",
)
def fraud_model(context: AssetExecutionContext, engineered_features: StageResult, model_hyperparameters: StageResult) -> StageResult:
    hyperparameters = model_hyperparameters.summary["hyperparameters"]
    train, validation = engineered_features.tables["train"], engineered_features.tables["validation"]
    started = time.perf_counter()
    trained = train_model(train, validation, hyperparameters, feature_names=engineered_features.summary["featureNames"])
    seconds = time.perf_counter() - started
    version = f"{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}-{context.run_id[:8]}"
    experiment_id = model_hyperparameters.summary.get("experimentId")
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
    }
    return StageResult(summary=summary, files={"model.tar.gz": package_model(trained.booster, metadata)})


def _production_metrics(s3, platform: FraudPlatform, test_frame) -> tuple[dict | None, str | None]:
    """Metrics of the model the endpoint serves now, on the same test split (champion/challenger)."""
    current = endpoint_lib.current_endpoint(s3, platform.names)
    if current is None:
        return None, None
    booster, meta = load_model_package(get_bytes(s3, current["model_uri"]))
    meta.setdefault("feature_names", current.get("feature_names"))
    scores = predict(booster, model_inputs(test_frame, meta), meta["feature_names"])
    return evaluate_scores(test_frame[LABEL_COLUMN].to_numpy(), scores), current["model_version"]


@asset(
    group_name=TRAINING,
    kinds={"scikitlearn", "s3"},
    owners=OWNERS,
    description="The model scored on the test split: accuracy, precision, recall, F1, ROC-AUC, PR-AUC, confusion "
    "matrix, the high-risk bucket (score >= 0.8), and a comparison with the model in production.",
    check_specs=model_gate_specs,
)
def evaluation_metrics(
    context: AssetExecutionContext, fraud_model: StageResult, test_split: StageResult, s3: S3Resource,
    platform: FraudPlatform, quality_gates: QualityGates,
):
    booster, meta = load_model_package(fraud_model.files["model.tar.gz"])
    test = test_split.table
    metrics = evaluate_scores(test[LABEL_COLUMN].to_numpy(), predict(booster, model_inputs(test, meta), meta["feature_names"]))
    champion, champion_version = _production_metrics(s3_client(s3), platform, test)
    comparison = compare_with_production(metrics, champion, quality_gates.regression_tolerance)
    comparison["production_model_version"] = champion_version
    gates = model_gates(
        metrics, comparison, accuracy_floor=quality_gates.accuracy_floor, pr_auc_floor=quality_gates.pr_auc_floor,
        high_risk_precision_floor=quality_gates.high_risk_precision_floor,
    )
    cm = metrics["confusion_matrix"]
    context.add_output_metadata(output_name="result", metadata=
        {
            **{m: metrics[m] for m in (*HEADLINE_METRICS, "high_risk_precision", "high_risk_recall")},
            "test_samples": metrics["test_samples"],
            "model_version": meta["model_version"],
            "production_model_version": champion_version or "none",
            "confusion_matrix": MetadataValue.md(
                markdown_table(["", "predicted legit", "predicted fraud"], [("legit", cm["tn"], cm["fp"]), ("fraud", cm["fn"], cm["tp"])])
            ),
            "gates": MetadataValue.md(markdown_table(["gate", "passed", "detail"], [(g.name, g.passed, g.message) for g in gates])),
        }
    )
    summary = {
        "model_version": meta["model_version"],
        "metrics": metrics,
        "test_samples": metrics["test_samples"],
        "true_positives": cm["tp"],
        "false_positives": cm["fp"],
        "comparison": comparison,
        "deploy_recommended": all(g.passed for g in gates),
    }
    yield Output(StageResult(summary=summary))
    yield from selected_checks(context, (gate_result("evaluation_metrics", gate) for gate in gates))


@asset(
    group_name=TRAINING,
    kinds={"sagemaker", "s3"},
    owners=OWNERS,
    description="The production SageMaker endpoint serving this model. Health-checked with a known transaction "
    "before the endpoint pointer in the config bucket moves; on a failed check the previous model stays in service.",
    check_specs=endpoint_check_specs,
)
def deployed_endpoint(
    context: AssetExecutionContext, fraud_model: StageResult, evaluation_metrics: StageResult, test_split: StageResult,
    s3: S3Resource, aws: AwsClients, platform: FraudPlatform,
):
    names = platform.names
    client = s3_client(s3)
    booster, meta = load_model_package(fraud_model.files["model.tar.gz"])
    version = meta["model_version"]
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
        sagemaker=aws.client("sagemaker"), runtime=aws.client("sagemaker-runtime"), s3=client, names=names,
        model_uri=model_uri, model_version=version, feature_names=meta["feature_names"],
        health_check_features=features.tolist(), expected_score=expected,
        extra_metadata={
            "metrics": {m: evaluation_metrics.summary["metrics"][m] for m in HEADLINE_METRICS},
            "experiment_id": meta.get("experiment_id"),
            "health_check_transaction": str(known[TRANSACTION_ID].iloc[0]),
            "run_id": context.run_id,
        },
    )
    context.add_output_metadata(output_name="result", metadata=
        {
            "endpoint_name": deployed["endpoint_name"],
            "model_version": version,
            "model_uri": MetadataValue.path(model_uri),
            "experiment_id": deployed.get("experiment_id") or "none",
            "deployed_at": deployed["deployed_at"],
            "health_check_score": deployed["health_check"]["served_score"],
            "deployment_history": MetadataValue.md(markdown_table(
                endpoint_lib.HISTORY_COLUMNS, endpoint_lib.history_rows(endpoint_lib.deployment_history(client, names)))),
        }
    )
    yield Output(StageResult(summary=deployed))
    if context.selected_asset_check_keys:
        # After the pointer moved: what a caller reaching the endpoint now gets.
        pointer = endpoint_lib.current_endpoint(client, names) or {}
        served = endpoint_lib.invoke_one(aws.client("sagemaker-runtime"), deployed["endpoint_name"], deployed["health_check"]["features"])
        yield endpoint_result(served, deployed["health_check"]["expected_score"], version, pointer.get("model_version"))

