"""Quality gates on the training side. Blocking: a failing split never trains a model, and a model
that fails a gate is never deployed; the check's description in the UI says why."""


from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetIn, AssetKey, asset_check, multi_asset_check

from dagster_aws.s3 import S3Resource

from fraud_assets.defs.resources import AwsClients, FraudPlatform, QualityGates, s3_client
from fraud_assets.lib import endpoint as endpoint_lib
from fraud_assets.lib.gates import GateResult, model_gates, split_gates
from fraud_assets.lib.splits import SPLITS
from fraud_assets.lib.storage import StageResult

_SPLIT_CHECKS = {
    "schema": "Columns transactionId, Time, V1..V28, Amount, Class with numeric features.",
    "both_classes": "Fraud and legitimate transactions both present.",
    "ratio_within_tolerance": "The split's share of rows within tolerance of 70/15/15.",
}
_CROSS_SPLIT_CHECKS = {
    "counts_add_up": "train + validation + test rows equal the input's record count.",
    "ids_disjoint": "No transactionId appears in two splits.",
}


def _result(asset: str, gate: GateResult) -> AssetCheckResult:
    metadata = {"detail": gate.message}
    if gate.value is not None:
        metadata["value"] = gate.value
    if gate.floor is not None:
        metadata["expected"] = gate.floor
    return AssetCheckResult(
        asset_key=asset, check_name=gate.name, passed=gate.passed, severity=AssetCheckSeverity.ERROR,
        metadata=metadata, description=gate.message,
    )


@multi_asset_check(
    specs=[
        AssetCheckSpec(name, asset=f"{split}_split", description=text, blocking=True)
        for split in SPLITS
        for name, text in _SPLIT_CHECKS.items()
    ]
    + [AssetCheckSpec(name, asset="train_split", description=text, blocking=True) for name, text in _CROSS_SPLIT_CHECKS.items()],
    ins={f"{split}_split": AssetIn(f"{split}_split") for split in SPLITS},
)
def split_quality_checks(quality_gates: QualityGates, train_split: StageResult, validation_split: StageResult, test_split: StageResult):
    loaded = {"train": train_split, "validation": validation_split, "test": test_split}
    record_count = int(train_split.summary["recordCount"])
    verdicts = split_gates({n: s.table for n, s in loaded.items()}, record_count, quality_gates.split_ratio_tolerance)
    for split, gates in verdicts.items():
        for gate in gates:
            yield _result(f"{split}_split", gate)


_MODEL_GATES = {
    "accuracy_gate": "accuracy >= the floor (the seeds' 0.90).",
    "pr_auc_gate": "PR-AUC on the test split >= the floor: accuracy alone says little at 0.17% fraud.",
    "high_risk_precision_gate": "Precision of the score >= 0.8 bucket (what becomes an alert) >= the floor.",
    "no_regression_gate": "PR-AUC not below the production model's by more than the tolerance (champion/challenger).",
}


@multi_asset_check(
    specs=[AssetCheckSpec(name, asset="evaluation_metrics", description=text, blocking=True) for name, text in _MODEL_GATES.items()],
    ins={"evaluation_metrics": AssetIn("evaluation_metrics")},
)
def model_quality_gates(quality_gates: QualityGates, evaluation_metrics: StageResult):
    summary = evaluation_metrics.summary
    for gate in model_gates(
        summary["metrics"], summary["comparison"], accuracy_floor=quality_gates.accuracy_floor,
        pr_auc_floor=quality_gates.pr_auc_floor, high_risk_precision_floor=quality_gates.high_risk_precision_floor,
    ):
        yield _result("evaluation_metrics", gate)


@asset_check(asset=AssetKey("deployed_endpoint"), description="The endpoint answers the known transaction with the score the model gives it.")
def endpoint_serves_deployed_model(
    deployed_endpoint: StageResult, s3: S3Resource, aws: AwsClients, platform: FraudPlatform
) -> AssetCheckResult:
    summary = deployed_endpoint.summary
    current = endpoint_lib.current_endpoint(s3_client(s3), platform.names) or {}
    served = endpoint_lib.invoke_one(aws.client("sagemaker-runtime"), summary["endpoint_name"], summary["health_check"]["features"])
    expected = summary["health_check"]["expected_score"]
    pointer_ok = current.get("model_version") == summary["model_version"]
    passed = pointer_ok and abs(served - expected) <= 1e-4
    return AssetCheckResult(
        passed=passed,
        metadata={"served_score": served, "expected_score": expected, "pointer_model_version": current.get("model_version", "none")},
        description="endpoint serves the deployed model" if passed else "endpoint or pointer does not match the deployed model",
    )

