"""The Model Registry against the local stack's SageMaker: one package per model version, Approved
only when every gate passed, re-evaluation updates instead of adding."""

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.training.registry import (
    APPROVED,
    MODEL_PACKAGE_GROUP,
    REJECTED,
    find_model,
    list_models,
    model_package_properties,
    register_model,
)

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


def gates(**passed: bool) -> list[dict]:
    return [{"name": name, "passed": ok, "message": "detail"} for name, ok in passed.items()]


def register(sm, version: str, **passed: bool):
    return register_model(
        sm,
        model_version=version,
        model_data_url=f"s3://fraud-detection-models/models/{version}/model.tar.gz",
        image_uri=IMAGE,
        gates=gates(**passed),
        metrics={"pr_auc": 0.81, "accuracy": 0.999, "roc_auc": None},
        provenance={"run_id": "run-1", "training_rows": 1000},
    )


@pytest.fixture
def sagemaker(aws):
    sm = boto3.client("sagemaker")
    groups = sm.list_model_package_groups(NameContains=MODEL_PACKAGE_GROUP)["ModelPackageGroupSummaryList"]
    if not groups:
        sm.create_model_package_group(ModelPackageGroupName=MODEL_PACKAGE_GROUP)
    return sm


def test_a_model_is_approved_only_when_every_gate_passed_and_registered_once(sagemaker):
    good = register(sagemaker, "v1", accuracy_gate=True, pr_auc_gate=True)
    bad = register(sagemaker, "v2", accuracy_gate=True, pr_auc_gate=False)
    assert (good.approval_status, bad.approval_status) == (APPROVED, REJECTED)
    assert bad.failed_gates == ["pr_auc_gate"] and bad.metrics == {"pr_auc": 0.81, "accuracy": 0.999}
    assert good.model_data_url.endswith("/models/v1/model.tar.gz") and good.properties["run_id"] == "run-1"
    # Evaluated again (a new champion made the old verdict stale): the same package, updated.
    again = register(sagemaker, "v1", accuracy_gate=True, pr_auc_gate=False)
    assert again.arn == good.arn and again.approval_status == REJECTED
    assert [m.model_version for m in list_models(sagemaker)] == ["v1", "v2"]
    assert find_model(sagemaker, "v3") is None


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), st.booleans(), min_size=1, max_size=8))
def test_package_properties_keep_every_verdict(verdicts):
    properties = model_package_properties("v1", gates(**verdicts), {}, {})
    assert {k[5:]: v == "passed" for k, v in properties.items() if k.startswith("gate_")} == verdicts
    assert all(isinstance(v, str) and len(v) <= 256 for v in properties.values())


def test_metadata_beyond_the_registry_limits_is_refused():
    with pytest.raises(ValueError, match="limits"):
        model_package_properties("v1", gates(a=True), {}, {"dataset": "s3://x/" + "y" * 300})
