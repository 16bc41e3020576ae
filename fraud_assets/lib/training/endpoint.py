"""Deployment to a SageMaker endpoint and the endpoint pointer in the config bucket.

The pointer (`endpoint/current.json`) is what daily scoring reads. It moves only after a health
check with a known transaction succeeded on the updated endpoint; on a failed check the endpoint
is put back on its previous configuration, so the previous model stays in service.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any, Sequence

import numpy as np

from fraud_assets.lib.config import ENDPOINT_HISTORY_PREFIX, ENDPOINT_METADATA_KEY, PlatformNames
from fraud_assets.lib.aws.storage import S3Uri, get_json, object_exists, put_json, validate_key_part

VARIANT = "AllTraffic"


class HealthCheckError(RuntimeError):
    pass


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


def _wait_in_service(sagemaker, endpoint_name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointStatus"]
        if status == "InService":
            return
        if status == "Failed" or time.monotonic() > deadline:
            raise HealthCheckError(f"endpoint {endpoint_name} is {status}, not InService")
        time.sleep(5 if timeout_s > 60 else 0.2)


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
    sagemaker.create_model(
        ModelName=model_name,
        PrimaryContainer={"Image": names.xgboost_image_uri, "ModelDataUrl": model_uri},
        ExecutionRoleArn=names.sagemaker_role_arn,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {"VariantName": VARIANT, "ModelName": model_name, "InitialInstanceCount": 1, "InstanceType": names.endpoint_instance_type}
        ],
    )
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

    deployed_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
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
        **(extra_metadata or {}),
    }
    stamp = deployed_at.replace(":", "").replace("+0000", "Z")
    put_json(s3, names.config_bucket, f"{ENDPOINT_HISTORY_PREFIX}/{stamp}-{version}.json", metadata)
    put_json(s3, names.config_bucket, ENDPOINT_METADATA_KEY, metadata)
    return metadata

