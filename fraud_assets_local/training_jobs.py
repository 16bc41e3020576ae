"""SageMaker training jobs that the local stack runs for real.

moto records a training job and reports it Completed at once, with no artifact. Installed into the
moto child (`local/moto_server.py`), this module makes CreateTrainingJob start a job that runs the
way SageMaker runs one, so the platform's client code (`lib/training/training_job.py`) meets the
same states, artifacts and logs as on AWS:

- Staging (SecondaryStatus Downloading): per host `algo-1..N` a SageMaker directory tree under a
  private temp dir: `input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`,
  `input/data/<channel>/` (the channel's S3 objects; with `ShardedByS3Key` host i gets every Nth
  object of the key-sorted list, as SageMaker gives each instance ~1/N of the objects), `model/`,
  `output/` (`failure`, `data/`), `checkpoints/` (the CheckpointConfig S3 prefix, downloaded).
- Training: one process per host, running the training entry point
  (`fraud_assets.lib.training.sagemaker_entry`, whatever TrainingImage says: the local stack has no
  containers) with the `SM_*` environment, in its own process group, with default signal
  dispositions, no AWS credentials, and a parent-death signal so a killed moto takes its jobs
  along. Host 0 runs xgboost's tracker on 127.0.0.1. Each host's output lines go to CloudWatch Logs
  `/aws/sagemaker/TrainingJobs`, stream `<job>/algo-N-<epoch>`, tabs shown as `#011` as on AWS.
- Limits: `MaxRuntimeInSeconds` (training time) stops the job: Stopped, SecondaryStatus
  MaxRuntimeExceeded, as AWS does; a spot job's `MaxWaitTimeInSeconds` (wall time, waiting
  included) likewise (MaxWaitTimeExceeded). StopTrainingJob: SIGTERM to every host's group, SIGKILL
  after a grace period; Stopping, then Stopped. Either way whatever host 0 left in `model/` is
  uploaded, as SageMaker does after a stop.
- Spot: new checkpoint files are copied to the CheckpointConfig S3 prefix while the job runs. The
  local stack cannot be outbid, so an interruption is simulated on request: a job tagged
  `fraud-assets:local:spot-interruption` = `after-first-checkpoint` (an ordinary tag, ignored by
  AWS) has its hosts killed once the first checkpoint reached S3; the job goes Interrupted ->
  Restarting -> Downloading, fresh host directories get the data and the checkpoints again, and
  the entry point resumes from the newest one.
- Done (Uploading): `model/` as `model.tar.gz` at `<S3OutputPath>/<job>/output/model.tar.gz`
  (`output/data/` as `output.tar.gz` beside it when not empty), SSE on every put (KMS when
  OutputDataConfig names a key); Completed with ModelArtifacts, FinalMetricDataList (the last
  value of each `train-*`/`validation-*` metric line of host 0, as the built-in algorithm's
  MetricDefinitions capture them), TrainingTimeInSeconds, BillableTimeInSeconds. A host that exits
  non-zero fails the job (the others are killed, as a collective cannot go on without it):
  FailureReason is that host's `output/failure` (one line), else its exit code and last line.

S3 and CloudWatch Logs are reached through boto3 against this same moto server (its public API:
SSE, versioning and the like behave as for any client). Job state lives on moto's own
FakeTrainingJob object, so DescribeTrainingJob and ListTrainingJobs see it as it changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ENTRY_MODULE = "fraud_assets.lib.training.sagemaker_entry"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
INTERRUPTION_TAG = "fraud-assets:local:spot-interruption"
INTERRUPT_AFTER_FIRST_CHECKPOINT = "after-first-checkpoint"
STOP_GRACE_S = 5.0  # SageMaker gives 120 s between SIGTERM and SIGKILL; a local job needs less
POLL_S = 0.1
LOG_FLUSH_S = 0.5
DEFAULT_MAX_RUNTIME_S = 86_400

JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # CreateTrainingJob's pattern
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")
S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?$")
# The built-in XGBoost algorithm's metric regexes (its MetricDefinitions), for both the raw tab
# and CloudWatch's #011.
METRIC_LINE = re.compile(r"^\[(\d+)\](?:\t|#011)(.*)$")
METRIC = re.compile(r"^(train|validation)-([a-z@0-9]+):([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


class JobSetupError(Exception):
    """The job cannot run as requested (SageMaker would fail it with a ClientError)."""


def _now() -> dt.datetime:
    from moto.core.utils import utcnow

    return utcnow()


def _split_s3_uri(uri: str) -> tuple[str, str]:
    match = S3_URI.match(uri or "")
    if not match:
        raise JobSetupError(f"not an S3 URI: {uri!r}")
    return match.group(1), match.group(2) or ""


def _safe_relative(key: str, prefix: str) -> Path:
    """An object's path under its channel directory: the key relative to the channel prefix, each
    part checked so no key can write outside the directory."""
    relative = key[len(prefix) :].lstrip("/") if key.startswith(prefix) else key.rsplit("/", 1)[-1]
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") or "\x00" in p for p in parts):
        raise JobSetupError(f"S3 key {key!r} cannot be a file name")
    return Path(*parts)


# --------------------------------------------------------------------------------------------
# The registry of running jobs (one per moto process)


class LocalTrainingJobs:
    def __init__(self, endpoint_url: Callable[[], str]):
        self._endpoint_url = endpoint_url
        self._runners: dict[tuple[str, str, str], _JobRunner] = {}
        self._lock = threading.Lock()

    def start(self, job: Any, account_id: str, region: str) -> None:
        runner = _JobRunner(job, region, self._endpoint_url())
        with self._lock:
            self._runners[(account_id, region, job.training_job_name)] = runner
        runner.start()

    def stop(self, account_id: str, region: str, name: str) -> bool:
        with self._lock:
            runner = self._runners.get((account_id, region, name))
        if runner is None or not runner.is_alive():
            return False
        runner.request_stop()
        return True

    def stop_all(self, wait_s: float = STOP_GRACE_S + 5) -> None:
        """Stack shutdown or reset: every host process killed, every runner finished."""
        with self._lock:
            runners = list(self._runners.values())
            self._runners.clear()
        for runner in runners:
            runner.request_stop(shutdown=True)
        deadline = time.monotonic() + wait_s
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))
            runner.kill_hosts()  # should it still be in its grace period


# --------------------------------------------------------------------------------------------
# One job


class _Host:
    def __init__(self, name: str, index: int, root: Path):
        self.name, self.index, self.root = name, index, root
        self.popen: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.last_line = ""
        self.metrics: dict[str, float] = {}


class _JobRunner(threading.Thread):
    def __init__(self, job: Any, region: str, endpoint_url: str):
        super().__init__(name=f"training-job-{job.training_job_name}", daemon=True)
        self.job = job
        self.region = region
        self.endpoint_url = endpoint_url
        self._stop_requested = threading.Event()
        self._shutdown = False
        self._hosts: list[_Host] = []
        self._hosts_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._pending_logs: dict[str, list[dict[str, Any]]] = {}
        self._clients: dict[str, Any] = {}
        self._workdir: Path | None = None
        self._synced: dict[str, float] = {}
        self._first_failed: list[_Host] = []

    # -- control --------------------------------------------------------------------------------

    def request_stop(self, shutdown: bool = False) -> None:
        self._shutdown = self._shutdown or shutdown
        if not shutdown:
            self._status("Stopping", "Stopping", "Stopping the training job")
        self._stop_requested.set()

    def kill_hosts(self, grace_s: float = 0.0) -> None:
        with self._hosts_lock:
            hosts = list(self._hosts)
        for host in hosts:
            if host.popen is not None and host.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(host.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for host in hosts:
            popen = host.popen
            if popen is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(max(0.0, deadline - time.monotonic()))
            if popen.returncode is None:  # not reaped yet: its group id is still ours
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait()
            if host.reader is not None:
                host.reader.join(2)

    # -- state on moto's object -----------------------------------------------------------------

    def _status(self, status: str | None, secondary: str, message: str) -> None:
        with self._status_lock:  # StopTrainingJob's thread and the runner both record transitions
            self._record_status(status, secondary, message)

    def _record_status(self, status: str | None, secondary: str, message: str) -> None:
        now = _now()
        job = self.job
        transitions = [dict(t) for t in (getattr(job, "secondary_status_transitions", None) or [])]
        if transitions and transitions[-1].get("EndTime") is None:
            transitions[-1]["EndTime"] = now
        transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
        if secondary in ("Completed", "Failed", "Stopped", "MaxRuntimeExceeded", "MaxWaitTimeExceeded"):
            transitions[-1]["EndTime"] = now
        job.secondary_status_transitions = transitions  # one assignment: readers never see half a list
        job.secondary_status = secondary
        if status is not None:
            job.training_job_status = status
        job.last_modified_time = now

    def _finish(self, status: str, secondary: str, message: str, failure: str | None = None, started: float | None = None) -> None:
        job = self.job
        if failure:
            job.failure_reason = " ".join(failure.split())[:1024]
        if started is not None:
            seconds = max(1, int(round(time.monotonic() - started)))
            job.training_time_in_seconds = seconds
            job.billable_time_in_seconds = seconds
        job.training_end_time = _now()
        self._status(status, secondary, message)

    # -- AWS clients against this moto server ---------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[service] = boto3.session.Session().client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                config=Config(retries={"mode": "standard", "total_max_attempts": 5}),
            )
        return self._clients[service]

    # -- the job --------------------------------------------------------------------------------

    def run(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix=f"fraud-assets-training-{self.job.training_job_name}-"))
        try:
            self._run()
        except JobSetupError as err:
            self._finish("Failed", "Failed", "Training job failed", failure=f"ClientError: {err}")
        except Exception as err:  # noqa: BLE001 - a job must end in a state, never hang InProgress
            self._finish("Failed", "Failed", "Training job failed", failure=f"InternalServerError: {type(err).__name__}: {err}")
        finally:
            self.kill_hosts()
            with contextlib.suppress(Exception):
                self._flush_logs()
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _run(self) -> None:
        job = self.job
        resource = job.resource_config or {}
        count = int(resource.get("InstanceCount") or 1)
        if not 1 <= count <= 16:
            raise JobSetupError(f"InstanceCount {count} is outside 1..16 (the local stack runs one process per instance)")
        stopping = job.stopping_condition or {}
        max_runtime = float(stopping.get("MaxRuntimeInSeconds") or DEFAULT_MAX_RUNTIME_S)
        spot = bool(job.enable_managed_spot_training)
        max_wait = float(stopping.get("MaxWaitTimeInSeconds") or 0) if spot else 0.0
        if spot and max_wait < max_runtime:
            raise JobSetupError("MaxWaitTimeInSeconds must be at least MaxRuntimeInSeconds for a managed spot job")
        checkpoint_uri = (job.checkpoint_config or {}).get("S3Uri")
        if checkpoint_uri:
            _split_s3_uri(checkpoint_uri)
        interrupt = (
            spot and {t.get("Key"): t.get("Value") for t in (job.tags or [])}.get(INTERRUPTION_TAG) == INTERRUPT_AFTER_FIRST_CHECKPOINT
        )
        if interrupt and not checkpoint_uri:
            raise JobSetupError(f"tag {INTERRUPTION_TAG} needs a CheckpointConfig to resume from")
        wall_start = time.monotonic()
        job.training_job_status = "InProgress"
        job.training_start_time = None
        job.training_end_time = None
        job.final_metric_data_list = []
        job.secondary_status_transitions = []
        self._status("InProgress", "Starting", "Preparing the instances for training")
        training_started: float | None = None
        training_seconds = 0.0
        attempt = 0
        while True:
            attempt += 1
            self._status(None, "Downloading", "Downloading input data")
            hosts = self._stage(count, attempt, checkpoint_uri)
            if self._stop_requested.is_set():
                return self._stopped(None, training_started)
            self._status(None, "Training", "Training image download completed. Training in progress.")
            if training_started is None:
                training_started = time.monotonic()
                job.training_start_time = _now()
            attempt_start = time.monotonic()
            self._launch(hosts)
            outcome = self._watch(hosts, checkpoint_uri, max_runtime - training_seconds, wall_start, max_wait, interrupt and attempt == 1)
            training_seconds += time.monotonic() - attempt_start
            if checkpoint_uri:
                self._sync_checkpoints(hosts[0], checkpoint_uri)
            if outcome == "interrupted":
                self._status(None, "Interrupted", "The spot instance was interrupted (simulated by the local stack)")
                self.kill_hosts()
                self._status(None, "Restarting", "Restarting the training job on new spot capacity")
                continue
            break
        if outcome == "completed":
            self._upload(hosts[0])
            metrics = [{"MetricName": name, "Value": value, "Timestamp": _now()} for name, value in sorted(hosts[0].metrics.items())]
            job.final_metric_data_list = metrics
            job.model_artifacts = {"S3ModelArtifacts": self._artifact_uri()}
            self._finish("Completed", "Completed", "Training job completed", started=training_started)
        elif outcome == "failed":
            self._finish("Failed", "Failed", "Training job failed", failure=self._failure_reason(hosts), started=training_started)
        elif outcome == "max-runtime":
            self._upload(hosts[0], only_if_model=True)
            self._finish(
                "Stopped", "MaxRuntimeExceeded", f"Training job exceeded MaxRuntimeInSeconds ({max_runtime:g} s)", started=training_started
            )
        elif outcome == "max-wait":
            self._upload(hosts[0], only_if_model=True)
            self._finish(
                "Stopped", "MaxWaitTimeExceeded", f"Training job exceeded MaxWaitTimeInSeconds ({max_wait:g} s)", started=training_started
            )
        else:
            self._stopped(hosts[0], training_started)

    def _stopped(self, host0: _Host | None, training_started: float | None) -> None:
        if self._shutdown:
            self._finish("Stopped", "Stopped", "The local stack shut down", started=training_started)
            return
        if host0 is not None:
            self._upload(host0, only_if_model=True)
        self._finish("Stopped", "Stopped", "Training job stopped by StopTrainingJob", started=training_started)

    # -- staging --------------------------------------------------------------------------------

    def _stage(self, count: int, attempt: int, checkpoint_uri: str | None) -> list[_Host]:
        job = self.job
        assert self._workdir is not None
        names = [f"algo-{i + 1}" for i in range(count)]
        channels = job.input_data_config or []
        data_config: dict[str, dict[str, Any]] = {}
        listed: dict[str, tuple[str, list[str], str]] = {}
        s3 = self._client("s3")
        for channel in channels:
            name = channel.get("ChannelName", "")
            if not CHANNEL_NAME.match(name):
                raise JobSetupError(f"invalid channel name {name!r}")
            if name in data_config:
                raise JobSetupError(f"channel {name!r} given twice")
            source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise JobSetupError(
                    f"channel {name!r}: S3DataType {source.get('S3DataType')!r} is not supported by the local stack (S3Prefix)"
                )
            if (channel.get("InputMode") or job.algorithm_specification.get("TrainingInputMode") or "File") != "File":
                raise JobSetupError(f"channel {name!r}: only File input mode is supported by the local stack")
            bucket, prefix = _split_s3_uri(source.get("S3Uri", ""))
            keys = sorted(
                obj["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for obj in page.get("Contents", [])
                if not obj["Key"].endswith("/")
            )
            distribution = source.get("S3DataDistributionType", "FullyReplicated")
            listed[name] = (bucket, keys, prefix)
            data_config[name] = {
                "ContentType": channel.get("ContentType", "text/csv"),
                "TrainingInputMode": "File",
                "S3DistributionType": distribution,
                "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            }
        hosts = []
        for index, host_name in enumerate(names):
            root = self._workdir / f"attempt-{attempt}" / host_name
            for sub in ("input/config", "model", "output/data", "checkpoints"):
                (root / sub).mkdir(parents=True, exist_ok=True)
            config = root / "input" / "config"
            (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters or {}))
            (config / "inputdataconfig.json").write_text(json.dumps(data_config))
            resource = {
                "current_host": host_name,
                "current_instance_type": (job.resource_config or {}).get("InstanceType"),
                "hosts": names,
                "network_interface_name": "lo",
            }
            (config / "resourceconfig.json").write_text(json.dumps(resource))
            for name, (bucket, keys, prefix) in listed.items():
                target = root / "input" / "data" / name
                target.mkdir(parents=True, exist_ok=True)
                if data_config[name]["S3DistributionType"] == "ShardedByS3Key":
                    keys = keys[index::count]
                for key in keys:
                    path = target / _safe_relative(key, prefix)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, key, str(path))
            if checkpoint_uri:
                bucket, prefix = _split_s3_uri(checkpoint_uri)
                prefix = prefix.rstrip("/") + "/" if prefix else ""
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                    for obj in page.get("Contents", []):
                        if not obj["Key"].endswith("/"):
                            path = root / "checkpoints" / _safe_relative(obj["Key"], prefix)
                            path.parent.mkdir(parents=True, exist_ok=True)
                            s3.download_file(bucket, obj["Key"], str(path))
            hosts.append(_Host(host_name, index, root))
        return hosts

    # -- processes ------------------------------------------------------------------------------

    def _launch(self, hosts: list[_Host]) -> None:
        from fraud_assets_local.processes import LOCAL_HOST, scrubbed_aws_environ

        assert self._workdir is not None
        port_file = hosts[0].root.parent / "tracker.port"
        threads = max(1, (os.cpu_count() or 1) // len(hosts))  # hosts share this machine's cores
        for host in hosts:
            root = host.root
            env = scrubbed_aws_environ()  # a training host needs no AWS access: it gets none
            env.update(
                PYTHONUNBUFFERED="1",
                OMP_NUM_THREADS=str(threads),
                SM_HOSTS=json.dumps([h.name for h in hosts]),
                SM_CURRENT_HOST=host.name,
                SM_HPS=json.dumps(self.job.hyper_parameters or {}),
                SM_INPUT_DIR=str(root / "input"),
                SM_INPUT_CONFIG_DIR=str(root / "input" / "config"),
                SM_INPUT_DATA_DIR=str(root / "input" / "data"),
                SM_MODEL_DIR=str(root / "model"),
                SM_OUTPUT_DIR=str(root / "output"),
                SM_OUTPUT_DATA_DIR=str(root / "output" / "data"),
                SM_CHECKPOINT_DIR=str(root / "checkpoints"),
                SM_NUM_CPUS=str(threads),
                SM_CHANNELS=json.dumps(sorted(p.name for p in (root / "input" / "data").iterdir())),
                FRAUD_TRACKER_HOST=LOCAL_HOST,
                FRAUD_TRACKER_PORT_FILE=str(port_file),
            )
            for channel in (root / "input" / "data").iterdir():
                env[f"SM_CHANNEL_{channel.name.upper()}"] = str(channel)
            stream = f"{self.job.training_job_name}/{host.name}-{int(time.time())}"
            self._create_stream(stream)
            host.popen = subprocess.Popen(
                [sys.executable, "-m", "fraud_assets_local.training_jobs", "--host-process", str(os.getpid()), ENTRY_MODULE],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a stop signals exactly this host
                close_fds=True,
            )
            host.reader = threading.Thread(target=self._read_output, args=(host, stream), name=f"{self.name}-{host.name}", daemon=True)
            host.reader.start()
            with self._hosts_lock:
                self._hosts.append(host)

    def _read_output(self, host: _Host, stream: str) -> None:
        assert host.popen is not None and host.popen.stdout is not None
        for raw in host.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                continue
            host.last_line = line
            match = METRIC_LINE.match(line)
            if match:
                for part in re.split(r"\t|#011", match.group(2)):
                    metric = METRIC.match(part.strip())
                    if metric:
                        host.metrics[f"{metric.group(1)}:{metric.group(2)}"] = float(metric.group(3))
            with self._log_lock:
                self._pending_logs.setdefault(stream, []).append(
                    {"timestamp": int(time.time() * 1000), "message": line.replace("\t", "#011")}
                )

    def _watch(
        self, hosts: list[_Host], checkpoint_uri: str | None, runtime_left: float, wall_start: float, max_wait: float, interrupt: bool
    ) -> str:
        started = time.monotonic()
        last_flush = last_sync = 0.0
        while True:
            time.sleep(POLL_S)
            now = time.monotonic()
            codes = [h.popen.poll() if h.popen is not None else 0 for h in hosts]
            if now - last_flush >= LOG_FLUSH_S:
                self._flush_logs()
                last_flush = now
            if checkpoint_uri and now - last_sync >= 1.0:
                synced = self._sync_checkpoints(hosts[0], checkpoint_uri)
                last_sync = now
                if interrupt and synced:
                    self.kill_hosts()
                    return "interrupted"
            if any(code not in (None, 0) for code in codes):
                # The first to fail explains it; the others fail (or wait) on a collective that is gone.
                self._first_failed = [h for h, code in zip(hosts, codes) if code not in (None, 0)]
                self.kill_hosts(grace_s=0.0)
                return "stopped" if self._stop_requested.is_set() else "failed"
            if all(code == 0 for code in codes):
                for host in hosts:
                    if host.reader is not None:
                        host.reader.join(5)
                self._flush_logs()
                return "completed"
            if self._stop_requested.is_set():
                self.kill_hosts(grace_s=STOP_GRACE_S)
                return "stopped"
            if now - started > runtime_left:
                self.kill_hosts(grace_s=STOP_GRACE_S)
                return "max-runtime"
            if max_wait and now - wall_start > max_wait:
                self.kill_hosts(grace_s=STOP_GRACE_S)
                return "max-wait"

    def _failure_reason(self, hosts: list[_Host]) -> str:
        failed = list(self._first_failed) or [h for h in hosts if h.popen is not None and h.popen.returncode not in (None, 0)]
        # A client error (bad data, bad parameter) before an algorithm error: the latter is often
        # a peer's broken connection. Killed peers leave no failure file.
        failed.sort(
            key=lambda h: (
                not (h.root / "output" / "failure").exists()
                or not (h.root / "output" / "failure").read_text(errors="replace").startswith("ClientError")
            )
        )
        for host in failed:
            failure = host.root / "output" / "failure"
            if failure.exists():
                text = " ".join(failure.read_text(errors="replace").split())
                if text:
                    return text if text.startswith(("ClientError", "AlgorithmError")) else f"AlgorithmError: {text}"
        host = failed[0] if failed else hosts[0]
        code = host.popen.returncode if host.popen is not None else None
        return f"AlgorithmError: {host.name} exited with code {code}: {host.last_line}"

    # -- outputs --------------------------------------------------------------------------------

    def _artifact_uri(self) -> str:
        return f"{self.job.output_data_config['S3OutputPath'].rstrip('/')}/{self.job.training_job_name}/output/model.tar.gz"

    def _sse(self) -> dict[str, str]:
        key = (self.job.output_data_config or {}).get("KmsKeyId")
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key} if key else {"ServerSideEncryption": "AES256"}

    def _upload(self, host0: _Host, only_if_model: bool = False) -> None:
        model_dir = host0.root / "model"
        files = sorted(p for p in model_dir.rglob("*") if p.is_file())
        if only_if_model and not files:
            return
        self._status(None, "Uploading", "Uploading generated training model")
        bucket, key = _split_s3_uri(self._artifact_uri())
        self._client("s3").put_object(Bucket=bucket, Key=key, Body=_tar_gz(model_dir), **self._sse())
        data_dir = host0.root / "output" / "data"
        if any(p.is_file() for p in data_dir.rglob("*")):
            self._client("s3").put_object(
                Bucket=bucket, Key=key.rsplit("/", 1)[0] + "/output.tar.gz", Body=_tar_gz(data_dir), **self._sse()
            )

    def _sync_checkpoints(self, host0: _Host, checkpoint_uri: str) -> int:
        """New or changed checkpoint files of host 0 to the checkpoint prefix (SageMaker syncs
        /opt/ml/checkpoints continuously); returns how many were copied. Only files older than a
        moment: one being written now is copied next time, whole."""
        bucket, prefix = _split_s3_uri(checkpoint_uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        directory = host0.root / "checkpoints"
        copied = 0
        now = time.time()
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")):
            mtime = path.stat().st_mtime
            rel = path.relative_to(directory).as_posix()
            if self._synced.get(rel) == mtime or now - mtime < 0.2:
                continue
            self._client("s3").put_object(Bucket=bucket, Key=prefix + rel, Body=path.read_bytes(), **self._sse())
            self._synced[rel] = mtime
            copied += 1
        return copied

    # -- CloudWatch Logs ------------------------------------------------------------------------

    def _create_stream(self, stream: str) -> None:
        logs = self._client("logs")
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)

    def _flush_logs(self) -> None:
        with self._log_lock:
            pending, self._pending_logs = self._pending_logs, {}
        for stream, events in pending.items():
            for start in range(0, len(events), 5000):  # PutLogEvents takes at most 10,000 events
                self._client("logs").put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events[start : start + 5000])


def _tar_gz(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(directory).as_posix())
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# moto hooks


def install(jobs: LocalTrainingJobs) -> None:
    """CreateTrainingJob runs the job (and refuses a name in use, as AWS does; moto overwrites);
    StopTrainingJob (which moto lacks) stops it."""
    from moto.core.responses import ActionResult
    from moto.sagemaker.exceptions import ResourceInUseException, ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    if getattr(SageMakerResponse.create_training_job, "_fraud_assets_runs_jobs", False):
        return
    create = SageMakerResponse.create_training_job

    def create_training_job(self: Any) -> Any:
        backend = self.sagemaker_backend
        name = self._get_param("TrainingJobName") or ""
        if not JOB_NAME.match(name):
            raise ValidationError(message=f"TrainingJobName {name!r} must match [a-zA-Z0-9](-*[a-zA-Z0-9]){{0,62}}")
        if name in backend.training_jobs:
            raise ResourceInUseException(
                message=f"Training job names must be unique within an AWS account and region, and a training job with this name already exists ({backend.training_jobs[name].arn})"
            )
        for channel in self._get_param("InputDataConfig") or []:
            if not CHANNEL_NAME.match(channel.get("ChannelName", "")):
                raise ValidationError(message=f"invalid ChannelName {channel.get('ChannelName')!r}")
        output = (self._get_param("OutputDataConfig") or {}).get("S3OutputPath", "")
        if not S3_URI.match(output):
            raise ValidationError(message=f"OutputDataConfig.S3OutputPath {output!r} is not an S3 URI")
        result = create(self)
        job = backend.training_jobs[name]
        # moto's job is Completed at once; ours starts now.
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        jobs.start(job, backend.account_id, backend.region_name)
        return result

    def stop_training_job(self: Any) -> Any:
        backend = self.sagemaker_backend
        name = self._get_param("TrainingJobName") or ""
        backend.describe_training_job(name)  # ValidationError for an unknown job
        job = backend.training_jobs[name]
        if job.training_job_status != "InProgress" or not jobs.stop(backend.account_id, backend.region_name, name):
            raise ValidationError(message=f"The request was rejected because the training job is in status {job.training_job_status}.")
        return ActionResult({})

    create_training_job._fraud_assets_runs_jobs = True  # type: ignore[attr-defined]
    SageMakerResponse.create_training_job = create_training_job
    SageMakerResponse.stop_training_job = stop_training_job


# --------------------------------------------------------------------------------------------
# A host process: `python -m fraud_assets_local.training_jobs --host-process <moto pid> <module>`


def _host_process(parent_pid: int, module: str) -> None:
    """Dies with moto (a parent-death signal: moto SIGKILLed cannot kill its jobs' groups), with
    the default handling of the signals a stop sends, then runs the entry point as __main__."""
    import ctypes
    import runpy

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # moto died before the signal was armed
        sys.exit(1)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    if module != ENTRY_MODULE:
        sys.exit(f"unknown entry module {module!r}")
    sys.argv = [module]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--host-process":
        _host_process(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("usage: python -m fraud_assets_local.training_jobs --host-process <parent pid> <module>")
