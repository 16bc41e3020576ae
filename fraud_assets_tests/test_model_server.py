"""The SageMaker-Runtime-compatible model server, driven through boto3 over real HTTP."""

from __future__ import annotations

import io
import json
import tarfile

import boto3
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError

from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import FEATURE_COLUMNS, PlatformNames
from fraud_assets.lib.training.model import container_model_json
from fraud_assets_local.processes import LocalStackError
from fraud_assets_local.stack import LocalStack

NAMES = PlatformNames()
ENDPOINT = "fraud-test-endpoint"


def _train(seed: int) -> xgb.Booster:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(300, len(FEATURE_COLUMNS))).astype(np.float32), columns=list(FEATURE_COLUMNS))
    y = (X["V1"] + (0.5 if seed else -0.5) * X["V2"] + rng.normal(scale=0.5, size=300) > 0.8).astype(int)
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=y), 10)


def _archive(booster: xgb.Booster, model: bytes | None = None) -> bytes:
    # The form the training pipeline writes (package_model): what the container's XGBoost 1.7 reads.
    raw = container_model_json(booster) if model is None else model
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("xgboost-model")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture(scope="module")
def boosters() -> list[xgb.Booster]:
    return [_train(0), _train(1)]


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(7).normal(size=(50, len(FEATURE_COLUMNS))).astype(np.float32)


def _deploy(booster: xgb.Booster, tag: str, model: bytes | None = None) -> str:
    """Upload the artifact and create model + endpoint config; returns the config name."""
    key = f"models/{tag}/model.tar.gz"
    put_bytes(boto3.client("s3"), NAMES.models_bucket, key, _archive(booster, model), "application/gzip")
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName=f"fraud-model-{tag}",
        ExecutionRoleArn=NAMES.sagemaker_role_arn,
        PrimaryContainer={"Image": NAMES.xgboost_image_uri, "ModelDataUrl": f"s3://{NAMES.models_bucket}/{key}"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"fraud-config-{tag}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"fraud-model-{tag}",
                "InitialInstanceCount": 1,
                "InstanceType": NAMES.endpoint_instance_type,
            }
        ],
    )
    return f"fraud-config-{tag}"


@pytest.fixture
def endpoint(aws: LocalStack, boosters: list[xgb.Booster]) -> str:
    config = _deploy(boosters[0], "a")
    sm = boto3.client("sagemaker")
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config)
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"
    return ENDPOINT


def _csv(rows: np.ndarray) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()


def _invoke(body: bytes, content_type: str = "text/csv", accept: str = "text/csv", endpoint: str = ENDPOINT) -> dict:
    return boto3.client("sagemaker-runtime").invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=content_type, Accept=accept)


def _scores(body: bytes) -> np.ndarray:
    return np.array([float(line) for line in body.decode().splitlines()])


def test_csv_in_csv_out_matches_inplace_predict(endpoint: str, boosters: list[xgb.Booster], rows: np.ndarray) -> None:
    res = _invoke(_csv(rows), content_type="text/csv; charset=utf-8")
    assert res["ContentType"] == "text/csv"
    assert res["InvokedProductionVariant"] == "AllTraffic"
    got = _scores(res["Body"].read())
    np.testing.assert_allclose(got, boosters[0].inplace_predict(rows), atol=1e-6, rtol=0)


def test_json_out(endpoint: str, boosters: list[xgb.Booster], rows: np.ndarray) -> None:
    res = _invoke(_csv(rows[:5]), accept="application/json")
    assert res["ContentType"] == "application/json"
    doc = json.loads(res["Body"].read())
    assert list(doc) == ["predictions"] and all(list(p) == ["score"] for p in doc["predictions"])
    got = [p["score"] for p in doc["predictions"]]
    np.testing.assert_allclose(got, boosters[0].inplace_predict(rows[:5]), atol=1e-6, rtol=0)


def _error(body: bytes, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as info:
        _invoke(body, **kwargs)
    return info.value


def test_contract_errors(endpoint: str, rows: np.ndarray) -> None:
    err = _error(b"\x00\x01", content_type="application/x-recordio-protobuf")
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 415
    assert err.response["Error"]["Code"] == "ModelError" and "text/csv" in err.response["Error"]["Message"]

    err = _error(b"0," * (3 * 1024 * 1024) + b"0\n")  # 6 MiB + 2 bytes
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6 MiB" in err.response["Error"]["Message"]

    short = _csv(rows[:3]) + ",".join(["1"] * 29).encode() + b"\n"
    err = _error(short)
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "row 4" in err.response["Error"]["Message"] and "expected 30" in err.response["Error"]["Message"]

    err = _error(b",".join([b"Time", *[b"1"] * 29]) + b"\n")
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "row 1, column 1" in err.response["Error"]["Message"]

    err = _error(_csv(rows[:1]), endpoint="no-such-endpoint")
    assert err.response["Error"]["Code"] == "ValidationError"
    assert "no-such-endpoint" in err.response["Error"]["Message"]


def test_update_endpoint_changes_served_model(endpoint: str, boosters: list[xgb.Booster], rows: np.ndarray) -> None:
    before = _scores(_invoke(_csv(rows))["Body"].read())
    config_b = _deploy(boosters[1], "b")
    sm = boto3.client("sagemaker")
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config_b)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1})
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == config_b
    after = _scores(_invoke(_csv(rows))["Body"].read())
    np.testing.assert_allclose(after, boosters[1].inplace_predict(rows), atol=1e-6, rtol=0)
    assert np.abs(after - before).max() > 1e-3


def test_the_endpoint_scores_with_the_containers_xgboost(aws: LocalStack, boosters: list[xgb.Booster], rows: np.ndarray) -> None:
    """As on AWS, the endpoint reads the artifact with the container's XGBoost 1.7 (the stack runs the
    server in .venv-container), not with the 3.x that trained it: the artifact as 3.x writes it
    (base_score a vector) scores differently there, the one package_model writes the same."""
    import urllib.request

    with urllib.request.urlopen(f"{aws.model_url}/_local/info", timeout=30) as answer:
        served = json.loads(answer.read())
    assert served["xgboost"] == "1.7.6" and served["numpy"].startswith("1."), served
    assert ".venv-container" in served["executable"]
    sm = boto3.client("sagemaker")
    for tag, model in (("raw", bytes(boosters[0].save_raw("json"))), ("container", None)):
        sm.create_endpoint(EndpointName=f"e-{tag}", EndpointConfigName=_deploy(boosters[0], tag, model))
    ours = boosters[0].inplace_predict(rows)
    as_written = _scores(_invoke(_csv(rows), endpoint="e-raw")["Body"].read())
    assert np.abs(as_written - ours).max() > 1e-3  # what the container would have served unconverted
    np.testing.assert_allclose(_scores(_invoke(_csv(rows), endpoint="e-container")["Body"].read()), ours, atol=1e-6, rtol=0)


def test_a_missing_container_environment_is_one_line_naming_it_and_the_make_target(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FRAUD_CONTAINER_VENV", str(tmp_path / "absent"))
    stack = LocalStack()
    with pytest.raises(LocalStackError) as info:
        stack.start()
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "absent") in message and "make install" in message
    assert not stack.running and stack.pids == {}


def test_archive_without_an_xgboost_json_model_is_refused() -> None:
    from fraud_assets_local.model_server import InvocationError, load_model_archive

    def tar_with(name: str, data: bytes) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    with pytest.raises(InvocationError, match="pickles are refused"):
        load_model_archive(tar_with("xgboost-model", b"\x80\x04\x95 a pickle"))
    with pytest.raises(InvocationError, match="no 'xgboost-model'"):
        load_model_archive(tar_with("model.json", b"{}"))


def test_missing_artifact_is_a_model_error_not_retried(aws: LocalStack) -> None:
    sm = boto3.client("sagemaker")
    sm.create_model(
        ModelName="m-missing",
        ExecutionRoleArn=NAMES.sagemaker_role_arn,
        PrimaryContainer={"Image": NAMES.xgboost_image_uri, "ModelDataUrl": f"s3://{NAMES.models_bucket}/nothing/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName="c-missing",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "m-missing", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName="e-missing", EndpointConfigName="c-missing")
    err = _error(b"1\n", endpoint="e-missing")
    assert err.response["Error"]["Code"] == "ModelError"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert "nothing/model.tar.gz" in err.response["Error"]["Message"]
