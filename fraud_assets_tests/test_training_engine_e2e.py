"""fraud_model on the training-job engine, end to end through Dagster against the local stack: a
job that fails (runtime exceeded) fails the step with the job's reason in one line and deploys
nothing; a terminated run stops its job; a re-executed run does not reuse a failed job."""

import boto3
import pytest
from dagster import DagsterEventType, DagsterInstance

from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import QualityGates, TrainingEngine
from fraud_assets.lib.aws.clients import make_client
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import FEATURE_COLUMNS, RAW_DATA_KEY, PlatformNames
from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
from fraud_assets.lib.training import training_job as tj
from fraud_assets.lib.training.endpoint import current_endpoint
from fraud_assets.lib.training.hyperparameters import HYPERPARAMETER_PATH

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()
LENIENT = QualityGates(pr_auc_floor=0.3, high_risk_precision_floor=0.3)


def step_failure(result, step: str) -> str:
    [failure] = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE and e.step_key == step]
    error = failure.event_specific_data.error
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def test_a_failed_training_job_fails_the_step_in_one_line_and_the_endpoint_keeps_serving(aws):
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=30_000, seed=5)))
    instance = DagsterInstance.ephemeral()
    first = location_defs(quality_gates=LENIENT).resolve_job_def("training_job").execute_in_process(instance=instance)
    assert first.success
    deployed = current_endpoint(s3, NAMES)
    model = [e for e in first.get_asset_materialization_events() if e.asset_key.to_user_string() == "fraud_model"]
    meta = model[0].event_specific_data.materialization.metadata
    assert meta["training_engine"].value == "sagemaker" and meta["training_job_name"].value == tj.job_name(first.run_id)

    # One second of runtime for a job that needs far more (slow hyperparameters from Parameter Store):
    # the job is stopped by SageMaker, the step fails with its reason.
    ssm = boto3.client("ssm")
    for name, value in {"num_round": "5000", "eta": "0.01", "max_depth": "8", "early_stopping_rounds": "1000"}.items():
        ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/{name}", Value=value, Type="String", Overwrite=True)
    slow = location_defs(quality_gates=LENIENT, training_engine=TrainingEngine(max_runtime_seconds=1))
    second = slow.resolve_job_def("training_job").execute_in_process(instance=instance, raise_on_error=False)
    assert not second.success
    message = step_failure(second, "fraud_model")
    assert "\n" not in message and "MaxRuntimeExceeded" in message and tj.job_name(second.run_id) in message
    assert current_endpoint(s3, NAMES)["model_version"] == deployed["model_version"]


def test_a_terminated_run_stops_its_job_and_a_rerun_starts_a_new_attempt(aws):
    frame = generate_transactions(n_rows=20_000, seed=9)
    train, validation = frame.iloc[:15_000], frame.iloc[15_000:]
    sagemaker, logs, s3 = make_client("sagemaker"), make_client("logs"), make_client("s3")

    def train_once(should_stop):
        return tj.train_with_job(
            sagemaker=sagemaker,
            logs=logs,
            s3=s3,
            run_id="run-terminated",
            train=train,
            validation=validation,
            feature_names=list(FEATURE_COLUMNS),
            hyperparameters={"max_depth": 3, "num_round": 20},
            role_arn=NAMES.sagemaker_role_arn,
            region="us-east-1",
            channel_bucket=NAMES.workflow_bucket,
            channel_prefix="executions/run-terminated/fraud_model/channels",
            output_path=f"s3://{NAMES.models_bucket}/training-jobs",
            settings=tj.TrainingSettings(),
            should_stop=should_stop,
        )

    with pytest.raises(tj.TrainingJobFailed, match="stopped"):
        train_once(should_stop=lambda: True)
    assert sagemaker.describe_training_job(TrainingJobName=tj.job_name("run-terminated"))["TrainingJobStatus"] == "Stopped"
    trained, record = train_once(should_stop=None)
    assert record["job_name"] == tj.job_name("run-terminated", attempt=1) and trained.booster.num_boosted_rounds() >= 1
