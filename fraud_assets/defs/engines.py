"""Where data preparation runs, chosen by configuration: pandas in-process (default), Spark local
mode (dagster-pyspark), or an AWS Glue job launched through Dagster Pipes (dagster-aws
PipesGlueClient running glue_scripts/fraud_data_prep.py). One transformation, the same frames.

The three steps (extract the training data set, split it, engineer features) are chosen in one place,
`RUNNERS`: each engine is an object with `extract`, `split` and `engineer`. The Glue engine runs the
split on Glue and the other two in-process, as pandas does.

The Glue job and its security configuration are infrastructure (infra/fraud-detection.yaml; the local
stack's bootstrap creates them on moto): a run only uploads the script to the job's script location
and starts the job.
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
from dagster import ConfigurableResource, Failure, MetadataValue
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


class DataPrepEngine(ConfigurableResource):
    """Runs the data-prep steps on the configured engine and returns pandas frames (the splits:
    train, validation, test; transactionId first, then the raw columns, in transactionId order)."""

    engine: Literal["pandas", "spark", "glue"] = Field(default="pandas", description="Where data preparation runs.")
    spark_config: dict[str, str] = Field(
        default=DEFAULT_SPARK_CONFIG, description="Spark session settings for engine=spark (dagster-pyspark)."
    )
    workdir: Optional[str] = Field(default=None, description="Local directory the engines stage files in (default: the system temp dir).")
    glue_job_name: str = Field(
        default="fraud-data-prep",
        description="The Glue job (infra/fraud-detection.yaml, parameter GlueJobName) a run starts; it must exist.",
    )
    glue_bucket: Optional[str] = Field(
        default=None, description="Bucket for the job's output and the Pipes context (default: the workflow bucket)."
    )

    # ------------------------------------------------------------------ the three steps

    def extract(
        self, s3_client, raw_uri: str, daily: pd.DataFrame, seed: int, legit_cap: int | None = None
    ) -> tuple[pa.Table, dict[str, Any], dict[str, Any]]:
        """The training data set (lib/training/extraction.py): the raw CSV plus the labelled daily
        rows, deduplicated and optionally sampled; (arrow table, summary, metadata)."""
        runner = self.runner()
        uri = S3Uri.parse(raw_uri)
        started = time.perf_counter()
        # Through a local file: the CSV's text (0.8 GB at 2.85M rows) is never in this process's memory.
        with tempfile.TemporaryDirectory(prefix="fraud-raw-", dir=self.workdir) as tmp:
            path = download_to_file(s3_client, uri, Path(tmp) / "raw.csv")
            frame, summary = runner.extract(path, str(uri), daily, seed, legit_cap)
        metadata = {
            "engine": self.engine,
            "extract_engine": runner.extract_engine,
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
        frames, metadata = self.runner().split(
            context, s3_client, S3Uri.parse(dataset_uri), input_records, seed, ratios, glue_client=glue_client, logs_client=logs_client
        )
        metadata = {"engine": self.engine, "engine_seconds": round(time.perf_counter() - started, 3), **metadata}
        return PreparedSplits(frames, metadata)

    def engineer_features(self, splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        """Feature engineering: glue_scripts/fraud_feature_eng.py on Spark, its pandas twin otherwise."""
        return self.runner().engineer(splits)

    def history_features(self, source: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
        """The point-in-time history features of every transaction of `source` (lib/features/history.py),
        its PySpark twin (glue_scripts/fraud_feature_eng.py) on Spark; index aligned with `source`."""
        return self.runner().history(source, label_delay_days)

    # ------------------------------------------------------------------ the one dispatch

    def runner(self) -> PandasRunner:
        try:
            return RUNNERS[self.engine](self)
        except KeyError:  # pydantic already rejects it; kept for callers that bypass validation
            raise ValueError(f"unknown data-prep engine {self.engine!r}") from None

    def spark_session(self):
        """The process's Spark session, created on first use through dagster-pyspark's lazy resource
        (an existing session is reused, as SparkSession.builder.getOrCreate does)."""
        from dagster_pyspark import (
            LazyPySparkResource,  # Spark loads only where it runs
        )

        return LazyPySparkResource(spark_config={**DEFAULT_SPARK_CONFIG, **self.spark_config}).spark_session

    @property
    def bucket(self) -> str:
        return self.glue_bucket or PlatformNames.from_env().workflow_bucket  # read at run time, not import


class PandasRunner:
    """Every step in this process with pandas and pyarrow."""

    extract_engine = "pandas"

    def __init__(self, resource: DataPrepEngine):
        self.resource = resource

    def extract(self, path: Path, source: str, daily: pd.DataFrame, seed: int, legit_cap: int | None):
        from fraud_assets.lib.training.extraction import extract_with_pandas

        return extract_with_pandas(path, source, daily, seed, legit_cap)

    def split(self, context, s3_client, uri: S3Uri, input_records: int, seed: int, ratios, **_clients):
        with self._local_copy(s3_client, uri) as path:
            return prep_engines.split_dataset_with_pandas(path, seed, ratios), {"input_records": input_records}

    def engineer(self, splits: dict[str, pd.DataFrame]):
        return prep_engines.engineer_with_pandas(splits)

    def history(self, source: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
        from fraud_assets.lib.features.history import history_features

        return history_features(source, label_delay_days)

    @contextmanager
    def _local_copy(self, s3_client, uri: S3Uri) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="fraud-dataset-", dir=self.resource.workdir) as tmp:
            yield download_to_file(s3_client, uri, Path(tmp) / "dataset.parquet")


class SparkRunner(PandasRunner):
    """Every step on a local Spark session, running the Glue scripts' functions."""

    extract_engine = "spark"

    def extract(self, path: Path, source: str, daily: pd.DataFrame, seed: int, legit_cap: int | None):
        r = self.resource
        return prep_engines.extract_with_spark(r.spark_session(), path, source, daily, seed, legit_cap, r.workdir)

    def split(self, context, s3_client, uri: S3Uri, input_records: int, seed: int, ratios, **_clients):
        r = self.resource
        with self._local_copy(s3_client, uri) as path:
            frames = prep_engines.split_dataset_with_spark(r.spark_session(), path, seed, ratios, r.workdir)
        return frames, {"input_records": input_records, "spark_master": r.spark_config.get("spark.master", "")}

    def engineer(self, splits: dict[str, pd.DataFrame]):
        r = self.resource
        return prep_engines.engineer_with_spark(r.spark_session(), splits, r.workdir)

    def history(self, source: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
        return prep_engines.history_with_spark(self.resource.spark_session(), source, label_delay_days)


class GlueRunner(PandasRunner):
    """The split, the step that grows with the history, as a Glue job run through Dagster Pipes.
    Extraction and features run in-process as on pandas: their inputs are already here."""

    def split(self, context, s3_client, uri: S3Uri, input_records: int, seed: int, ratios, *, glue_client=None, logs_client=None):
        r = self.resource
        glue_client = glue_client or make_client("glue")
        logs_client = logs_client or make_client("logs")
        run_id = validate_key_part(context.run_id, "run id")
        output_uri = prep_engines.glue_output_uri(r.bucket, run_id)
        script_uri = upload_script(s3_client, glue_job(glue_client, r.glue_job_name))
        context.log.info(f"Glue job {r.glue_job_name}: script {script_uri}; output {output_uri}")
        pipes = PipesGlueClient(
            client=glue_client,
            context_injector=SseS3ContextInjector(bucket=r.bucket, client=s3_client, key_prefix=f"pipes/{run_id}/"),
            message_reader=PipesCloudWatchMessageReader(client=logs_client),
        )
        arguments = prep_engines.glue_job_arguments(str(uri), output_uri, seed, ratios)
        invocation = pipes.run(context=context, start_job_run_params={"JobName": r.glue_job_name, "Arguments": arguments})
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
            metadata["input_records"] = summaries[-1]["recordCount"]
            run = metadata.get("AWS Glue Job Run ID")
            context.log.info(f"Glue run {getattr(run, 'value', run)}: {counts} rows, matching the parquet read back")
        else:
            # Counts travel over CloudWatch; without them the parquet is still read and checked
            # downstream by the split asset checks.
            context.log.warning("the Glue job reported no split summary over Pipes; counts not cross-checked")
            metadata["input_records"] = input_records
        return frames, metadata


RUNNERS: dict[str, type[PandasRunner]] = {"pandas": PandasRunner, "spark": SparkRunner, "glue": GlueRunner}


def glue_job(glue_client, name: str) -> dict[str, Any]:
    """The job as GetJob answers it; a missing job fails the step naming it (no retry mends that)."""
    try:
        return glue_client.get_job(JobName=name)["Job"]
    except glue_client.exceptions.EntityNotFoundException:
        raise Failure(
            description=(
                f"Glue job {name!r} does not exist. It is infrastructure: infra/fraud-detection.yaml creates it "
                "(GlueDataPrepJob, named by the GlueJobName parameter); deploy that stack, or set the data_prep_engine "
                "resource's glue_job_name to the job it created."
            ),
            allow_retries=False,
        ) from None


def upload_script(s3_client, job: dict[str, Any]) -> S3Uri:
    """glue_scripts/fraud_data_prep.py, this code location's copy, to where the job runs it from (SSE):
    the job always runs the script of the code that starts it."""
    uri = S3Uri.parse(job["Command"]["ScriptLocation"])
    return put_bytes(s3_client, uri.bucket, uri.key, prep_engines.DATA_PREP_SCRIPT.read_bytes(), "text/x-python")
