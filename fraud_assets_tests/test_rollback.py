"""Rollback of a deployment in one step, against the local stack: `fraud-assets rollback-model`
puts the previous model back behind the endpoint (invocations return its scores), an unknown
version is refused and changes nothing, and the rollback_model job goes forward again with the
deployment history in its metadata."""

import json
import os
import subprocess
import sys

import boto3
import numpy as np
import pytest
from dagster import DagsterInstance

from fraud_assets.definitions import location_defs
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import FEATURE_COLUMNS, PlatformNames
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training.endpoint import (
    RollbackRefused,
    current_endpoint,
    deploy_model,
    deployment_history,
    rollback_target,
)
from fraud_assets.lib.training.model import package_model, train_model
from fraud_assets.lib.training.registry import register_model

NAMES = PlatformNames()


def deploy(version: str, booster, health_check: np.ndarray) -> dict:
    s3 = boto3.client("s3")
    uri = put_bytes(
        s3,
        NAMES.models_bucket,
        f"models/{version}/model.tar.gz",
        package_model(booster, {"model_version": version, "feature_names": list(FEATURE_COLUMNS)}),
    )
    return deploy_model(
        sagemaker=boto3.client("sagemaker"),
        runtime=boto3.client("sagemaker-runtime"),
        s3=s3,
        names=NAMES,
        model_uri=str(uri),
        model_version=version,
        feature_names=list(FEATURE_COLUMNS),
        health_check_features=health_check.tolist(),
        expected_score=float(booster.inplace_predict(health_check.reshape(1, -1))[0]),
        wait_timeout_s=30,
    )


def served(rows: np.ndarray) -> np.ndarray:
    runtime = boto3.client("sagemaker-runtime")
    body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()
    answer = runtime.invoke_endpoint(EndpointName=NAMES.endpoint_name, ContentType="text/csv", Accept="text/csv", Body=body)
    return np.array(answer["Body"].read().decode().replace(",", "\n").split(), dtype=float)


def cli(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fraud_assets.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        cwd=tmp_path,
    )


def test_rollback_model_serves_the_previous_model_and_refuses_unknown_versions(aws, tmp_path):
    data = generate_transactions(n_rows=20_000, seed=5)
    train, valid = data.iloc[:15_000], data.iloc[15_000:]
    first = train_model(train, valid, {"max_depth": 2, "num_round": 10})
    second = train_model(train, valid, {"max_depth": 6, "eta": 0.3, "num_round": 30})
    rows = valid[list(FEATURE_COLUMNS)].to_numpy(np.float32)[:50]
    expected_first, expected_second = first.predict(rows), second.predict(rows)
    assert np.abs(expected_first - expected_second).max() > 1e-3  # two models that tell apart
    deploy("v1", first.booster, rows[0])
    deploy("v2", second.booster, rows[0])
    np.testing.assert_allclose(served(rows), expected_second, atol=1e-6)

    rolled = cli("rollback-model", tmp_path=tmp_path)
    assert rolled.returncode == 0, rolled.stderr[-2000:]
    assert json.loads(rolled.stdout[rolled.stdout.index("{") :])["model_version"] == "v1"
    np.testing.assert_allclose(served(rows), expected_first, atol=1e-6)
    pointer = current_endpoint(boto3.client("s3"), NAMES)
    assert (pointer["model_version"], pointer["action"], pointer["rolled_back_from"]) == ("v1", "rollback", "v2")

    refused = cli("rollback-model", "v9", tmp_path=tmp_path)
    assert refused.returncode == 2
    assert "unknown model version 'v9'" in refused.stderr and "v2" in refused.stderr
    assert current_endpoint(boto3.client("s3"), NAMES)["model_version"] == "v1"
    assert len(deployment_history(boto3.client("s3"), NAMES)) == 3

    # What the registry holds, beside what served: a rejected version never served, nothing to restore.
    sagemaker = boto3.client("sagemaker")
    for version, passed in (("v1", True), ("v2", True), ("v3", False)):
        register_model(
            sagemaker,
            model_version=version,
            model_data_url=f"s3://{NAMES.models_bucket}/models/{version}/model.tar.gz",
            image_uri=NAMES.xgboost_image_uri,
            gates=[{"name": "pr_auc_gate", "passed": passed, "message": "PR-AUC"}],
            metrics={},
            provenance={},
        )
    listed = cli("rollback-model", "--list", tmp_path=tmp_path)
    assert listed.returncode == 0, listed.stderr[-2000:]
    registry = {line.split("\t")[0]: line.split("\t")[1:5] for line in listed.stdout.splitlines() if line.startswith("v")}
    assert registry == {
        "v3": ["Rejected", "pr_auc_gate", "False", "False"],
        "v2": ["Approved", "-", "True", "False"],
        "v1": ["Approved", "-", "True", "True"],
    }

    # The UI's job, forward again to v2, with the history as a table in its metadata.
    result = (
        location_defs()
        .resolve_job_def("rollback_model")
        .execute_in_process(instance=DagsterInstance.ephemeral(), run_config={"ops": {"rollback_endpoint": {"config": {"version": "v2"}}}})
    )
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert metadata["model_version"].value == "v2" and metadata["rolled_back_from"].value == "v1"
    assert "| v3 | Rejected | pr_auc_gate | False | False |" in metadata["registered_versions"].value
    table = metadata["deployment_history"].value
    assert [line.split("|")[2].strip() for line in table.splitlines()[2:]] == ["v2", "v1", "v2", "v1"]
    np.testing.assert_allclose(served(rows), expected_second, atol=1e-6)


def record(version: str) -> dict:
    return {"model_version": version, "endpoint_name": NAMES.endpoint_name, "history_key": f"k-{version}"}


@pytest.mark.parametrize(
    ("history", "current", "asked", "expected"),
    [
        (["a", "b"], "b", None, "a"),
        (["a", "b", "a"], "a", None, "b"),  # after a rollback, the default goes forward again
        (["a", "b", "c"], "c", "a", "a"),
        (["a", "b", "b"], "b", None, "a"),  # a redeploy of the same version is not "the one before"
    ],
)
def test_rollback_target(history, current, asked, expected):
    assert rollback_target([record(v) for v in history], record(current), asked)["model_version"] == expected


@pytest.mark.parametrize(
    ("history", "asked", "message"),
    [
        ([], None, "nothing to roll back"),
        (["a"], None, "no model version other"),
        (["a", "b"], "b", "already serving"),
        (["a", "b"], "zz", "unknown model version 'zz'"),
    ],
)
def test_rollback_refusals_say_why(history, asked, message):
    current = record(history[-1]) if history else None
    with pytest.raises(RollbackRefused, match=message):
        rollback_target([record(v) for v in history], current, asked)
