"""Quality gates on the training side, evaluated inside the step of the asset they guard
(`check_specs`). Blocking: a failing split never trains a model, and a model that fails a gate is
never deployed; the check's description in the UI says why."""

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from fraud_assets.lib.training.gates import GateResult
from fraud_assets.lib.training.splits import SPLITS

_SPLIT_CHECKS = {
    "schema": "Columns transactionId, Time, V1..V28, Amount, Class with numeric features.",
    "both_classes": "Fraud and legitimate transactions both present.",
    "ratio_within_tolerance": "The split's share of rows within tolerance of 70/15/15.",
}
_CROSS_SPLIT_CHECKS = {
    "counts_add_up": "train + validation + test rows equal the input's record count.",
    "ids_disjoint": "No transactionId appears in two splits.",
}

split_check_specs = [
    AssetCheckSpec(name, asset=f"{split}_split", description=text, blocking=True)
    for split in SPLITS
    for name, text in _SPLIT_CHECKS.items()
] + [AssetCheckSpec(name, asset="train_split", description=text, blocking=True) for name, text in _CROSS_SPLIT_CHECKS.items()]

_MODEL_GATES = {
    "accuracy_gate": "accuracy >= the floor (the original design's 0.90).",
    "pr_auc_gate": "PR-AUC on the test split >= the floor: accuracy alone says little at 0.17% fraud.",
    "high_risk_precision_gate": "Precision of the high-risk bucket (calibrated score >= the model's threshold, 0.8 by default; "
    "what becomes an alert) >= the floor.",
    "no_regression_gate": "PR-AUC not below the production model's by more than the tolerance (champion/challenger), "
    "compared on the recent labelled window when it holds both classes, else on the test split.",
}

model_gate_specs = [
    AssetCheckSpec(name, asset="evaluation_metrics", description=text, blocking=True) for name, text in _MODEL_GATES.items()
]

endpoint_check_specs = [
    AssetCheckSpec(
        "endpoint_serves_deployed_model",
        asset="deployed_endpoint",
        description="The endpoint answers the known transaction with the score the model gives it, and the pointer names the model.",
    )
]


def gate_result(asset: str, gate: GateResult) -> AssetCheckResult:
    metadata = {"detail": gate.message}
    if gate.value is not None:
        metadata["value"] = gate.value
    if gate.floor is not None:
        metadata["expected"] = gate.floor
    return AssetCheckResult(
        asset_key=asset,
        check_name=gate.name,
        passed=gate.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=gate.message,
    )


def endpoint_result(served: float, expected: float, model_version: str, pointer_version: str | None) -> AssetCheckResult:
    passed = pointer_version == model_version and abs(served - expected) <= 1e-4
    return AssetCheckResult(
        check_name="endpoint_serves_deployed_model",
        passed=passed,
        metadata={"served_score": served, "expected_score": expected, "pointer_model_version": pointer_version or "none"},
        description="endpoint serves the deployed model" if passed else "endpoint or pointer does not match the deployed model",
    )
