"""SageMaker training jobs run by the local stack, through plain boto3 and lib/training/training_job.py:
the states, artifacts, metrics and logs a job has on AWS, its failures with their reasons, stop,
MaxRuntime, spot resume from a checkpoint, and 2 hosts training one model with xgboost's collective."""

from __future__ import annotations

import re
import time

import boto3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, PlatformNames
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training import training_job as tj
from fraud_assets.lib.training.model import load_model_package, predict
from fraud_assets_local.training_jobs import INTERRUPT_AFTER_FIRST_CHECKPOINT, INTERRUPTION_TAG

NAMES = PlatformNames()
ROLE = NAMES.sagemaker_role_arn
BUCKET = NAMES.workflow_bucket
OUTPUT = f"s3://{NAMES.models_bucket}/training-jobs"
REGION = "us-east-1"
FAST = {"max_depth": 4, "eta": 0.3, "num_round": 30, "early_stopping_rounds": 10}


@pytest.fixture(scope="module")
def data():
    frame = generate_transactions(60_000, seed=11)
    order = np.random.default_rng(0).permutation(len(frame))
    n = len(frame)
    train, validation, test = (frame.iloc[order[a:b]] for a, b in ((0, int(0.7 * n)), (int(0.7 * n), int(0.85 * n)), (int(0.85 * n), n)))
    return train, validation, test


def _clients():
    return boto3.client("sagemaker"), boto3.client("logs"), boto3.client("s3")


def _channels(s3, data, prefix: str, shards: int = 1) -> dict[str, str]:
    train, validation, _ = data
    return {
        "train": tj.write_channel(s3, train, BUCKET, f"{prefix}/train", shards),
        "validation": tj.write_channel(s3, validation, BUCKET, f"{prefix}/validation", shards),
    }


def _request(name: str, channels, hyperparameters=FAST, **settings) -> dict:
    return tj.build_request(
        name=name,
        role_arn=ROLE,
        channels=channels,
        hyperparameters=hyperparameters,
        output_path=OUTPUT,
        settings=tj.TrainingSettings(**settings),
        region=REGION,
    )


def _run(name, channels, hyperparameters=FAST, lines=None, **settings):
    sm, logs, _ = _clients()
    tj.start_or_find(sm, _request(name, channels, hyperparameters, **settings))
    collected = [] if lines is None else lines
    return tj.wait(
        sm, logs, name, on_log_line=lambda stream, line: collected.append((stream, line)), min_poll_s=0.2, max_poll_s=1.0, timeout_s=180
    )


def _test_pr_auc(s3, job, test) -> float:
    booster = tj.load_job_booster(s3, job, FEATURE_COLUMNS)
    return float(average_precision_score(test[LABEL_COLUMN], predict(booster, test, FEATURE_COLUMNS)))


def test_job_names_are_derived_from_the_run_and_validated():
    run_id = "3f2a1c9e-5b7d-4e21-9a0b-123456789abc"
    assert tj.job_name(run_id) == f"fraud-model-{run_id}"
    assert tj.job_name(run_id, attempt=2).endswith("-2")
    for bad in ("", "-x", "x" * 64, "a/b", "a_b", "a..b"):
        with pytest.raises(ValueError):
            tj.validate_job_name(bad)
    assert tj.xgboost_image_uri("eu-west-1") == "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    request = tj.build_request(
        name="j",
        role_arn=ROLE,
        channels={"train": "s3://b-1/t/", "validation": "s3://b-1/v/"},
        hyperparameters={"max_depth": 3},
        output_path=OUTPUT,
        region=REGION,
    )
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    with pytest.raises(ValueError, match="max_dept"):
        tj.build_request(
            name="j",
            role_arn=ROLE,
            channels={"train": "s3://b-1/t/", "validation": "s3://b-1/v/"},
            hyperparameters={"max_dept": 3},
            output_path=OUTPUT,
            region=REGION,
        )
    with pytest.raises(ValueError, match="URI"):
        tj.build_request(
            name="j",
            role_arn=ROLE,
            channels={"train": "s3://b-1/../t/", "validation": "s3://b-1/v/"},
            hyperparameters={},
            output_path=OUTPUT,
            region=REGION,
        )


def _shard_rows(paths) -> list[np.ndarray]:
    """Each shard file's rows as float32, read as the built-in container reads it (no header)."""
    return [np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2) if path.stat().st_size else np.empty((0, 0)) for path in paths]


def _interleaved(shards: list[np.ndarray], rows: int) -> np.ndarray:
    """Rows dealt out in turn (row i in shard i mod n), put back in the split's order."""
    out = np.empty((rows, shards[0].shape[1]), dtype=np.float32)
    for index, shard in enumerate(shards):
        out[index :: len(shards)] = shard
    return out


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(min_value=1, max_value=60),
    n_shards=st.integers(min_value=1, max_value=4),
    batch_rows=st.integers(min_value=1, max_value=9),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_shard_files_hold_the_split_label_first_without_a_header_whatever_the_batches(rows, n_shards, batch_rows, seed):
    """However the split arrives in batches, the shards together are the split, each row once, in
    float32, the label first, no header; row i in shard i mod n, every shard non-empty."""
    import tempfile
    from pathlib import Path

    if rows < n_shards:
        with pytest.raises(ValueError, match="non-empty shards"):
            tj.write_shard_files(rows, iter(()), n_shards, Path("."))
        return
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.normal(0, 10, rows) for name in FEATURE_COLUMNS})
    frame.insert(3, LABEL_COLUMN, rng.integers(0, 2, rows))  # a label column anywhere in the split's own order
    with (
        tempfile.TemporaryDirectory() as directory,
        tj.channel_batches(None, frame, [LABEL_COLUMN, *FEATURE_COLUMNS], batch_rows) as (n, batches),
    ):
        paths = tj.write_shard_files(n, batches, n_shards, Path(directory))
        assert [p.name for p in paths] == [f"part-{i:05d}.csv" for i in range(n_shards)]
        shards = _shard_rows(paths)
        assert [len(s) for s in shards] == [len(range(i, rows, n_shards)) for i in range(n_shards)]
        assert all(len(s) for s in shards)
        expected = frame[[LABEL_COLUMN, *FEATURE_COLUMNS]].to_numpy(dtype=np.float32)
        np.testing.assert_array_equal(_interleaved(shards, rows), expected)  # exact: shortest float32 text round-trips
        with open(paths[0]) as f:
            first = f.readline().split(",")
        assert len(first) == 1 + len(FEATURE_COLUMNS) and first[0] in ("0", "1")  # no header line, the label first


def test_a_channel_streams_a_stored_split_to_encrypted_shards_and_replaces_an_earlier_attempt(aws, data):
    """From the split's stored parquet (what fraud_model hands over) as from the frame: the same
    objects, each encrypted (uploaded multipart when large), and a channel prefix that an earlier
    attempt with more shards left behind holds exactly the new shards."""
    from fraud_assets.lib.aws.storage import put_table

    s3 = boto3.client("s3")
    train = data[0]
    stored = str(put_table(s3, BUCKET, "tj/stored/train.parquet", train))
    assert tj.write_channel(s3, train, BUCKET, "tj/stream/train", 5) == f"s3://{BUCKET}/tj/stream/train/"
    uri = tj.write_channel(s3, stored, BUCKET, "tj/stream/train", 3)
    assert uri == f"s3://{BUCKET}/tj/stream/train/"
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="tj/stream/train/")["Contents"])
    assert listed == [f"tj/stream/train/part-{i:05d}.csv" for i in range(3)]
    bodies = []
    for key in listed:
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "AES256" and head["ContentType"] == tj.CSV_CONTENT_TYPE
        bodies.append(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    shards = [np.loadtxt(body.decode().splitlines(), delimiter=",", dtype=np.float32, ndmin=2) for body in bodies]
    expected = train[[LABEL_COLUMN, *FEATURE_COLUMNS]].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(_interleaved(shards, len(train)), expected)
    # The frame gives the very same bytes.
    tj.write_channel(s3, train, BUCKET, "tj/frame/train", 3)
    assert [s3.get_object(Bucket=BUCKET, Key=k.replace("stream", "frame"))["Body"].read() for k in listed] == bodies
    # Larger than boto3's multipart threshold: uploaded in parts, still encrypted.
    big = pd.concat([train] * 4, ignore_index=True)
    tj.write_channel(s3, big, BUCKET, "tj/big/train", 1)
    head = s3.head_object(Bucket=BUCKET, Key="tj/big/train/part-00000.csv")
    assert head["ContentLength"] > 8 * 1024 * 1024 and "-" in head["ETag"] and head["ServerSideEncryption"] == "AES256"
    with pytest.raises(ValueError, match="lacks columns"):
        tj.write_channel(s3, stored, BUCKET, "tj/bad/train", 1, [*FEATURE_COLUMNS, "nope"])


def test_a_job_trains_uploads_reports_metrics_and_logs(aws, data):
    sm, logs, s3 = _clients()
    channels = _channels(s3, data, "tj/one")
    lines: list = []
    job = _run("fraud-model-one", channels, lines=lines)
    assert job["TrainingJobStatus"] == "Completed" and job["SecondaryStatus"] == "Completed"
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses[:3] == ["Starting", "Downloading", "Training"] and statuses[-2:] == ["Uploading", "Completed"]
    assert job["TrainingTimeInSeconds"] >= 1
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"{OUTPUT}/fraud-model-one/output/model.tar.gz"
    bucket, key = tj.artifact_location(job)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    booster, metadata = load_model_package(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert booster.num_boosted_rounds() >= 1
    metrics = tj.final_metrics(job)
    assert 0.5 < metrics["validation:aucpr"] <= 1 and 0.5 < metrics["validation:auc"] <= 1
    assert _test_pr_auc(s3, job, data[2]) > 0.5
    # Log lines were streamed from CloudWatch Logs, in the built-in container's metric format.
    assert any(re.match(r"^\[\d+\]#011train-auc:", line) for _, line in lines)
    assert all(stream.startswith("fraud-model-one/algo-1-") for stream, _ in lines)
    streams = logs.describe_log_streams(logGroupName=tj.LOG_GROUP, logStreamNamePrefix="fraud-model-one/")["logStreams"]
    assert len(streams) == 1
    # The same name again finds this job: no second job, no second training.
    found, started = tj.start_or_find(sm, _request("fraud-model-one", channels))
    assert not started and found["TrainingJobArn"] == job["TrainingJobArn"] and found["TrainingJobStatus"] == "Completed"
    with pytest.raises(sm.exceptions.ResourceInUse):
        sm.create_training_job(**_request("fraud-model-one", channels))


def test_bad_hyperparameter_fails_naming_it(aws, data):
    _, _, s3 = _clients()
    channels = _channels(s3, data, "tj/badhp")
    request = _request("fraud-model-badhp", channels)
    request["HyperParameters"]["max_depth"] = "deep"  # past the client's own check, as another client might
    sm, logs, _ = _clients()
    tj.start_or_find(sm, request)
    with pytest.raises(tj.TrainingJobFailed) as failed:
        tj.wait(sm, logs, "fraud-model-badhp", min_poll_s=0.2, max_poll_s=1.0, timeout_s=120)
    assert failed.value.status == "Failed"
    assert "max_depth" in failed.value.reason and "deep" in failed.value.reason
    assert "\n" not in str(failed.value)
    job = sm.describe_training_job(TrainingJobName="fraud-model-badhp")
    assert job["FailureReason"].startswith("ClientError: hyperparameter 'max_depth'")


def test_empty_channel_fails(aws, data):
    _, _, s3 = _clients()
    channels = _channels(s3, data, "tj/empty")
    channels["validation"] = f"s3://{BUCKET}/tj/nothing-here/"
    with pytest.raises(tj.TrainingJobFailed, match="channel 'validation' holds no data"):
        _run("fraud-model-empty", channels)


def test_max_runtime_stops_the_job(aws, data):
    _, _, s3 = _clients()
    channels = _channels(s3, data, "tj/slow")
    slow = {"max_depth": 8, "eta": 0.01, "num_round": 5000, "early_stopping_rounds": 1000}
    started = time.monotonic()
    with pytest.raises(tj.TrainingJobFailed, match="MaxRuntimeExceeded") as failed:
        _run("fraud-model-slow", channels, slow, max_runtime_seconds=2)
    assert failed.value.status == "Stopped"
    assert time.monotonic() - started < 60


def test_stop_training_job_stops_it(aws, data):
    sm, logs, s3 = _clients()
    channels = _channels(s3, data, "tj/stop")
    slow = {"max_depth": 8, "eta": 0.01, "num_round": 5000, "early_stopping_rounds": 1000}
    tj.start_or_find(sm, _request("fraud-model-stop", channels, slow))
    lines: list = []
    # should_stop turns true once training has printed a round (the Dagster run was terminated).
    with pytest.raises(tj.TrainingJobFailed) as failed:
        tj.wait(
            sm,
            logs,
            "fraud-model-stop",
            on_log_line=lambda s, line: lines.append(line),
            should_stop=lambda: any(line.startswith("[") for line in lines),
            min_poll_s=0.2,
            max_poll_s=0.5,
            timeout_s=120,
        )
    assert failed.value.status == "Stopped"
    job = sm.describe_training_job(TrainingJobName="fraud-model-stop")
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]][-1] == "Stopped"
    assert "Stopping" in [t["Status"] for t in job["SecondaryStatusTransitions"]]
    with pytest.raises(sm.exceptions.ClientError, match="status Stopped"):
        sm.stop_training_job(TrainingJobName="fraud-model-stop")


def test_spot_interruption_resumes_from_the_checkpoint(aws, data):
    sm, logs, s3 = _clients()
    channels = _channels(s3, data, "tj/spot")
    checkpoints = f"s3://{NAMES.models_bucket}/checkpoints/fraud-model-spot"
    request = _request(
        "fraud-model-spot",
        channels,
        # Long enough that the stack's once-a-second checkpoint sync lands mid-training on an idle
        # machine too (40 rounds could finish between two syncs, and the job then never interrupted).
        {"max_depth": 4, "eta": 0.1, "num_round": 300, "early_stopping_rounds": 300},
        use_spot=True,
        max_runtime_seconds=300,
        max_wait_seconds=600,
        checkpoint_s3_uri=checkpoints,
    )
    request["HyperParameters"]["checkpoint_interval"] = "10"  # our entry point's, not the built-in's
    request["Tags"] = [{"Key": INTERRUPTION_TAG, "Value": INTERRUPT_AFTER_FIRST_CHECKPOINT}]
    tj.start_or_find(sm, request)
    lines: list = []
    job = tj.wait(
        sm, logs, "fraud-model-spot", on_log_line=lambda s, line: lines.append((s, line)), min_poll_s=0.2, max_poll_s=1.0, timeout_s=180
    )
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert "Interrupted" in statuses and "Restarting" in statuses and statuses[-1] == "Completed"
    streams = sorted({s for s, _ in lines})
    assert len(streams) >= 2, streams  # one stream per start of the host
    first, second = ([line for s, line in lines if s == stream] for stream in streams[:2])
    resumed = [line for line in second if line.startswith("resuming from checkpoint")]
    assert resumed, second[:5]
    done = int(re.search(r"(\d+) rounds done", resumed[0]).group(1))
    rounds_after = [int(m.group(1)) for line in second if (m := re.match(r"^\[(\d+)\]#011", line))]
    # The rounds before the checkpoint were not boosted again (the last line reports the delivered,
    # best round, which may be an earlier one).
    assert done >= 11 and rounds_after[0] == done and min(rounds_after[:-1]) == done
    listed = s3.list_objects_v2(Bucket=NAMES.models_bucket, Prefix="checkpoints/fraud-model-spot/")
    assert any(o["Key"].endswith(".json") for o in listed.get("Contents", []))
    assert _test_pr_auc(s3, job, data[2]) > 0.5


def test_two_hosts_train_one_model_as_good_as_one_host(aws, data):
    _, _, s3 = _clients()
    hps = {"max_depth": 5, "eta": 0.1, "num_round": 60, "early_stopping_rounds": 20, "tree_method": "hist"}
    one = _run("fraud-model-host1", _channels(s3, data, "tj/h1", shards=1), hps)
    lines: list = []
    two = _run("fraud-model-host2", _channels(s3, data, "tj/h2", shards=4), hps, lines=lines, instance_count=2)
    assert {s.split("/")[1].rsplit("-", 1)[0] for s, _ in lines} == {"algo-1", "algo-2"}
    one_auc, two_auc = _test_pr_auc(s3, one, data[2]), _test_pr_auc(s3, two, data[2])
    assert abs(one_auc - two_auc) <= 0.01, (one_auc, two_auc)


def test_distributed_host_failure_fails_the_job(aws, data):
    _, _, s3 = _clients()
    channels = _channels(s3, data, "tj/h3", shards=1)  # one object for two hosts: algo-2 has no shard
    with pytest.raises(tj.TrainingJobFailed, match="channel 'train' holds no data"):
        _run("fraud-model-noshard", channels, instance_count=2)


def _host_pids(moto_pid: int) -> list[int]:
    """The training host processes the moto child started (children of its pid)."""
    from pathlib import Path

    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == moto_pid and b"--host-process" in cmdline:
            pids.append(int(proc.name))
    return pids


def _wait_for_hosts(moto_pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = _host_pids(moto_pid)
        if len(pids) == count:
            return pids
        time.sleep(0.1)
    raise AssertionError("the job's host processes never started")


def _gone(pids: list[int], within_s: float = 15.0) -> bool:
    from pathlib import Path

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(
            Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] for pid in pids
        ):
            return True
        time.sleep(0.1)
    return False


SLOW = {"max_depth": 8, "eta": 0.01, "num_round": 5000, "early_stopping_rounds": 1000}


def test_a_reset_kills_running_jobs(aws, data):
    sm, _, s3 = _clients()
    channels = _channels(s3, data, "tj/reset", shards=2)
    tj.start_or_find(sm, _request("fraud-model-reset", channels, SLOW, instance_count=2))
    pids = _wait_for_hosts(aws.pids["moto"], 2)
    aws.reset()
    assert _gone(pids)
    assert tj.describe(sm, "fraud-model-reset") is None


def test_stopping_the_stack_kills_running_jobs(data):
    from fraud_assets_local.stack import LocalStack

    with LocalStack() as stack:
        s3 = stack.client("s3")
        channels = _channels(s3, data, "tj/shutdown")
        stack.client("sagemaker").create_training_job(**_request("fraud-model-shutdown", channels, SLOW))
        pids = _wait_for_hosts(stack.pids["moto"], 1)
    assert _gone(pids)


class _FakeSageMaker:
    """InProgress for `rounds` describes, then what a stop or the job's end makes it."""

    def __init__(self, rounds: int, end: dict):
        self.rounds, self.end, self.stops, self.describes = rounds, end, 0, 0

    def describe_training_job(self, TrainingJobName: str) -> dict:
        self.describes += 1
        if self.stops and self.describes > 2:
            return {
                "TrainingJobStatus": "Stopped",
                "SecondaryStatus": "Stopped",
                "SecondaryStatusTransitions": [{"StatusMessage": "by request"}],
            }
        return {"TrainingJobStatus": "InProgress"} if self.describes <= self.rounds else self.end

    def stop_training_job(self, TrainingJobName: str) -> None:
        self.stops += 1


def test_wait_backs_off_and_stops_once_when_asked():
    sleeps: list[float] = []
    fake = _FakeSageMaker(6, {"TrainingJobStatus": "Completed"})
    assert tj.wait(fake, None, "j", sleep=sleeps.append, min_poll_s=1, max_poll_s=8)["TrainingJobStatus"] == "Completed"
    assert sleeps == [2, 4, 8, 8, 8, 8] and fake.stops == 0
    fake = _FakeSageMaker(100, {"TrainingJobStatus": "Completed"})
    with pytest.raises(tj.TrainingJobFailed, match="stopped: Stopped: by request"):
        tj.wait(fake, None, "j", should_stop=lambda: True, sleep=lambda s: None)
    assert fake.stops == 1
    failed = _FakeSageMaker(0, {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: out of\nmemory"})
    with pytest.raises(tj.TrainingJobFailed, match="^training job j failed: AlgorithmError: out of memory$"):
        tj.wait(failed, None, "j", sleep=lambda s: None)
