"""Where data preparation runs, chosen by configuration: pandas in-process (default), Spark local
mode (dagster-pyspark), or an AWS Glue job launched through Dagster Pipes (dagster-aws
PipesGlueClient running glue_scripts/fraud_data_prep.py). One transformation, the same frames.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Optional

import pandas as pd
import pyarrow as pa
from dagster import ConfigurableResource, MetadataValue
from dagster_aws.pipes import (
    PipesCloudWatchMessageReader,
    PipesGlueClient,
    PipesS3ContextInjector,
)
from pydantic import Field

from fraud_assets.lib.aws.clients import make_client
from fraud_assets.lib.aws.storage import (
    S3Uri,
    download_to_file,
    get_bytes,
    put_bytes,
    to_json_bytes,
    validate_key_part,
)
from fraud_assets.lib.config import PlatformNames
from fraud_assets.lib.training import prep_engines
from fraud_assets.lib.training.splits import DEFAULT_RATIOS

GLUE_SUMMARY_MESSAGE = "fraud_data_prep_summary"

# Spark local mode sized for a shared laptop; the UI is off (no port to collide on) and timestamps
# are UTC so feature engineering never depends on the machine's zone.
DEFAULT_SPARK_CONFIG = prep_engines.LOCAL_SPARK_CONFIG


@dataclasses.dataclass
class PreparedSplits:
    frames: dict[str, pd.DataFrame]
    metadata: dict[str, Any]


class SseS3ContextInjector(PipesS3ContextInjector):
    """dagster-aws's S3 context injector, but the context object is written with server-side
    encryption (the project's rule for every put) under a validated per-run prefix."""

    @contextmanager
    def inject_context(self, context) -> Iterator[dict[str, str]]:
        key = f"{self.key_prefix or ''}{uuid.uuid4().hex}/context.json"
        put_bytes(self.client, self.bucket, key, to_json_bytes(context), "application/json")
        try:
            yield {"bucket": self.bucket, "key": key}
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=key)


def job_definition_drifted(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether get_job's answer differs from the definition we want. Glue returns extra fields
    (and may add keys inside Command), so only what we set is compared."""
    for key, value in wanted.items():
        if key == "Description":
            continue
        have = current.get(key)
        if isinstance(value, dict):
            if not isinstance(have, dict) or any(have.get(k) != v for k, v in value.items()):
                return True
        elif have != value:
            return True
    return False


class DataPrepEngine(ConfigurableResource):
    """Runs the data-prep transformation on the configured engine and returns the splits as pandas
    frames (train, validation, test; transactionId first, then the raw columns, in file order)."""

    engine: Literal["pandas", "spark", "glue"] = Field(default="pandas", description="Where data preparation runs.")
    spark_config: dict[str, str] = Field(
        default=DEFAULT_SPARK_CONFIG, description="Spark session settings for engine=spark (dagster-pyspark)."
    )
    workdir: Optional[str] = Field(default=None, description="Local directory Spark stages the CSV in (default: the system temp dir).")
    glue_job_name: str = Field(default="fraud-data-prep", description="The Glue job; created when missing, kept in sync otherwise.")
    glue_script_uri: str = Field(
        default=f"s3://{PlatformNames.data_bucket}/glue-scripts/fraud_data_prep.py",
        description="Where glue_scripts/fraud_data_prep.py is uploaded (SSE) for the job to run.",
    )
    glue_role_arn: str = Field(default="arn:aws:iam::123456789012:role/fraud-detection-glue", description="The job's IAM role.")
    glue_version: str = "5.0"
    glue_worker_type: str = "G.1X"
    glue_number_of_workers: int = Field(default=5, description="G.1X workers: 5 = the seeds' 5 DPUs.")
    glue_timeout_minutes: int = 60
    glue_max_concurrent_runs: int = Field(default=4, description="Room for backfills and retries to overlap.")
    glue_python_modules: str = Field(default="dagster-pipes==1.13.27", description="--additional-python-modules for the job.")
    glue_security_configuration: str = Field(
        default="fraud-detection-sse-s3",
        description="Glue security configuration (created when missing) so the job's own S3 writes are SSE-S3 encrypted.",
    )
    glue_bucket: Optional[str] = Field(
        default=None, description="Bucket for the job's output and the Pipes context (default: the workflow bucket)."
    )

    # ------------------------------------------------------------------ public interface

    def prepare(self, context, s3_client, raw_uri: str, seed: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> dict[str, pd.DataFrame]:
        return self.prepare_detailed(context, s3_client, raw_uri, seed, ratios).frames

    def prepare_detailed(
        self,
        context,
        s3_client,
        raw_uri: str,
        seed: int,
        ratios: Sequence[float] = DEFAULT_RATIOS,
        *,
        glue_client=None,
        logs_client=None,
    ) -> PreparedSplits:
        """`prepare` plus what the engine knows about the run (engine, seconds, Glue job run id and
        the job's own counts), for the caller's materialization metadata."""
        ratios = tuple(float(r) for r in ratios)
        uri = S3Uri.parse(raw_uri)
        started = time.perf_counter()
        if self.engine in ("pandas", "spark"):
            # Through a local file: the CSV's text is never in this process's memory (the raw
            # file at 2.85M rows is 0.8 GB), and Spark reads files, not buckets.
            with tempfile.TemporaryDirectory(prefix="fraud-raw-", dir=self.workdir) as tmp:
                path = download_to_file(s3_client, uri, Path(tmp) / "raw.csv")
                if self.engine == "pandas":
                    frames, records = prep_engines.split_with_pandas(path, str(uri), seed, ratios)
                    metadata: dict[str, Any] = {}
                else:
                    frames, records = prep_engines.split_with_spark(self.spark_session(), path, str(uri), seed, ratios, self.workdir)
                    metadata = {"spark_master": self.spark_config.get("spark.master", "")}
            # The records the engine parsed from the file, not the splits' sum: counts_add_up compares the two.
            metadata["input_records"] = records
        elif self.engine == "glue":
            frames, metadata = self._prepare_with_glue(context, s3_client, uri, seed, ratios, glue_client, logs_client)
        else:  # pydantic already rejects it; kept for callers that bypass validation
            raise ValueError(f"unknown data-prep engine {self.engine!r}")
        metadata = {"engine": self.engine, "engine_seconds": round(time.perf_counter() - started, 3), **metadata}
        return PreparedSplits(frames, metadata)

    def extract(
        self, s3_client, raw_uri: str, daily: pd.DataFrame, seed: int, legit_cap: int | None = None
    ) -> tuple[pa.Table, dict[str, Any], dict[str, Any]]:
        """The training data set (lib/training/extraction.py): the raw CSV plus the labelled daily
        rows, deduplicated and optionally sampled; (arrow table, summary, metadata). Spark runs the Glue
        script's twin; the glue engine extracts in-process (the daily rows are already in memory
        here) and runs the split, the part that grows with the history, on Glue."""
        from fraud_assets.lib.training.extraction import extract_with_pandas

        uri = S3Uri.parse(raw_uri)
        started = time.perf_counter()
        # Through a local file: the CSV's text (0.8 GB at 2.85M rows) is never in this process's memory.
        with tempfile.TemporaryDirectory(prefix="fraud-raw-", dir=self.workdir) as tmp:
            path = download_to_file(s3_client, uri, Path(tmp) / "raw.csv")
            if self.engine == "spark":
                frame, summary = prep_engines.extract_with_spark(self.spark_session(), path, str(uri), daily, seed, legit_cap, self.workdir)
            else:
                frame, summary = extract_with_pandas(path, str(uri), daily, seed, legit_cap)
        metadata = {
            "engine": self.engine,
            "extract_engine": "spark" if self.engine == "spark" else "pandas",
            "engine_seconds": round(time.perf_counter() - started, 3),
        }
        return frame, summary, metadata

    def split_dataset(
        self,
        context,
        s3_client,
        dataset_uri: str,
        input_records: int,
        seed: int,
        ratios: Sequence[float] = DEFAULT_RATIOS,
        *,
        glue_client=None,
        logs_client=None,
    ) -> PreparedSplits:
        """The splits of a prepared data set (training_dataset's parquet at `dataset_uri`, of
        `input_records` rows), by the hash of its transactionIds: the same frames on every engine.
        Every engine reads the stored parquet: the data set is never a whole frame in this process."""
        ratios = tuple(float(r) for r in ratios)
        started = time.perf_counter()
        metadata: dict[str, Any] = {"input_records": input_records}
        if self.engine in ("pandas", "spark"):
            with tempfile.TemporaryDirectory(prefix="fraud-dataset-", dir=self.workdir) as tmp:
                path = download_to_file(s3_client, S3Uri.parse(dataset_uri), Path(tmp) / "dataset.parquet")
                if self.engine == "pandas":
                    frames = prep_engines.split_dataset_with_pandas(path, seed, ratios)
                else:
                    frames = prep_engines.split_dataset_with_spark(self.spark_session(), path, seed, ratios, self.workdir)
                    metadata["spark_master"] = self.spark_config.get("spark.master", "")
        elif self.engine == "glue":
            frames, metadata = self._prepare_with_glue(
                context,
                s3_client,
                S3Uri.parse(dataset_uri),
                seed,
                ratios,
                glue_client,
                logs_client,
                input_format="parquet",
                input_records=input_records,
            )
        else:
            raise ValueError(f"unknown data-prep engine {self.engine!r}")
        metadata = {"engine": self.engine, "engine_seconds": round(time.perf_counter() - started, 3), **metadata}
        return PreparedSplits(frames, metadata)

    def engineer_features(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        """Feature engineering on the same engine as data prep: glue_scripts/fraud_feature_eng.py on
        Spark, its pandas twin otherwise. The glue engine engineers in-process: the splits are
        already in memory here, and the features are cheap next to the data prep Glue scales out."""
        if self.engine == "spark":
            return prep_engines.engineer_with_spark(self.spark_session(), splits, self.workdir)
        return prep_engines.engineer_with_pandas(splits)

    def spark_session(self):
        """The process's Spark session, created on first use through dagster-pyspark's lazy resource
        (an existing session is reused, as SparkSession.builder.getOrCreate does)."""
        from dagster_pyspark import (
            LazyPySparkResource,  # Spark loads only where it runs
        )

        return LazyPySparkResource(spark_config={**DEFAULT_SPARK_CONFIG, **self.spark_config}).spark_session

    # ------------------------------------------------------------------ AWS Glue

    @property
    def bucket(self) -> str:
        return self.glue_bucket or PlatformNames.from_env().workflow_bucket  # read at run time, not import

    def glue_job_definition(self) -> dict[str, Any]:
        """The job as create_job/update_job take it (without the name)."""
        script = S3Uri.parse(self.glue_script_uri)
        if not script.key.endswith(".py"):
            raise ValueError(f"glue_script_uri must name a .py object, got {self.glue_script_uri!r}")
        return {
            "Description": "fraud_assets data preparation (glue_scripts/fraud_data_prep.py), launched by Dagster Pipes",
            "Role": self.glue_role_arn,
            "Command": {"Name": "glueetl", "ScriptLocation": str(script), "PythonVersion": "3"},
            "DefaultArguments": {
                "--job-language": "python",
                # The script reports back through dagster-pipes, which Glue does not ship.
                "--additional-python-modules": self.glue_python_modules,
            },
            "ExecutionProperty": {"MaxConcurrentRuns": self.glue_max_concurrent_runs},
            "MaxRetries": 0,  # Dagster owns retries; a silent Glue retry would hide a failure
            "Timeout": self.glue_timeout_minutes,
            "SecurityConfiguration": self.glue_security_configuration,
            "GlueVersion": self.glue_version,
            "WorkerType": self.glue_worker_type,
            "NumberOfWorkers": self.glue_number_of_workers,
        }

    def upload_script(self, s3_client) -> S3Uri:
        uri = S3Uri.parse(self.glue_script_uri)
        return put_bytes(s3_client, uri.bucket, uri.key, prep_engines.DATA_PREP_SCRIPT.read_bytes(), "text/x-python")

    def ensure_security_configuration(self, glue_client) -> None:
        """Spark on Glue writes through EMRFS, not put_bytes: SSE for those writes comes from the
        job's security configuration."""
        try:
            glue_client.get_security_configuration(Name=self.glue_security_configuration)
        except glue_client.exceptions.EntityNotFoundException:
            glue_client.create_security_configuration(
                Name=self.glue_security_configuration,
                EncryptionConfiguration={
                    "S3Encryption": [{"S3EncryptionMode": "SSE-S3"}],
                    "CloudWatchEncryption": {"CloudWatchEncryptionMode": "DISABLED"},
                    "JobBookmarksEncryption": {"JobBookmarksEncryptionMode": "DISABLED"},
                },
            )

    def ensure_glue_job(self, glue_client) -> str:
        """Create the job when missing; update it when its definition drifted from this config.
        Returns "created", "updated" or "unchanged"."""
        self.ensure_security_configuration(glue_client)
        wanted = self.glue_job_definition()
        try:
            current = glue_client.get_job(JobName=self.glue_job_name)["Job"]
        except glue_client.exceptions.EntityNotFoundException:
            glue_client.create_job(Name=self.glue_job_name, **wanted)
            return "created"
        if job_definition_drifted(current, wanted):
            glue_client.update_job(JobName=self.glue_job_name, JobUpdate=wanted)
            return "updated"
        return "unchanged"

    def _prepare_with_glue(
        self,
        context,
        s3_client,
        raw_uri: S3Uri,
        seed,
        ratios,
        glue_client,
        logs_client,
        input_format: str = "csv",
        input_records: int | None = None,
    ):
        glue_client = glue_client or make_client("glue")
        logs_client = logs_client or make_client("logs")
        run_id = validate_key_part(context.run_id, "run id")
        output_uri = prep_engines.glue_output_uri(self.bucket, run_id)
        script_uri = self.upload_script(s3_client)
        job_state = self.ensure_glue_job(glue_client)
        context.log.info(f"Glue job {self.glue_job_name} {job_state}; script {script_uri}; output {output_uri}")
        pipes = PipesGlueClient(
            client=glue_client,
            context_injector=SseS3ContextInjector(bucket=self.bucket, client=s3_client, key_prefix=f"pipes/{run_id}/"),
            message_reader=PipesCloudWatchMessageReader(client=logs_client),
        )
        arguments = prep_engines.glue_job_arguments(str(raw_uri), output_uri, seed, ratios, input_format=input_format)
        invocation = pipes.run(context=context, start_job_run_params={"JobName": self.glue_job_name, "Arguments": arguments})
        summaries = [
            m["summary"] for m in invocation.get_custom_messages() if isinstance(m, dict) and m.get("kind") == GLUE_SUMMARY_MESSAGE
        ]
        frames = prep_engines.read_splits_from_s3(s3_client, output_uri)
        metadata: dict[str, Any] = {str(k): v for k, v in invocation.metadata.items()}
        metadata["glue_output"] = MetadataValue.path(output_uri)
        if summaries:
            prep_engines.check_against_summary(frames, summaries[-1])
            counts = {name: s["rows"] for name, s in summaries[-1]["splits"].items()}
            metadata["glue_reported_counts"] = MetadataValue.json(counts)
            run = metadata.get("AWS Glue Job Run ID")
            context.log.info(f"Glue run {getattr(run, 'value', run)}: {counts} rows, matching the parquet read back")
        else:
            # Counts travel over CloudWatch; without them the parquet is still read and checked
            # downstream by the split asset checks.
            context.log.warning("the Glue job reported no split summary over Pipes; counts not cross-checked")
        if summaries:
            metadata["input_records"] = summaries[-1]["recordCount"]
        else:
            metadata["input_records"] = (
                input_records if input_records is not None else prep_engines.count_csv_records(get_bytes(s3_client, raw_uri))
            )
        return frames, metadata
