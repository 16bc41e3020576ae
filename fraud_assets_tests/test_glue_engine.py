"""The Glue engine against moto: the job (and its security configuration) is the template's, created
by the local stack's bootstrap; a run finds it (or fails naming it), uploads the script with SSE to
the job's script location, starts the job through dagster-aws's PipesGlueClient with our arguments,
gets the job's counts back over Pipes (CloudWatch), and reads the output parquet back.

moto's Glue records jobs and runs but executes nothing (a run is SUCCEEDED as soon as it is asked
about; get_job_run says LogGroupName "test/log"). `FakeGlue` stands in for the service: hooked on
the client's StartJobRun, it downloads the script the engine uploaded, runs its entry point
in-process with the argv Glue would give it (default + run arguments + Glue's own), stages S3 in
and out (local Spark has no s3 connector, on Glue EMRFS does this), and ships the script's stdout
to the run's CloudWatch stream `<LogGroupName>/output/<run id>`, where Glue puts it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import dagster_pipes
import pandas as pd
import pytest
from dagster import Failure, MaterializeResult, asset, materialize

from fraud_assets.defs.engines import DataPrepEngine, glue_job, upload_script
from fraud_assets.lib.aws.storage import SSE, InvalidKeyError, S3Uri, put_bytes, write_parquet
from fraud_assets.lib.config import TRANSACTION_ID, PlatformNames
from fraud_assets.lib.training import prep_engines
from fraud_assets.lib.training.splits import DEFAULT_RATIOS, SPLITS

pytestmark = pytest.mark.xdist_group("spark")

NAMES = PlatformNames.from_env()
RAW_URI = f"s3://{NAMES.data_bucket}/raw/creditcard.csv"
DATASET_KEY = "executions/r0/training_dataset/dataset.parquet"
DATASET_URI = f"s3://{NAMES.workflow_bucket}/{DATASET_KEY}"
prep = prep_engines.load_glue_script(prep_engines.DATA_PREP_SCRIPT)


# --------------------------------------------------------------------------- no Spark needed


def test_glue_argv_is_parsed_past_glues_own_arguments():
    argv = [
        "--JOB_ID", "j_1", "--JOB_RUN_ID", "jr_1", "--JOB_NAME", "fraud-data-prep",
        "--input", "s3://w/executions/r/training_dataset/dataset.parquet", "--output", "s3://w/executions/r/glue_data_prep",
        "--seed", "-3", "--TempDir", "s3://t/tmp/", "--job-bookmark-option", "job-bookmark-disable",
        "--dagster-pipes-context", "eJyrVg==", "--dagster-pipes-messages", "eJyrVg==",
    ]  # fmt: skip
    args = prep.parse_args(argv)
    assert (args.input, args.output, args.seed, args.ratios) == (
        "s3://w/executions/r/training_dataset/dataset.parquet",
        "s3://w/executions/r/glue_data_prep",
        -3,
        DEFAULT_RATIOS,
    )
    assert prep._pipes_args(argv) == {"DAGSTER_PIPES_CONTEXT": "eJyrVg==", "DAGSTER_PIPES_MESSAGES": "eJyrVg=="}
    assert prep._pipes_args(["--input", "x"]) == {}
    with pytest.raises(ValueError, match="ratios"):
        prep.parse_args([*argv, "--ratios", "0.5,0.5,0.5"])
    # Launched without Pipes (a plain Glue run or locally), the script needs no dagster_pipes.
    with prep.pipes_session(["--input", "x"]) as pipes:
        assert pipes is None


def test_job_arguments_and_output_location_are_validated():
    args = prep_engines.glue_job_arguments(DATASET_URI, "s3://bucket-x/executions/r1/glue_data_prep/", 7, (0.8, 0.1, 0.1))
    assert args == {
        "--input": DATASET_URI,
        "--output": "s3://bucket-x/executions/r1/glue_data_prep",
        "--seed": "7",
        "--ratios": "0.8,0.1,0.1",
    }
    assert prep.parse_args([k_v for kv in args.items() for k_v in kv]).ratios == (0.8, 0.1, 0.1)
    for bad in ("s3://bucket-x/../etc", "file:///etc/passwd", "s3://Bad_Bucket/k"):
        with pytest.raises(InvalidKeyError):
            prep_engines.glue_job_arguments(bad, "s3://bucket-x/out", 7)
    with pytest.raises(ValueError, match="ratios"):
        prep_engines.glue_job_arguments(DATASET_URI, "s3://bucket-x/out", 7, (0.9, 0.2, 0.1))
    assert prep_engines.glue_output_uri("wf-bucket", "abc-123") == "s3://wf-bucket/executions/abc-123/glue_data_prep"
    for run_id in ("../x", "a/b", ""):
        with pytest.raises(InvalidKeyError):
            prep_engines.glue_output_uri("wf-bucket", run_id)


def test_the_job_the_engine_starts_is_the_templates(aws):
    """infra/fraud-detection.yaml's GlueDataPrepJob and GlueSecurityConfiguration, as the local
    bootstrap created them: the job the engine is configured to start, with SSE for its own writes."""
    glue = boto3.client("glue")
    job = glue.get_job(JobName=DataPrepEngine(engine="glue").glue_job_name)["Job"]
    assert job["Command"] == {
        "Name": "glueetl",
        "ScriptLocation": f"s3://{NAMES.data_bucket}/glue-scripts/fraud_data_prep.py",
        "PythonVersion": "3",
    }
    assert job["Role"].endswith(":role/fraud-detection-glue")
    assert (job["GlueVersion"], job["WorkerType"], job["NumberOfWorkers"]) == ("5.0", "G.1X", 5)
    assert job["DefaultArguments"]["--additional-python-modules"] == f"dagster-pipes=={importlib.metadata.version('dagster-pipes')}"
    assert job["MaxRetries"] == 0 and job["ExecutionProperty"] == {"MaxConcurrentRuns": 4} and job["Timeout"] == 60
    assert job["SecurityConfiguration"] == "fraud-detection-sse-s3"
    security = glue.get_security_configuration(Name="fraud-detection-sse-s3")["SecurityConfiguration"]
    assert security["EncryptionConfiguration"]["S3Encryption"] == [{"S3EncryptionMode": "SSE-S3"}]


def test_the_script_goes_encrypted_to_the_jobs_script_location(aws):
    s3, glue = boto3.client("s3"), boto3.client("glue")
    job = glue_job(glue, "fraud-data-prep")
    uri = upload_script(s3, job)
    assert str(uri) == job["Command"]["ScriptLocation"]
    assert s3.head_object(Bucket=uri.bucket, Key=uri.key)["ServerSideEncryption"] == SSE
    assert s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read() == prep_engines.DATA_PREP_SCRIPT.read_bytes()


def test_a_run_fails_naming_a_job_that_does_not_exist_and_creates_none(aws):
    """The run path only starts the job: a missing one is a deployment problem, said so, not retried."""
    s3, glue = boto3.client("s3"), boto3.client("glue")
    with pytest.raises(Failure, match="Glue job 'not-deployed' does not exist") as failure:
        glue_job(glue, "not-deployed")
    assert failure.value.allow_retries is False and "infra/fraud-detection.yaml" in failure.value.description

    @asset
    def glue_split(context, data_prep_engine: DataPrepEngine):
        data_prep_engine.split_dataset(context, s3, DATASET_URI, 10, 42, glue_client=glue, logs_client=boto3.client("logs"))

    result = materialize(
        [glue_split], resources={"data_prep_engine": DataPrepEngine(engine="glue", glue_job_name="not-deployed")}, raise_on_error=False
    )
    assert not result.success
    [failed] = [e for e in result.all_events if e.is_step_failure]
    assert "Glue job 'not-deployed' does not exist" in str(failed.step_failure_data.error)
    assert [j["Name"] for j in glue.get_jobs()["Jobs"]] == ["fraud-data-prep"]  # nothing created
    assert not s3.list_objects_v2(Bucket=NAMES.workflow_bucket, Prefix="pipes/").get("Contents")


# --------------------------------------------------------------------------- the whole Glue path


@pytest.fixture(scope="module")
def spark():
    session = prep_engines.local_spark_session(
        **{"spark.app.name": "fraud-assets-glue-engine", "spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}
    )
    yield session
    session.stop()


class FakeGlue:
    """AWS Glue's part of a job run, on top of moto's bookkeeping."""

    def __init__(self, events, spark):
        """`events`: the emitter of the Glue client the engine will use (or of the boto3 session
        it will create its client from)."""
        self.glue, self.s3, self.logs, self.spark = boto3.client("glue"), boto3.client("s3"), boto3.client("logs"), spark
        self.runs: list[dict[str, Any]] = []
        events.register("provide-client-params.glue.StartJobRun", self._remember)
        events.register("after-call.glue.StartJobRun", self._run)
        self._pending: dict[str, Any] = {}

    def _remember(self, params, **_):
        self._pending = dict(params)

    def _run(self, parsed, **_):
        run_id, job_name = parsed["JobRunId"], self._pending["JobName"]
        job = self.glue.get_job(JobName=job_name)["Job"]
        arguments = {**job.get("DefaultArguments", {}), **self._pending.get("Arguments", {})}
        glue_own = {
            "--JOB_ID": "j_fake",
            "--JOB_RUN_ID": run_id,
            "--JOB_NAME": job_name,
            "--TempDir": "s3://aws-glue-temp/",
            "--job-bookmark-option": "job-bookmark-disable",
        }
        script = S3Uri.parse(job["Command"]["ScriptLocation"])
        with tempfile.TemporaryDirectory() as tmp:
            # Run the object Glue would run: the uploaded bytes, loaded on their own.
            script_path = Path(tmp) / "script.py"
            script_path.write_bytes(self.s3.get_object(Bucket=script.bucket, Key=script.key)["Body"].read())
            spec = importlib.util.spec_from_file_location(f"uploaded_{run_id[:12]}", script_path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            # EMRFS stand-in: the input comes down, the output goes up (encrypted, as the job's
            # security configuration makes EMRFS do).
            source, target = S3Uri.parse(arguments["--input"]), S3Uri.parse(arguments["--output"])
            local_in = Path(tmp) / "input.parquet"
            local_out = Path(tmp) / "output"
            local_in.write_bytes(self.s3.get_object(Bucket=source.bucket, Key=source.key)["Body"].read())
            local_args = {**glue_own, **arguments, "--input": str(local_in), "--output": str(local_out)}
            argv = [token for pair in local_args.items() for token in pair]
            stdout = io.StringIO()
            # Each Glue run is a fresh Python process; dagster_pipes keeps one context per process.
            dagster_pipes.PipesContext._instance = None
            try:
                with contextlib.redirect_stdout(stdout):
                    module.main(argv, spark=self.spark)
            finally:
                dagster_pipes.PipesContext._instance = None
            for path in sorted(local_out.rglob("*")):
                if path.is_file() and not path.name.endswith(".crc"):
                    key = f"{target.key}/{path.relative_to(local_out).as_posix()}"
                    put_bytes(self.s3, target.bucket, key, path.read_bytes())
        run = self.glue.get_job_run(JobName=job_name, RunId=run_id)["JobRun"]
        group, stream = f"{run['LogGroupName']}/output", run_id
        with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
            self.logs.create_log_group(logGroupName=group)
        self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        lines = [line for line in stdout.getvalue().splitlines() if line.strip()]
        self.logs.put_log_events(
            logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": now, "message": line} for line in lines]
        )
        self.runs.append({"run_id": run_id, "arguments": dict(self._pending.get("Arguments", {})), "stdout": lines})


def stored_dataset(s3, tmp_path: Path, rows: int, fraud_rate: float, seed: int) -> Path:
    """A training data set (the raw history alone, as data_extraction stores it) at DATASET_URI; also
    returned as a local file."""
    from fraud_assets.lib.training import extraction

    synthetic = pytest.importorskip("fraud_assets.lib.seeding.synthetic")
    csv = synthetic.to_csv_bytes(synthetic.generate_transactions(rows, fraud_rate, seed=seed))
    dataset, _ = extraction.extract_with_pandas(csv, RAW_URI, extraction.empty_daily_rows(), 42)
    path = tmp_path / "dataset.parquet"
    with open(path, "wb") as f:
        write_parquet(dataset, f)
    put_bytes(s3, NAMES.workflow_bucket, DATASET_KEY, path.read_bytes())
    return path


@pytest.mark.spark
def test_glue_engine_end_to_end_through_pipes(aws, spark, tmp_path):
    s3, glue, logs = boto3.client("s3"), boto3.client("glue"), boto3.client("logs")
    local_dataset = stored_dataset(s3, tmp_path, 1000, 0.03, 5)
    fake = FakeGlue(glue.meta.events, spark)
    engine = DataPrepEngine(engine="glue")
    captured: dict[str, Any] = {}

    @asset
    def glue_prepared(context, data_prep_engine: DataPrepEngine):
        captured["run_id"] = context.run_id
        captured["result"] = data_prep_engine.split_dataset(
            context, s3, DATASET_URI, 1000, 42, DEFAULT_RATIOS, glue_client=glue, logs_client=logs
        )
        # A step that opened a Pipes session must emit typed results (prepared_splits yields Outputs).
        return MaterializeResult(metadata=captured["result"].metadata)

    result = materialize([glue_prepared], resources={"data_prep_engine": engine})
    assert result.success

    # The run: one job run with our arguments plus the Pipes bootstrap.
    assert len(fake.runs) == 1
    run = fake.runs[0]
    output_uri = f"s3://{NAMES.workflow_bucket}/executions/{captured['run_id']}/glue_data_prep"
    assert {k: v for k, v in run["arguments"].items() if not k.startswith("--dagster-pipes")} == {
        "--input": DATASET_URI, "--output": output_uri, "--seed": "42", "--ratios": "0.7,0.15,0.15"
    }  # fmt: skip
    assert {"--dagster-pipes-context", "--dagster-pipes-messages"} <= set(run["arguments"])
    assert any("__dagster_pipes_version" in line for line in run["stdout"])  # messages went to stdout

    # What came back equals the pandas engine, and the job's own counts arrived over Pipes.
    prepared = captured["result"]
    expected = prep_engines.split_dataset_with_pandas(local_dataset, 42, DEFAULT_RATIOS)
    for name in SPLITS:
        pd.testing.assert_frame_equal(prepared.frames[name], expected[name], check_exact=True)
    assert prepared.metadata["glue_reported_counts"].value == {name: len(expected[name]) for name in SPLITS}
    assert prepared.metadata["AWS Glue Job Run ID"].value == run["run_id"]
    assert prepared.metadata["engine"] == "glue" and prepared.metadata["input_records"] == 1000

    # Every object the run left behind is encrypted; the Pipes context object is gone.
    listed = s3.list_objects_v2(Bucket=NAMES.workflow_bucket).get("Contents", [])
    assert not [o["Key"] for o in listed if o["Key"].startswith("pipes/")]
    outputs = [o["Key"] for o in listed if o["Key"].startswith(f"executions/{captured['run_id']}/glue_data_prep/")]
    assert any(k.endswith("/_SUCCESS") for k in outputs) and any("split=train/" in k for k in outputs)
    for key in outputs:
        assert s3.head_object(Bucket=NAMES.workflow_bucket, Key=key)["ServerSideEncryption"] == SSE
    script = S3Uri.parse(glue.get_job(JobName=engine.glue_job_name)["Job"]["Command"]["ScriptLocation"])
    assert s3.head_object(Bucket=script.bucket, Key=script.key)["ServerSideEncryption"] == SSE


@pytest.mark.spark
def test_reading_back_refuses_uncommitted_or_short_output(aws, spark, tmp_path):
    s3 = boto3.client("s3")
    out = f"s3://{NAMES.workflow_bucket}/executions/r1/glue_data_prep"
    with pytest.raises(FileNotFoundError, match="_SUCCESS"):
        prep_engines.read_splits_from_s3(s3, out)
    from fraud_assets.lib.training import extraction

    csv = b"Time," + ",".join(f"V{i}" for i in range(1, 29)).encode() + b",Amount,Class\n"
    csv += b"".join(f"{i},{','.join(['1'] * 28)},2.5,{i % 2}\n".encode() for i in range(30))
    dataset, _ = extraction.extract_with_pandas(csv, RAW_URI, extraction.empty_daily_rows(), 1)
    with open(tmp_path / "in.parquet", "wb") as f:
        write_parquet(dataset, f)
    summary = prep.split_dataset_spark(spark, str(tmp_path / "in.parquet"), str(tmp_path / "out"), 1)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and not path.name.endswith(".crc"):
            put_bytes(
                s3,
                NAMES.workflow_bucket,
                f"executions/r1/glue_data_prep/{path.relative_to(tmp_path / 'out').as_posix()}",
                path.read_bytes(),
            )
    frames = prep_engines.read_splits_from_s3(s3, out)
    prep_engines.check_against_summary(frames, summary)
    assert sum(len(f) for f in frames.values()) == 30
    short = {
        **summary,
        "splits": {**summary["splits"], "train": {**summary["splits"]["train"], "rows": summary["splits"]["train"]["rows"] + 1}},
    }
    with pytest.raises(RuntimeError, match="train split"):
        prep_engines.check_against_summary(frames, short)


@pytest.mark.spark
def test_training_prepared_splits_asset_on_the_glue_engine(aws, spark, monkeypatch, tmp_path):
    """The training group's own data_extraction and prepared_splits, configured with engine=glue: the
    Glue job splits the training data set (raw history + labelled daily rows, parquet) that
    data_extraction stored; the engine builds its own boto3 clients (plain AWS code), so the stand-in
    hooks the default session. The splits equal the pandas engine's from the same data set."""
    from dagster_aws.s3 import S3Resource

    from fraud_assets.defs import engines
    from fraud_assets.defs.io_manager import ExecutionsIOManager
    from fraud_assets.defs.resources import FeatureEngineering, FraudPlatform, QualityGates
    from fraud_assets.defs.training.assets import data_extraction, prepared_splits
    from fraud_assets.lib.aws.storage import get_bytes, parquet_to_table, write_parquet
    from fraud_assets.lib.seeding.seed import seed_platform
    from fraud_assets.lib.training import extraction

    session = boto3.session.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    # The engine builds its Glue and Logs clients with the project's factory (a session of its
    # own): hand it clients of the session the stand-in listens on.
    monkeypatch.setattr(engines, "make_client", lambda service, *args, **kwargs: session.client(service))
    fake = FakeGlue(session.events, spark)
    synthetic = pytest.importorskip("fraud_assets.lib.seeding.synthetic")
    csv = synthetic.to_csv_bytes(synthetic.generate_transactions(600, 0.05, seed=9))
    s3 = boto3.client("s3")
    seed_platform(s3, NAMES, days=3, start_date="2024-05-01", rows=50, transactions_per_day=120, seed=9)
    put_bytes(s3, NAMES.data_bucket, "raw/creditcard.csv", csv, "text/csv")
    s3_resource = S3Resource()
    result = materialize(
        [data_extraction, prepared_splits],
        resources={
            "s3": s3_resource,
            "platform": FraudPlatform(),
            "io_manager": ExecutionsIOManager(s3=s3_resource, bucket=NAMES.workflow_bucket),
            "data_prep_engine": DataPrepEngine(engine="glue"),
            "quality_gates": QualityGates(split_ratio_tolerance=0.1),  # 840 rows: the shares wander
            "feature_engineering": FeatureEngineering(),
        },
        run_config={"ops": {"data_extraction": {"config": {"recent_window_days": 1}}}},
    )
    assert result.success and len(fake.runs) == 1
    assert fake.runs[0]["arguments"]["--input"].endswith("/training_dataset/dataset.parquet")
    daily = pd.concat([extraction.load_labelled_day(s3, NAMES.data_bucket, d)[0] for d in ("2024-05-01", "2024-05-02")])
    dataset, _ = extraction.extract_with_pandas(csv, RAW_URI, daily, 42)
    with open(tmp_path / "dataset.parquet", "wb") as f:
        write_parquet(dataset, f)
    expected = prep_engines.split_dataset_with_pandas(tmp_path / "dataset.parquet", 42, DEFAULT_RATIOS)
    assert sum(f[TRANSACTION_ID].str.startswith("TXN-").sum() for f in expected.values()) == 240
    for name in SPLITS:
        [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == f"{name}_split"]
        metadata = event.materialization.metadata
        assert metadata["rows"].value == len(expected[name])
        keys = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket=NAMES.workflow_bucket, Prefix=f"executions/{result.run_id}/{name}_split/")["Contents"]
        ]
        [table_key] = [k for k in keys if k.endswith(".parquet")]
        stored = parquet_to_table(get_bytes(s3, f"s3://{NAMES.workflow_bucket}/{table_key}"))
        pd.testing.assert_frame_equal(stored, expected[name], check_exact=True)


@pytest.mark.spark
def test_pandas_and_spark_engines_agree_through_the_resource(aws, spark):
    """The resource's extract and split_dataset (the training assets' path) on both engines."""
    from fraud_assets.lib.training import extraction
    from fraud_assets.lib.training.raw_data import RawDataError

    s3 = boto3.client("s3")
    synthetic = pytest.importorskip("fraud_assets.lib.seeding.synthetic")
    csv = synthetic.to_csv_bytes(synthetic.generate_transactions(500, 0.05, seed=3))
    put_bytes(s3, NAMES.data_bucket, "raw/creditcard.csv", csv, "text/csv")
    by_spark, by_pandas = DataPrepEngine(engine="spark"), DataPrepEngine()
    assert by_spark.spark_session() is spark  # dagster-pyspark's lazy session reuses the live one
    empty = extraction.empty_daily_rows()
    spark_dataset, spark_summary, spark_metadata = by_spark.extract(s3, RAW_URI, empty, 3)
    pandas_dataset, pandas_summary, _ = by_pandas.extract(s3, RAW_URI, empty, 3)
    assert spark_metadata["extract_engine"] == "spark" and spark_summary == pandas_summary
    assert spark_dataset.equals(pandas_dataset)
    sink = io.BytesIO()
    write_parquet(pandas_dataset, sink)
    put_bytes(s3, NAMES.workflow_bucket, DATASET_KEY, sink.getvalue())
    spark_splits = by_spark.split_dataset(None, s3, DATASET_URI, 500, 3, (0.6, 0.2, 0.2))
    pandas_splits = by_pandas.split_dataset(None, s3, DATASET_URI, 500, 3, (0.6, 0.2, 0.2))
    assert spark_splits.metadata["engine"] == "spark" and spark_splits.metadata["input_records"] == 500
    for name in SPLITS:
        pd.testing.assert_frame_equal(spark_splits.frames[name], pandas_splits.frames[name], check_exact=True)
    put_bytes(s3, NAMES.data_bucket, "raw/creditcard.csv", csv.replace(b"\n", b"\nnot-a-number,", 1)[: len(csv)], "text/csv")
    with pytest.raises(RawDataError, match=r"s3://fraud-detection-data/raw/creditcard.csv: "):
        by_spark.extract(s3, RAW_URI, empty, 3)
