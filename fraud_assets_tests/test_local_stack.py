"""The embedded local AWS stack, exercised over real HTTP with plain boto3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import boto3
import pytest

from fraud_assets.lib.config import PlatformNames
from fraud_assets.lib.storage import put_bytes
from fraud_assets.local.stack import LocalStack, bootstrap

NAMES = PlatformNames()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _children(pid: int) -> list[int]:
    # Linux: direct children of every thread of pid.
    kids: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(p) for p in f.read().split()]
    return kids


def test_env_points_plain_boto3_at_the_stack(aws: LocalStack) -> None:
    env = aws.env()
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"].startswith("http://127.0.0.1:")
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert all(os.environ[k] == v for k, v in env.items())
    assert "AWS_PROFILE" not in os.environ

    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, "raw/x.csv", b"a,b\n1,2\n", "text/csv")
    got = s3.get_object(Bucket=NAMES.data_bucket, Key="raw/x.csv")
    assert got["Body"].read() == b"a,b\n1,2\n"
    assert got["ServerSideEncryption"] == "AES256"

    table = boto3.resource("dynamodb").Table(NAMES.scores_table)
    for i, score in enumerate([0.9, 0.1, 0.5]):
        table.put_item(Item={"transactionId": f"t{i}", "timestamp": "2024-01-01T00:00:00Z",
                             "batchDate": "2024-01-01", "fraudScore": Decimal(str(score))})
    table.put_item(Item={"transactionId": "other", "timestamp": "x", "batchDate": "2024-01-02",
                         "fraudScore": Decimal("0.99")})
    res = table.query(IndexName=NAMES.scores_gsi,
                      KeyConditionExpression="batchDate = :d AND fraudScore > :s",
                      ExpressionAttributeValues={":d": "2024-01-01", ":s": Decimal("0.4")})
    assert sorted(i["transactionId"] for i in res["Items"]) == ["t0", "t2"]

    topics = {t["TopicArn"].rsplit(":", 1)[1] for t in boto3.client("sns").list_topics()["Topics"]}
    assert set(NAMES.topics) <= topics


def test_bootstrap_is_idempotent_and_keeps_data(aws: LocalStack) -> None:
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.models_bucket, "keep.txt", b"kept")
    bootstrap(NAMES)
    bootstrap(NAMES)
    assert s3.get_object(Bucket=NAMES.models_bucket, Key="keep.txt")["Body"].read() == b"kept"
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert buckets == set(NAMES.buckets)
    desc = boto3.client("dynamodb").describe_table(TableName=NAMES.scores_table)["Table"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (gsi,) = desc["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == NAMES.scores_gsi and gsi["Projection"]["ProjectionType"] == "ALL"
    assert len(boto3.client("sns").list_topics()["Topics"]) == 3


def test_reset_wipes_state(aws: LocalStack) -> None:
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, "gone.txt", b"x")
    aws.reset()
    assert s3.list_objects_v2(Bucket=NAMES.data_bucket).get("KeyCount") == 0


def test_start_stop_leaves_no_process() -> None:
    stack = LocalStack()
    with stack:
        pids = stack.pids
        assert set(pids) == {"moto", "model-server"}
        assert not any(_gone(p) for p in pids.values())
    assert all(_gone(p) for p in pids.values())
    stack.stop()  # idempotent


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_stops_cleanly_on_signal(sig: signal.Signals) -> None:
    code = "import sys; from fraud_assets.local.stack import run_local_stack_cli; sys.exit(run_local_stack_cli(None, 0, 0))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        exports = {}
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("export "):
                var, _, value = line[len("export "):].strip().partition("=")
                exports[var] = value
            elif line.startswith("#"):
                assert "stop" in line
                break
        assert exports.keys() >= {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_DEFAULT_REGION"}
        s3 = boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        assert NAMES.data_bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
        kids = _children(proc.pid)
        assert len(kids) == 2
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()  # type: ignore[union-attr]
        deadline = time.monotonic() + 5
        while not all(_gone(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(k) for k in kids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
