"""A SageMaker training job for the fraud model, client side (boto3, no Dagster).

The job follows the built-in XGBoost algorithm's contract: channels `train` and `validation`
(CSV without a header, the label in the first column, `text/csv`), hyperparameters as strings,
`model.tar.gz` holding `xgboost-model` under `<output path>/<job>/output/`. On AWS the image is the
built-in XGBoost 1.7-1 image or our own image running `fraud_assets.lib.training.sagemaker_entry`
(script mode / custom container, the same entry point the local stack runs); locally the embedded
stack runs every job with that entry point (`fraud_assets_local/training_jobs.py`).

How a Dagster step uses it (fraud_model):

    settings = TrainingSettings(instance_count=2, use_spot=True, max_wait_seconds=7200,
                                checkpoint_s3_uri=f"s3://{models_bucket}/checkpoints/{name}")
    name = job_name(context.run_id)   # the same run (a retried step) finds the same job
    channels = {split: write_channel(s3, split_uri, workflow_bucket, f"{prefix}/{split}", shards, feature_names)
                for split, split_uri in (("train", train_uri), ("validation", validation_uri))}
    request = build_request(name=name, role_arn=..., channels=channels, hyperparameters=hps,
                            output_path=f"s3://{models_bucket}/training-jobs", settings=settings, region=region)
    start_or_find(sagemaker, request)
    try:
        description = wait(sagemaker, logs, name, on_log_line=lambda stream, line: context.log.info(line))
    except TrainingJobFailed:
        raise                                                          # Failed/Stopped, its reason in one line
    except BaseException:                                              # run terminated: no instance left billing
        stop_job(sagemaker, name)
        raise
    booster = load_job_booster(s3, description, feature_names)        # then calibrate, package, ...

Polling backs off (1 s doubling to 15 s, back to 1 s while log lines flow); throttling and 5xx are
botocore's retry mode's to handle (the clients come from lib/aws/clients with `standard` retries).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from fraud_assets.lib.aws.storage import InvalidKeyError, parquet_batches, upload_file, validate_bucket, validate_key_part
from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN

if TYPE_CHECKING:
    import xgboost as xgb

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
CHANNELS = ("train", "validation")
CSV_CONTENT_TYPE = "text/csv"
TERMINAL = ("Completed", "Failed", "Stopped")
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # CreateTrainingJob's own pattern
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9._=+/-]*)?$")

# The built-in XGBoost image's registry account per region (sagemaker-python-sdk's
# image_uri_config for "xgboost"); `TrainingSettings.image_uri` overrides it, e.g. with our own
# image running sagemaker_entry, or for a region not listed.
XGBOOST_IMAGE_VERSION = "1.7-1"
XGBOOST_IMAGE_ACCOUNTS: dict[str, str] = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-south-1": "720646828776",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ca-central-1": "341280168497",
    "eu-central-1": "492215442770",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}


class TrainingJobFailed(RuntimeError):
    """The job ended Failed or Stopped; the message is one line with the job's own reason."""

    def __init__(self, name: str, status: str, reason: str):
        self.name, self.status, self.reason = name, status, reason
        super().__init__(f"training job {name} {status.lower()}: {reason}")


def xgboost_image_uri(region: str, version: str = XGBOOST_IMAGE_VERSION) -> str:
    account = XGBOOST_IMAGE_ACCOUNTS.get(region)
    if account is None:
        raise ValueError(f"no built-in XGBoost image known for region {region!r}: set the training image URI")
    return f"{account}.dkr.ecr.{region}.amazonaws.com/sagemaker-xgboost:{version}"


def validate_job_name(name: str) -> str:
    if not isinstance(name, str) or not JOB_NAME.match(name):
        raise InvalidKeyError(f"invalid training job name {name!r}: 1-63 letters, digits and single or repeated hyphens, not at the ends")
    return name


def job_name(run_id: str, prefix: str = "fraud-model", attempt: int = 0) -> str:
    """`<prefix>-<run id>[-<attempt>]`: derived from the Dagster run id, so a retried step of the
    same run finds its job instead of starting a second one. A name is never reusable on AWS, even
    after the job failed: a deliberate new attempt in the same run passes `attempt`."""
    run = re.sub(r"[^A-Za-z0-9-]", "-", str(run_id)).strip("-")
    name = f"{prefix}-{run}" + (f"-{int(attempt)}" if attempt else "")
    return validate_job_name(name)


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """The training engine's knobs (FRAUD_TRAINING_<FIELD> on the Dagster side)."""

    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 3600
    use_spot: bool = False
    max_wait_seconds: int | None = None  # spot: runtime plus waiting for capacity; >= max_runtime
    checkpoint_s3_uri: str | None = None  # spot: where /opt/ml/checkpoints is synced
    image_uri: str | None = None  # None: the built-in XGBoost 1.7-1 image of the region

    def validate(self) -> "TrainingSettings":
        if not 1 <= self.instance_count <= 100:
            raise ValueError(f"instance_count must be 1..100, not {self.instance_count}")
        if not 1 <= self.max_runtime_seconds <= 28 * 86400:
            raise ValueError(f"max_runtime_seconds must be 1..{28 * 86400}, not {self.max_runtime_seconds}")
        if self.use_spot:
            if self.max_wait_seconds is None or self.max_wait_seconds < self.max_runtime_seconds:
                raise ValueError("a spot job needs max_wait_seconds >= max_runtime_seconds")
        if self.checkpoint_s3_uri is not None:
            _validate_s3_uri(self.checkpoint_s3_uri, "checkpoint S3 URI")
        return self


def _validate_s3_uri(uri: str, what: str) -> str:
    match = _S3_URI.match(uri or "")
    if not match or ".." in uri or "//" in uri[5:]:
        raise InvalidKeyError(f"invalid {what} {uri!r}")
    validate_bucket(match.group(1))
    return uri


def hyperparameters_as_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """CreateTrainingJob takes string values. Checked against the platform's allowlist first, so a
    typo fails here, before a job is started and billed."""
    from fraud_assets.lib.training.hyperparameters import format_value, validate_hyperparameters
    from fraud_assets.lib.training.model import DEFAULT_HYPERPARAMETERS, DEFAULT_NUM_ROUND

    checked = validate_hyperparameters({**DEFAULT_HYPERPARAMETERS, **values})
    checked.setdefault("num_round", DEFAULT_NUM_ROUND)  # the built-in algorithm requires it
    return {name: format_value(value) for name, value in checked.items()}


def build_request(
    *,
    name: str,
    role_arn: str,
    channels: Mapping[str, str],
    hyperparameters: Mapping[str, Any],
    output_path: str,
    settings: TrainingSettings = TrainingSettings(),
    region: str,
    content_type: str = CSV_CONTENT_TYPE,
    extra_hyperparameters: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The CreateTrainingJob request. `channels` maps a channel name to its S3 prefix URI; with
    more than one instance each channel is ShardedByS3Key (each host reads its own objects, so
    write at least instance_count objects per channel). `extra_hyperparameters` pass through
    unchecked: for our own entry point only (e.g. checkpoint_interval); the built-in image would
    refuse them."""
    settings.validate()
    validate_job_name(name)
    _validate_s3_uri(output_path, "output path")
    for channel in CHANNELS:
        if channel not in channels:
            raise ValueError(f"the {channel!r} channel is required")
    input_config = []
    for channel, uri in channels.items():
        validate_key_part(channel, "channel name")
        input_config.append(
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": _validate_s3_uri(uri, f"{channel} channel URI"),
                        "S3DataDistributionType": "ShardedByS3Key" if settings.instance_count > 1 else "FullyReplicated",
                    }
                },
                "ContentType": content_type,
                "CompressionType": "None",
                "InputMode": "File",
            }
        )
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": settings.image_uri or xgboost_image_uri(region), "TrainingInputMode": "File"},
        "RoleArn": role_arn,
        "HyperParameters": {**hyperparameters_as_strings(hyperparameters), **dict(extra_hyperparameters or {})},
        "InputDataConfig": input_config,
        "OutputDataConfig": {"S3OutputPath": output_path.rstrip("/")},
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "EnableManagedSpotTraining": settings.use_spot,
    }
    if settings.use_spot:
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = settings.max_wait_seconds
    if settings.checkpoint_s3_uri:
        request["CheckpointConfig"] = {"S3Uri": settings.checkpoint_s3_uri, "LocalPath": "/opt/ml/checkpoints"}
    if tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    return request


def _not_found(err: Exception) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code", "")
    message = str(getattr(err, "response", {}).get("Error", {}).get("Message", ""))
    return code in ("ValidationException", "ResourceNotFound") and ("not find" in message.lower() or "not found" in message.lower())


def describe(sagemaker: Any, name: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return sagemaker.describe_training_job(TrainingJobName=validate_job_name(name))
    except ClientError as err:
        if _not_found(err):
            return None
        raise


def start_or_find(sagemaker: Any, request: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the job's description, started): an existing job of that name is reused, whatever its state,
    and never a second one started; a concurrent start of the same name (ResourceInUse) is found."""
    from botocore.exceptions import ClientError

    name = validate_job_name(request["TrainingJobName"])
    found = describe(sagemaker, name)
    if found is not None:
        return found, False
    try:
        sagemaker.create_training_job(**request)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ResourceInUse":
            raise
        return sagemaker.describe_training_job(TrainingJobName=name), False
    return sagemaker.describe_training_job(TrainingJobName=name), True


class _LogTail:
    """New events of the job's CloudWatch streams (`<job>/algo-N-<epoch>`), in stream order."""

    def __init__(self, logs: Any, name: str):
        self.logs, self.name = logs, name
        self.tokens: dict[str, str | None] = {}

    def poll(self, on_line: Callable[[str, str], None]) -> int:
        from botocore.exceptions import ClientError

        try:
            streams = [
                s["logStreamName"]
                for page in self.logs.get_paginator("describe_log_streams").paginate(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.name}/"
                )
                for s in page.get("logStreams", [])
            ]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return 0  # no log group before the first job writes
            raise
        count = 0
        for stream in sorted(streams):
            while True:
                kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
                if self.tokens.get(stream):
                    kwargs["nextToken"] = self.tokens[stream]
                page = self.logs.get_log_events(**kwargs)
                for event in page.get("events", []):
                    on_line(stream, event["message"])
                    count += 1
                token = page.get("nextForwardToken")
                if not page.get("events") or token == self.tokens.get(stream):
                    self.tokens[stream] = token
                    break
                self.tokens[stream] = token
        return count


def wait(
    sagemaker: Any,
    logs: Any | None,
    name: str,
    on_log_line: Callable[[str, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    min_poll_s: float = 1.0,
    max_poll_s: float = 15.0,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the job ends, streaming its log lines to `on_log_line(stream, line)`. Returns the
    Completed job's description; raises TrainingJobFailed (Failed or Stopped, with the job's
    reason in one line). When `should_stop()` turns true (the Dagster run was terminated) the job
    is stopped with StopTrainingJob and waited for, so no instance is left billing."""

    validate_job_name(name)
    tail = _LogTail(logs, name) if logs is not None and on_log_line is not None else None
    delay = min_poll_s
    stop_sent = False
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        status = job["TrainingJobStatus"]
        lines = tail.poll(on_log_line) if tail is not None else 0  # type: ignore[arg-type]
        if status in TERMINAL:
            if tail is not None:
                tail.poll(on_log_line)  # type: ignore[arg-type] # what the last hosts wrote
            break
        if not stop_sent and should_stop is not None and should_stop():
            stop_job(sagemaker, name)  # False: it ended meanwhile, and the next describe says how
            stop_sent = True
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"training job {name} still {status} after {timeout_s:g} s")
        delay = min_poll_s if lines else min(max_poll_s, delay * 2)
        sleep(delay)
    if status == "Completed":
        return job
    raise TrainingJobFailed(name, status, failure_reason(job))


def stop_job(sagemaker: Any, name: str) -> bool:
    """StopTrainingJob; False when the job had already ended (or never started). For a step
    interrupted while in `wait` (Dagster raises DagsterExecutionInterruptedError into it on run
    termination): `except BaseException: stop_job(...); raise`."""
    from botocore.exceptions import ClientError

    try:
        sagemaker.stop_training_job(TrainingJobName=validate_job_name(name))
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "ValidationException":
            return False
        raise
    return True


def failure_reason(job: Mapping[str, Any]) -> str:
    """One line: FailureReason, else (a Stopped job has none) the last status transition's message."""
    reason = job.get("FailureReason")
    if not reason:
        transitions = job.get("SecondaryStatusTransitions") or []
        last = transitions[-1] if transitions else {}
        reason = f"{job.get('SecondaryStatus', job.get('TrainingJobStatus'))}: {last.get('StatusMessage', 'no reason given')}"
    return " ".join(str(reason).split())


def final_metrics(job: Mapping[str, Any]) -> dict[str, float]:
    """FinalMetricDataList as {name: value}, e.g. {"validation:aucpr": 0.83, "validation:auc": 0.97}."""
    return {m["MetricName"]: float(m["Value"]) for m in job.get("FinalMetricDataList") or []}


def artifact_location(job: Mapping[str, Any]) -> tuple[str, str]:
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    match = re.match(r"^s3://([^/]+)/(.+)$", uri)
    if not match:
        raise ValueError(f"model artifact is not an S3 URI: {uri!r}")
    return validate_bucket(match.group(1)), match.group(2)


def load_job_booster(s3: Any, job: Mapping[str, Any], feature_names: Sequence[str]) -> xgb.Booster:
    """The booster the job produced (model.tar.gz's `xgboost-model`), read without extracting
    anything to disk, with the feature names the CSV channels could not carry."""
    from fraud_assets.lib.training.model import load_model_package

    bucket, key = artifact_location(job)
    booster, _ = load_model_package(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    if booster.num_features() != len(feature_names):
        raise ValueError(f"the job's model has {booster.num_features()} features, expected {len(feature_names)}")
    booster.feature_names = list(feature_names)
    return booster


# --------------------------------------------------------------------------------------------
# Channel data


# A split as a channel's source: the stored parquet's s3:// URI (streamed, a batch of rows at a
# time: what fraud_model hands over) or a frame already in memory (tests, benchmarks).
ChannelSource = Union[pd.DataFrame, str]
CHANNEL_BATCH_ROWS = 16_384  # measured at 2M rows x 31 columns: ~150 MB at its peak, most of it the column readers


@contextlib.contextmanager
def channel_batches(
    s3: Any, source: ChannelSource, columns: Sequence[str], batch_rows: int = CHANNEL_BATCH_ROWS
) -> Iterator[tuple[int, Iterator[Any]]]:
    """(row count, arrow record batches of `columns` in order) of a split, whichever its source."""
    if isinstance(source, str):
        with parquet_batches(s3, source, columns, batch_rows) as found:
            yield found
        return
    missing = [c for c in columns if c not in source.columns]
    if missing:
        raise ValueError(f"channel frame lacks columns {missing}")
    import pyarrow as pa

    table = pa.Table.from_pandas(source[list(columns)], preserve_index=False)
    yield table.num_rows, iter(table.to_batches(max_chunksize=batch_rows))


def write_shard_files(rows: int, batches: Iterable[Any], n_shards: int, directory: Path) -> list[Path]:
    """The batches as `n_shards` CSV files in the built-in algorithm's format: no header, the label
    (the first column of the batches) first, then the features in model order. Rows are dealt out
    in turn (row i to shard i mod n), so every shard is a sample of the whole split, whatever order
    it is in. Values are written as float32 in their shortest exact form (arrow's CSV writer):
    training reads float32, as in-process training does, so nothing the model sees is lost. One
    batch at a time: memory holds a batch, never a shard."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, not {n_shards}")
    if rows < n_shards:
        raise ValueError(f"{rows} rows cannot make {n_shards} non-empty shards")
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    paths = [directory / f"part-{index:05d}.csv" for index in range(n_shards)]
    writers: list[Any] = []
    offset = 0
    try:
        for batch in batches:
            floats = pa.RecordBatch.from_arrays(
                [pc.cast(column, pa.float32(), safe=False) for column in batch.columns], names=batch.schema.names
            )
            if not writers:
                options = pacsv.WriteOptions(include_header=False)
                writers = [pacsv.CSVWriter(str(path), floats.schema, write_options=options) for path in paths]
            for shard, writer in enumerate(writers):
                first = (shard - offset) % n_shards  # this batch's first row that is the shard's
                part = floats if n_shards == 1 else floats.take(pa.array(np.arange(first, floats.num_rows, n_shards)))
                if part.num_rows:
                    writer.write_batch(part)
            offset += batch.num_rows
    finally:
        for writer in writers:
            writer.close()
    if offset != rows:
        raise ValueError(f"the split promised {rows} rows and delivered {offset}")
    return paths


def write_channel(
    s3: Any, source: ChannelSource, bucket: str, prefix: str, n_shards: int, feature_names: Sequence[str] = FEATURE_COLUMNS
) -> str:
    """Write the split's shards to `s3://bucket/prefix/part-NNNNN.csv` (SSE on each upload) and
    return the channel's prefix URI. Streamed: a stored split is read a batch of rows at a time,
    each shard goes to a local temporary file and is uploaded from it (multipart), so neither the
    split nor a shard is ever whole in memory. Objects already there from an earlier attempt are
    replaced or deleted, so the channel holds exactly these shards."""
    validate_bucket(bucket)
    parts = [validate_key_part(p, "channel prefix part") for p in prefix.strip("/").split("/")]
    prefix = "/".join(parts)
    keys = []
    with tempfile.TemporaryDirectory(prefix="fraud-channel-") as directory:
        with channel_batches(s3, source, [LABEL_COLUMN, *feature_names]) as (rows, batches):
            paths = write_shard_files(rows, batches, n_shards, Path(directory))
        for path in paths:
            keys.append(str(upload_file(s3, bucket, f"{prefix}/{path.name}", path, CSV_CONTENT_TYPE).key))
            path.unlink()  # the disk holds one shard less as each is uploaded
    stale = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for obj in page.get("Contents", [])
        if obj["Key"] not in keys
    ]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start : start + 1000]]})
    return f"s3://{bucket}/{prefix}/"


# --------------------------------------------------------------------------------------------
# One training, start to booster


MAX_ATTEMPTS = 10


def find_or_name_job(sagemaker: Any, run_id: str) -> tuple[str, dict[str, Any] | None]:
    """The job this run trains with: the run's job if it exists and did not fail (a retried or
    re-executed step finds it instead of starting a second one), else the next attempt's name
    (a failed or stopped job is never reused: it would fail the step again)."""
    for attempt in range(MAX_ATTEMPTS):
        name = job_name(run_id, attempt=attempt)
        job = describe(sagemaker, name)
        if job is None or job["TrainingJobStatus"] not in ("Failed", "Stopped"):
            return name, job
    raise TrainingJobFailed(job_name(run_id, attempt=MAX_ATTEMPTS - 1), "Failed", f"{MAX_ATTEMPTS} attempts of run {run_id} failed")


def train_with_job(
    *,
    sagemaker: Any,
    logs: Any,
    s3: Any,
    run_id: str,
    train: ChannelSource,
    validation: ChannelSource,
    feature_names: Sequence[str],
    hyperparameters: Mapping[str, Any],
    role_arn: str,
    region: str,
    channel_bucket: str,
    channel_prefix: str,
    output_path: str,
    settings: TrainingSettings,
    on_log_line: Callable[[str, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train as a SageMaker training job: the splits (their stored parquet's URIs, or frames)
    written as the built-in algorithm's channels (label-first CSV, one object per host at least,
    streamed), the job started (or found), followed to its
    end with its log lines, and its booster loaded back. Returns (TrainedModel, what the model
    records of the job: name, ARN, hosts, instance type, training and billable seconds, metrics).
    Interrupted (the Dagster run terminated), the job is stopped: no instance is left billing."""
    name, job = find_or_name_job(sagemaker, run_id)
    if job is None:
        channels = {
            channel: write_channel(s3, source, channel_bucket, f"{channel_prefix}/{channel}", settings.instance_count, feature_names)
            for channel, source in (("train", train), ("validation", validation))
        }
        request = build_request(
            name=name,
            role_arn=role_arn,
            channels=channels,
            hyperparameters=hyperparameters,
            output_path=output_path,
            settings=settings,
            region=region,
        )
        start_or_find(sagemaker, request)
    try:
        job = wait(sagemaker, logs, name, on_log_line, should_stop)
    except TrainingJobFailed:
        raise
    except BaseException:
        stop_job(sagemaker, name)
        raise
    from fraud_assets.lib.training.model import TrainedModel

    booster = load_job_booster(s3, job, feature_names)
    metrics = final_metrics(job)
    eval_metric = "aucpr"
    trained = TrainedModel(
        booster=booster,
        feature_names=list(feature_names),
        best_iteration=booster.num_boosted_rounds() - 1,  # the entry point delivers the model cut at its best round
        best_validation_score=metrics.get(f"validation:{eval_metric}", float("nan")),
        eval_metric=eval_metric,
        num_round=int(request_num_round(hyperparameters)),
    )
    record = {
        "engine": "sagemaker",
        "job_name": name,
        "job_arn": job.get("TrainingJobArn"),
        "instance_type": settings.instance_type,
        "instance_count": settings.instance_count,
        "spot": settings.use_spot,
        "training_time_seconds": job.get("TrainingTimeInSeconds"),
        "billable_time_seconds": job.get("BillableTimeInSeconds"),
        "final_metrics": metrics,
    }
    return trained, record


def request_num_round(hyperparameters: Mapping[str, Any]) -> int:
    from fraud_assets.lib.training.model import DEFAULT_NUM_ROUND

    return int(hyperparameters.get("num_round", DEFAULT_NUM_ROUND))
