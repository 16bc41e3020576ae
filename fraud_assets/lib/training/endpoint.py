"""Deployment to a SageMaker endpoint and the endpoint pointer in the config bucket.

The pointer (`endpoint/current.json`) is what daily scoring reads. It moves only after a health
check with a known transaction succeeded on the updated endpoint; on a failed check the endpoint
is put back on its previous configuration, so the previous model stays in service. Every move of
the pointer also writes `endpoint/history/<time>-<version>.json`: the deployment history that a
rollback picks an earlier model from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.aws.storage import SSE, S3Uri, get_json, object_exists, put_json, validate_key_part
from fraud_assets.lib.config import ENDPOINT_HISTORY_PREFIX, ENDPOINT_METADATA_KEY, LABEL_COLUMN, TRANSACTION_ID, PlatformNames

VARIANT = "AllTraffic"
# What a rollback carries over from the target's history record besides what deploy_model writes.
_CARRIED_OVER = ("metrics", "experiment_id", "health_check_transaction", "run_id", "model_package_arn")


class HealthCheckError(RuntimeError):
    pass


class RollbackRefused(ValueError):
    """A rollback that cannot be done as asked (unknown version, nothing earlier to go back to):
    nothing was changed."""


def current_endpoint(s3, names: PlatformNames) -> dict | None:
    """The endpoint metadata the last successful deployment wrote, or None before the first."""
    if not object_exists(s3, names.config_bucket, ENDPOINT_METADATA_KEY):
        return None
    return get_json(s3, S3Uri(names.config_bucket, ENDPOINT_METADATA_KEY))


def csv_row(values: Sequence[float]) -> str:
    return ",".join(repr(float(np.float32(v))) for v in values)


def invoke_one(runtime, endpoint_name: str, features: Sequence[float]) -> float:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint_name, ContentType="text/csv", Accept="text/csv", Body=csv_row(features).encode()
    )
    return float(response["Body"].read().decode().strip().split(",")[0].splitlines()[0])


def _endpoint_config_name(sagemaker, endpoint_name: str) -> str | None:
    try:
        return sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
    except sagemaker.exceptions.ClientError as err:
        if "Could not find endpoint" in str(err) or err.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def _ensure_model(sagemaker, model_name: str, model_uri: str, names: PlatformNames) -> None:
    """Create the SageMaker model unless it exists already with this artifact (a rollback reuses
    the one its first deployment created; on AWS it may have been deleted since)."""
    try:
        existing = sagemaker.describe_model(ModelName=model_name)["PrimaryContainer"].get("ModelDataUrl")
    except sagemaker.exceptions.ClientError:
        existing = None
    if existing == model_uri:
        return
    if existing is not None:
        raise HealthCheckError(f"SageMaker model {model_name} exists with artifact {existing}, not {model_uri}")
    sagemaker.create_model(
        ModelName=model_name,
        PrimaryContainer={"Image": names.xgboost_image_uri, "ModelDataUrl": model_uri},
        ExecutionRoleArn=names.sagemaker_role_arn,
    )


def _ensure_endpoint_config(sagemaker, config_name: str, model_name: str, names: PlatformNames) -> None:
    try:
        sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        return
    except sagemaker.exceptions.ClientError:
        pass
    sagemaker.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {"VariantName": VARIANT, "ModelName": model_name, "InitialInstanceCount": 1, "InstanceType": names.endpoint_instance_type}
        ],
    )


def _wait_in_service(sagemaker, endpoint_name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"]
        if status == "InService":
            return
        if status == "Failed" or time.monotonic() > deadline:
            raise HealthCheckError(f"endpoint {endpoint_name} is {status}, not InService")
        time.sleep(5 if timeout_s > 60 else 0.2)


def copy_to_registry(s3, names: PlatformNames, source_uri: str, model_version: str) -> str:
    """The model registry copy of a package (`models/<version>/model.tar.gz` in the models bucket):
    executions/ is an audit trail, the models bucket is what endpoints run. Returns its URI."""
    source = S3Uri.parse(source_uri)
    key = f"models/{validate_key_part(model_version, 'model version')}/model.tar.gz"
    s3.copy_object(Bucket=names.models_bucket, Key=key, CopySource={"Bucket": source.bucket, "Key": source.key}, ServerSideEncryption=SSE)
    return str(S3Uri(names.models_bucket, key))


@dataclasses.dataclass(frozen=True)
class HealthProbe:
    """The known transaction a deployment is health-checked with and what the model gives it."""

    transaction_id: str
    features: list[float]
    expected_score: float  # the raw score: the endpoint serves raw probabilities
    calibrated_score: float  # what the client side makes of it (the built-in container has no calibration hook)


def health_check_probe(booster, meta: dict[str, Any], test: pd.DataFrame) -> HealthProbe:
    """The test split's first fraud (else its first row), its model inputs and the model's score."""
    from fraud_assets.lib.training.calibration import calibrate
    from fraud_assets.lib.training.model import model_inputs, predict

    known = test[test[LABEL_COLUMN] == 1].head(1) if (test[LABEL_COLUMN] == 1).any() else test.head(1)
    features = model_inputs(known, meta)[0]
    expected = float(predict(booster, features.reshape(1, -1), meta["feature_names"])[0])
    return HealthProbe(
        transaction_id=str(known[TRANSACTION_ID].iloc[0]),
        features=features.tolist(),
        expected_score=expected,
        calibrated_score=float(calibrate([expected], meta.get("calibration"))[0]),
    )


def deployment_record(metrics: dict[str, float], meta: dict[str, Any], probe: HealthProbe, run_id: str) -> dict[str, Any]:
    """What a deployment records beside deploy_model's own facts (deploy_model's extra_metadata):
    the evaluated headline metrics, the experiment, the health check's transaction and calibrated
    score, the run and the thresholds the model was released with."""
    from fraud_assets.lib.training.metrics import HEADLINE_METRICS

    return {
        "metrics": {m: metrics[m] for m in HEADLINE_METRICS},
        "experiment_id": meta.get("experiment_id"),
        "health_check_transaction": probe.transaction_id,
        "run_id": run_id,
        "thresholds": meta.get("thresholds"),
        # The endpoint serves raw probabilities (the built-in container has no calibration
        # hook); this is what the known transaction's calibrated score is client-side.
        "health_check_calibrated_score": probe.calibrated_score,
    }


def deploy_model(
    *,
    sagemaker,
    runtime,
    s3,
    names: PlatformNames,
    model_uri: str,
    model_version: str,
    feature_names: list[str],
    health_check_features: Sequence[float],
    expected_score: float,
    extra_metadata: dict[str, Any] | None = None,
    tolerance: float = 1e-4,
    wait_timeout_s: float = 1800,
) -> dict:
    """Create model + endpoint config, create or update the endpoint, health-check it, then move
    the pointer and append to the pointer's history."""
    version = validate_key_part(model_version, "model version")
    model_name = f"fraud-model-{version}"[:63]
    config_name = f"fraud-config-{version}"[:63]
    _ensure_model(sagemaker, model_name, model_uri, names)
    _ensure_endpoint_config(sagemaker, config_name, model_name, names)
    previous_config = _endpoint_config_name(sagemaker, names.endpoint_name)
    if previous_config is None:
        sagemaker.create_endpoint(EndpointName=names.endpoint_name, EndpointConfigName=config_name)
    else:
        sagemaker.update_endpoint(EndpointName=names.endpoint_name, EndpointConfigName=config_name)
    _wait_in_service(sagemaker, names.endpoint_name, wait_timeout_s)

    try:
        served = invoke_one(runtime, names.endpoint_name, health_check_features)
        if not math.isfinite(served) or not 0.0 <= served <= 1.0 or abs(served - expected_score) > tolerance:
            raise HealthCheckError(
                f"health check on {names.endpoint_name}: served score {served!r} for the known transaction, "
                f"expected {expected_score:.6f} (tolerance {tolerance})"
            )
    except Exception:
        if previous_config is not None:
            sagemaker.update_endpoint(EndpointName=names.endpoint_name, EndpointConfigName=previous_config)
            _wait_in_service(sagemaker, names.endpoint_name, wait_timeout_s)
        raise

    now = dt.datetime.now(dt.timezone.utc)
    deployed_at = now.isoformat(timespec="seconds")
    metadata = {
        "endpoint_name": names.endpoint_name,
        "endpoint_config_name": config_name,
        "model_name": model_name,
        "model_version": version,
        "model_uri": model_uri,
        "feature_names": feature_names,
        "deployed_at": deployed_at,
        "previous_endpoint_config_name": previous_config,
        "health_check": {"served_score": served, "expected_score": expected_score, "features": [float(v) for v in health_check_features]},
        "status": "InService",
        "action": "deploy",
        **(extra_metadata or {}),
    }
    # Microseconds in the key: a deployment and a rollback within one second stay two records, in order.
    put_json(s3, names.config_bucket, f"{ENDPOINT_HISTORY_PREFIX}/{now:%Y-%m-%dT%H%M%S.%fZ}-{version}.json", metadata)
    put_json(s3, names.config_bucket, ENDPOINT_METADATA_KEY, metadata)
    return metadata


def deployment_history(s3, names: PlatformNames) -> list[dict]:
    """Every pointer move (deployments and rollbacks), oldest first; each record carries its
    `history_key`."""
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=names.config_bucket, Prefix=f"{ENDPOINT_HISTORY_PREFIX}/"):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    return [{**get_json(s3, S3Uri(names.config_bucket, key)), "history_key": key} for key in sorted(keys)]


def rollback_target(history: list[dict], current: dict | None, version: str | None = None) -> dict:
    """The history record to go back to: `version`'s latest record, or by default the latest
    record of a version other than the one serving now (the deployment before the current one).
    Raises RollbackRefused, naming the versions there are, when there is none."""
    if current is None or not history:
        raise RollbackRefused("no deployment recorded: there is nothing to roll back")
    serving = current["model_version"]
    known = list(dict.fromkeys(r["model_version"] for r in reversed(history)))  # newest first
    if version is None:
        earlier = [r for r in history if r["model_version"] != serving]
        if not earlier:
            raise RollbackRefused(f"the deployment history holds no model version other than the current {serving}")
        return earlier[-1]
    if version == serving:
        raise RollbackRefused(f"model version {version} is already serving on {current['endpoint_name']}")
    matching = [r for r in history if r["model_version"] == version]
    if not matching:
        raise RollbackRefused(f"unknown model version {version!r}: the deployment history holds {', '.join(known)}")
    return matching[-1]


def rollback_model(*, sagemaker, runtime, s3, names: PlatformNames, version: str | None = None, wait_timeout_s: float = 1800) -> dict:
    """Point the endpoint back at an earlier model version from the deployment history (default:
    the one before the current), through deploy_model: the same health check with the target's
    own known transaction and expected score, the same revert on failure, then pointer and history
    move. Models bucket, Parameter Store and everything else stay as they are."""
    current = current_endpoint(s3, names)
    target = rollback_target(deployment_history(s3, names), current, version)
    artifact = S3Uri.parse(target["model_uri"])
    if not object_exists(s3, artifact.bucket, artifact.key):
        raise RollbackRefused(f"model version {target['model_version']}: its artifact {target['model_uri']} no longer exists")
    return deploy_model(
        sagemaker=sagemaker,
        runtime=runtime,
        s3=s3,
        names=names,
        model_uri=target["model_uri"],
        model_version=target["model_version"],
        feature_names=target["feature_names"],
        health_check_features=target["health_check"]["features"],
        expected_score=target["health_check"]["expected_score"],
        wait_timeout_s=wait_timeout_s,
        extra_metadata={
            **{k: target[k] for k in _CARRIED_OVER if k in target},
            "action": "rollback",
            "rolled_back_from": current["model_version"],
            "restored_from_history": target["history_key"],
        },
    )


def history_rows(history: list[dict]) -> list[tuple]:
    """The deployment history as table rows, newest first (what the UI shows)."""
    return [
        (
            r.get("deployed_at", ""),
            r["model_version"],
            r.get("action", "deploy"),
            r.get("rolled_back_from") or "",
            r.get("health_check", {}).get("served_score", float("nan")),
            r.get("model_uri", ""),
            r.get("model_package_arn") or "",
        )
        for r in reversed(history)
    ]


HISTORY_COLUMNS = ("deployed_at", "model_version", "action", "rolled_back_from", "health_check_score", "model_uri", "model_package_arn")
