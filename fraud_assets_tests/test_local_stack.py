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

from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import PlatformNames
from fraud_assets_local.bootstrap import bootstrap
from fraud_assets_local.stack import LocalStack

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


def _current_s3_manifest(state) -> bytes:
    try:
        return (state / "generations" / (state / "CURRENT").read_text().strip() / "s3.json").read_bytes()
    except FileNotFoundError:  # between a new generation and the removal of the old one
        return b""


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
        table.put_item(
            Item={
                "transactionId": f"t{i}",
                "timestamp": "2024-01-01T00:00:00Z",
                "batchDate": "2024-01-01",
                "fraudScore": Decimal(str(score)),
            }
        )
    table.put_item(Item={"transactionId": "other", "timestamp": "x", "batchDate": "2024-01-02", "fraudScore": Decimal("0.99")})
    res = table.query(
        IndexName=NAMES.scores_gsi,
        KeyConditionExpression="batchDate = :d AND fraudScore > :s",
        ExpressionAttributeValues={":d": "2024-01-01", ":s": Decimal("0.4")},
    )
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


# SIGINT and SIGHUP take SIGTERM's handler. SIGKILL stands for a crashed owner: no cleanup runs,
# and the servers must notice their parent is gone and exit by themselves.
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_cli_stops_cleanly_on_signal(sig: signal.Signals) -> None:
    code = "import sys; from fraud_assets_local.stack import run_local_stack_cli; sys.exit(run_local_stack_cli(None, 0, 0))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        exports = {}
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("export "):
                var, _, value = line[len("export ") :].strip().partition("=")
                exports[var] = value
            elif line.startswith("#"):
                assert "stop" in line
                break
        assert exports.keys() >= {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "AWS_DEFAULT_REGION"}
        s3 = boto3.client(
            "s3",
            endpoint_url=exports["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert NAMES.data_bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
        kids = _children(proc.pid)
        assert len(kids) == 2
        proc.send_signal(sig)
        expected = -signal.SIGKILL if sig == signal.SIGKILL else 0
        assert proc.wait(timeout=30) == expected, proc.stderr.read()  # type: ignore[union-attr]
        deadline = time.monotonic() + 5
        while not all(_gone(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(k) for k in kids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_state_survives_a_restart(tmp_path) -> None:
    state = tmp_path / "state"
    odd_key = "../../escape/é x?#.txt"
    with LocalStack(state_dir=state, snapshot_interval=0) as stack:
        pids = stack.pids
        s3 = stack.client("s3")
        put_bytes(s3, NAMES.data_bucket, "raw/a.csv", b"x,y\n1,2\n", "text/csv")
        s3.put_object(Bucket=NAMES.config_bucket, Key=odd_key, Body=b"odd", Metadata={"owner": "me"}, ServerSideEncryption="AES256")
        ddb = stack.client("dynamodb")
        item = {
            "transactionId": {"S": "t1"},
            "timestamp": {"S": "2024-01-01T00:00:00Z"},
            "batchDate": {"S": "2024-01-01"},
            "fraudScore": {"N": "0.93"},
            "raw": {"B": b"\x00\xff"},
            "tags": {"SS": ["a", "b"]},
            "detail": {"M": {"n": {"L": [{"N": "1"}, {"NULL": True}]}}},
        }
        ddb.put_item(TableName=NAMES.scores_table, Item=item)
        ssm = stack.client("ssm")
        ssm.put_parameter(Name="/fraud-detection/hyperparameters/max_depth", Value="5", Type="String")
        ssm.put_parameter(Name="/fraud-detection/hyperparameters/max_depth", Value="6", Type="String", Overwrite=True)
        sm = stack.client("sagemaker")
        for tag in ("a", "b"):
            sm.create_model(
                ModelName=f"m-{tag}",
                ExecutionRoleArn=NAMES.sagemaker_role_arn,
                PrimaryContainer={"Image": NAMES.xgboost_image_uri, "ModelDataUrl": f"s3://{NAMES.models_bucket}/{tag}/model.tar.gz"},
            )
            sm.create_endpoint_config(
                EndpointConfigName=f"c-{tag}",
                ProductionVariants=[
                    {"VariantName": "AllTraffic", "ModelName": f"m-{tag}", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
                ],
            )
        sm.create_endpoint(EndpointName=NAMES.endpoint_name, EndpointConfigName="c-a")
        sm.update_endpoint(EndpointName=NAMES.endpoint_name, EndpointConfigName="c-b")
        queue_url = stack.client("sqs").create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = stack.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns = stack.client("sns")
        alerts_arn = sns.create_topic(Name=NAMES.alerts_topic)["TopicArn"]
        sns.subscribe(TopicArn=alerts_arn, Protocol="sqs", Endpoint=queue_arn)

        first = stack._store.snapshot(stack.client)  # type: ignore[union-attr]
        object_files = {p: p.stat().st_mtime_ns for p in (state / "objects").iterdir()}
        assert len(object_files) == 2
        assert stack._store.snapshot(stack.client) == first  # type: ignore[union-attr]  # nothing changed
        put_bytes(s3, NAMES.data_bucket, "raw/b.csv", b"new")
        stack.snapshot()
        # Unchanged objects are not written again; nothing lands outside state/objects.
        assert all(p.stat().st_mtime_ns == m for p, m in object_files.items())
        assert len(list((state / "objects").iterdir())) == 3
        assert not (tmp_path / "escape").exists()
    # stop() (by the with block) leaves no process behind, and is idempotent.
    assert all(_gone(p) for p in pids.values())
    stack.stop()

    # A crash in the middle of a snapshot leaves debris like this; the last snapshot still counts.
    (state / "generations" / ".tmp-g00000000000000000001-1").mkdir()
    (state / "objects" / ("0" * 64)).write_bytes(b"orphan")

    with LocalStack(state_dir=state, snapshot_interval=0.5) as stack:
        s3 = stack.client("s3")
        assert s3.get_object(Bucket=NAMES.data_bucket, Key="raw/a.csv")["Body"].read() == b"x,y\n1,2\n"
        got = s3.get_object(Bucket=NAMES.config_bucket, Key=odd_key)
        assert got["Body"].read() == b"odd" and got["Metadata"] == {"owner": "me"}
        assert got["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket=NAMES.data_bucket, Key="raw/b.csv")["ContentType"] == "application/octet-stream"
        restored = stack.client("dynamodb").get_item(
            TableName=NAMES.scores_table, Key={"transactionId": {"S": "t1"}, "timestamp": {"S": "2024-01-01T00:00:00Z"}}
        )["Item"]
        assert restored == item
        history = stack.client("ssm").get_parameter_history(Name="/fraud-detection/hyperparameters/max_depth")["Parameters"]
        assert [(p["Version"], p["Value"]) for p in history] == [(1, "5"), (2, "6")]
        sm = stack.client("sagemaker")
        assert sm.describe_endpoint(EndpointName=NAMES.endpoint_name)["EndpointConfigName"] == "c-b"
        model = sm.describe_model(ModelName="m-b")
        assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{NAMES.models_bucket}/b/model.tar.gz"
        subs = stack.client("sns").list_subscriptions_by_topic(TopicArn=alerts_arn)["Subscriptions"]
        assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("sqs", queue_arn)]
        # The background thread snapshots by itself.
        put_bytes(s3, NAMES.data_bucket, "raw/c.csv", b"periodic")
        deadline = time.monotonic() + 20
        while b"raw/c.csv" not in _current_s3_manifest(state) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"raw/c.csv" in _current_s3_manifest(state)
    assert not (state / "objects" / ("0" * 64)).exists()
    assert [p.name for p in (state / "generations").iterdir()] == [(state / "CURRENT").read_text().strip()]


def test_a_failed_start_says_why_and_leaves_nothing() -> None:
    import socket

    from fraud_assets_local.processes import LocalStackError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = LocalStack(moto_port=taken.getsockname()[1])
        started: list[int] = []
        original = stack._start_processes

        def recording_start() -> None:
            try:
                original()
            finally:
                started.extend(stack.pids.values())

        stack._start_processes = recording_start  # type: ignore[method-assign]
        with pytest.raises(LocalStackError, match="(?s)moto exited.*in use"):
            stack.start()
    assert len(started) == 2 and all(_gone(p) for p in started)
    assert not stack.running


# --------------------------------------------------------------------------------------------
# DynamoDB items: snapshotted and restored through the moto process's internal route


def _score_items(date: str, n: int, prefix: str = "t") -> list[dict]:
    return [
        {
            "transactionId": f"{prefix}{date}-{i:05d}",
            "timestamp": "2024-01-01 00:00:00",
            "fraudScore": Decimal(repr((i % 997) / 997)),
            "riskLevel": "LOW" if i % 3 else "HIGH",
            "modelVersion": "v1",
            "endpointName": "fraud-ep",
            "scoringTimestamp": "2024-01-02 00:00:00",
            "batchDate": date,
        }
        for i in range(n)
    ]


def test_many_scores_survive_a_restart(tmp_path) -> None:
    from fraud_assets.lib.inference.score_store import (
        count_items_for_date,
        write_scores,
    )

    state = tmp_path / "state"
    dates = {"2024-02-01": 12_000, "2024-02-02": 9_000}
    with LocalStack(state_dir=state, snapshot_interval=0) as stack:
        ddb = stack.client("dynamodb")
        for date, n in dates.items():
            write_scores(ddb, NAMES.scores_table, _score_items(date, n))
        started = time.monotonic()
        first = stack._store.snapshot(stack.client)  # type: ignore[union-attr]
        assert time.monotonic() - started < 20  # Scan took ~30 s for this many on a busy box
        items_file = first / "dynamodb-0.jsonl"
        assert sum(1 for _ in items_file.open("rb")) == sum(dates.values())
        keys = [
            {"transactionId": {"S": f"t{d}-{i:05d}"}, "timestamp": {"S": "2024-01-01 00:00:00"}}
            for d in dates
            for i in (0, 1, 4_321, 8_999)
        ]
        before = [ddb.get_item(TableName=NAMES.scores_table, Key=k)["Item"] for k in keys]
        # A change elsewhere: a new generation, which shares the unchanged items file.
        inode = items_file.stat().st_ino
        stack.client("sns").create_topic(Name="another-topic")
        second = stack._store.snapshot(stack.client)  # type: ignore[union-attr]
        assert second != first and (second / "dynamodb-0.jsonl").stat().st_ino == inode
    with LocalStack(state_dir=state, snapshot_interval=0) as stack:
        ddb = stack.client("dynamodb")
        for date, n in dates.items():
            assert count_items_for_date(ddb, NAMES.scores_table, NAMES.scores_gsi, date) == n
        assert [ddb.get_item(TableName=NAMES.scores_table, Key=k)["Item"] for k in keys] == before
        assert ddb.describe_table(TableName=NAMES.scores_table)["Table"]["ItemCount"] == sum(dates.values())
        # Byte for byte what was saved: the next snapshot finds nothing new to write.
        assert stack._store.snapshot(stack.client) == second  # type: ignore[union-attr]


def test_a_snapshot_during_batch_writes_succeeds(tmp_path) -> None:
    import threading

    from fraud_assets.lib.inference.score_store import (
        count_items_for_date,
        write_scores,
    )

    with LocalStack(state_dir=tmp_path / "state", snapshot_interval=0) as stack:
        ddb = stack.client("dynamodb")
        write_scores(ddb, NAMES.scores_table, _score_items("2024-03-01", 3_000))
        done = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for day in range(2, 8):  # new hash keys: the table's dict grows while it is exported
                    write_scores(ddb, NAMES.scores_table, _score_items(f"2024-03-0{day}", 1_500), max_workers=2)
            except BaseException as err:
                errors.append(err)
            finally:
                done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        snapshots = 0
        while not done.is_set() or snapshots == 0:
            stack.snapshot()
            snapshots += 1
        thread.join()
        assert not errors
        final = stack._store.snapshot(stack.client)  # type: ignore[union-attr]
        assert sum(1 for _ in (final / "dynamodb-0.jsonl").open("rb")) == 3_000 + 6 * 1_500
        assert count_items_for_date(ddb, NAMES.scores_table, NAMES.scores_gsi, "2024-03-07") == 1_500


def test_item_export_matches_scan(aws: LocalStack) -> None:
    """The route reads moto's internals: on this moto it must give exactly what Scan gives."""
    import base64
    import json
    import urllib.request

    ddb = aws.client("dynamodb")
    for i in range(60):
        item = {
            "transactionId": {"S": f"x{i}"},
            "timestamp": {"S": str(i)},
            "batchDate": {"S": "2024-01-01"},
            "fraudScore": {"N": f"0.{i}"},
            "raw": {"B": bytes([i, 255])},
            "flags": {"BOOL": i % 2 == 0},
            "nested": {"M": {"l": {"L": [{"N": str(i)}, {"NULL": True}, {"SS": ["a", "b"]}]}}},
        }
        ddb.put_item(TableName=NAMES.scores_table, Item=item)
    ddb.update_item(
        TableName=NAMES.scores_table,
        Key={"transactionId": {"S": "x1"}, "timestamp": {"S": "1"}},
        UpdateExpression="SET extra = :e",
        ExpressionAttributeValues={":e": {"NS": ["1", "2"]}},
    )
    url = f"{aws.moto_url}/_fraud_assets/dynamodb/{aws.region}/{NAMES.scores_table}/items"
    with urllib.request.urlopen(url) as resp:
        exported = [json.loads(line) for line in resp.read().splitlines()]
    scanned = ddb.scan(TableName=NAMES.scores_table)["Items"]
    # botocore decodes B values; the export keeps them base64, as DynamoDB-JSON on the wire.
    scanned = json.loads(json.dumps(scanned, default=lambda b: base64.b64encode(b).decode()))

    def key(item: dict) -> str:
        return item["transactionId"]["S"]

    assert len(exported) == 60
    assert sorted(exported, key=key) == sorted(scanned, key=key)


def test_the_item_route_fails_loudly_if_moto_internals_change(monkeypatch) -> None:
    import io
    import json

    from fraud_assets_local import moto_server as stack_module

    class Table:  # what a table would look like if moto stored its items elsewhere
        range_key_attr = "timestamp"

    for broken in (
        Table(),
        type("T", (), {"items": {"h": ["not a dict"]}, "range_key_attr": "r"})(),
        type("T", (), {"items": {"h": {"r": object()}}, "range_key_attr": "r"})(),
    ):
        monkeypatch.setattr(stack_module, "_moto_table", lambda region, name, broken=broken: broken)
        app = stack_module._InternalRoutes(lambda environ, start_response: [])
        for method in ("GET", "POST"):
            answers: list[str] = []
            line = b'{"transactionId":{"S":"t"},"timestamp":{"S":"x"}}\n'
            body = b"".join(
                app(
                    {
                        "PATH_INFO": f"/_fraud_assets/dynamodb/us-east-1/{NAMES.scores_table}/items",
                        "REQUEST_METHOD": method,
                        "CONTENT_LENGTH": str(len(line)),
                        "wsgi.input": io.BytesIO(line),
                    },
                    lambda status, headers: answers.append(status),
                )
            )
            assert answers == ["500 Internal Server Error"], (method, body)
            assert json.loads(body)["__type"] == "MotoInternalsChanged" and "moto" in json.loads(body)["message"]


def _wait(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_killed_child_is_restarted_on_its_port_and_a_restarted_stack_reuses_its_ports(tmp_path) -> None:
    state = tmp_path / "state"
    with LocalStack(state_dir=state, snapshot_interval=0) as stack:
        urls = (stack.moto_url, stack.model_url)
        model_pid = stack.pids["model-server"]
        os.kill(model_pid, signal.SIGKILL)
        assert _wait(lambda: stack.pids.get("model-server") not in (None, model_pid) and stack._model.alive())
        assert stack.restarts["model-server"] == 1
        assert stack.client("sagemaker-runtime").meta.endpoint_url == stack.model_url == urls[1]
        import urllib.request

        with urllib.request.urlopen(f"{stack.model_url}/ping", timeout=30) as response:
            assert response.status == 200
        put_bytes(stack.client("s3"), NAMES.data_bucket, "kept.txt", b"x")
        stack.snapshot()
        moto_pid = stack.pids["moto"]
        os.kill(moto_pid, signal.SIGKILL)  # loses nothing the snapshot holds
        assert _wait(
            lambda: (
                stack.pids.get("moto") not in (None, moto_pid)
                and stack._moto.alive()
                and stack.restarts["moto"] == 1
                and stack.restored_snapshot_time is not None
            )
        )
        assert stack.moto_url == urls[0]
        assert stack.client("s3").get_object(Bucket=NAMES.data_bucket, Key="kept.txt")["Body"].read() == b"x"
    with LocalStack(state_dir=state, snapshot_interval=0) as again:
        assert (again.moto_url, again.model_url) == urls  # free again, so the shells' exports still hold


def test_the_state_dir_never_deletes_what_the_stack_did_not_write(tmp_path) -> None:
    from fraud_assets_local.state import StateError

    folder = tmp_path / "mine"
    (folder / "objects").mkdir(parents=True)
    (folder / "objects" / "important.txt").write_text("keep me")
    with pytest.raises(StateError, match=r"is not empty and was not written by the local stack .*important.txt|objects"):
        LocalStack(state_dir=folder, snapshot_interval=0).start()
    assert (folder / "objects" / "important.txt").read_text() == "keep me"
    assert not (folder / ".fraud-assets-state").exists()
    # An empty (or new) folder becomes the stack's; a file dropped into it later is still never deleted.
    state = tmp_path / "state"
    with LocalStack(state_dir=state, snapshot_interval=0) as stack:
        (state / "objects" / "notes.txt").write_text("mine")
        put_bytes(stack.client("s3"), NAMES.data_bucket, "a.txt", b"a")
        stack.snapshot()
    assert (state / ".fraud-assets-state").is_file() and (state / "objects" / "notes.txt").read_text() == "mine"
