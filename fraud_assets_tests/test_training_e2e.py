"""The training graph end to end through Dagster against the local stack: layout, deployment, and a
gate-failing model held back while the previous endpoint keeps serving."""

import boto3
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance

from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import QualityGates
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames
from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
from fraud_assets.lib.training.endpoint import current_endpoint, invoke_one
from fraud_assets.lib.training.registry import list_models

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()
TRAINING_STAGES = (
    "train_split",
    "validation_split",
    "test_split",
    "model_hyperparameters",
    "fraud_model",
    "evaluation_metrics",
    "deployed_endpoint",
)
# Floors low enough for a small data set; the gate mechanics are what this test is about.
LENIENT = QualityGates(pr_auc_floor=0.3, high_risk_precision_floor=0.3)


def run_training(instance, gates: QualityGates):
    job = location_defs(quality_gates=gates).resolve_job_def("training_job")
    return job.execute_in_process(instance=instance, raise_on_error=False)


def materialise_alone(instance, asset: str, gates: QualityGates = LENIENT):
    """One asset launched on its own, as from its page in the UI or `dagster asset materialize --select`."""
    job = location_defs(quality_gates=gates).resolve_job_def("training_job")
    return job.execute_in_process(instance=instance, asset_selection=[AssetKey(asset)], raise_on_error=False)


def step_failure(result, step: str) -> str:
    failures = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE and e.step_key == step]
    assert failures, f"{step} did not fail"
    return failures[0].event_specific_data.error.message


def stage_keys(run_id: str) -> set[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=NAMES.workflow_bucket, Prefix=f"executions/{run_id}/")
    return {o["Key"] for o in listing.get("Contents", [])}


def test_training_graph_deploys_and_a_failing_gate_keeps_the_previous_model(aws):
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=100_000, seed=11)))
    instance = DagsterInstance.ephemeral()

    first = run_training(instance, LENIENT)
    assert first.success
    keys = stage_keys(first.run_id)
    for stage in TRAINING_STAGES:
        assert f"executions/{first.run_id}/{stage}/output.json" in keys
    assert f"executions/{first.run_id}/fraud_model/model.tar.gz" in keys
    deployed = current_endpoint(s3, NAMES)
    assert deployed["run_id"] == first.run_id
    assert deployed["model_uri"].startswith(f"s3://{NAMES.models_bucket}/models/")
    runtime = boto3.client("sagemaker-runtime")
    known = deployed["health_check"]["features"]
    assert invoke_one(runtime, NAMES.endpoint_name, known) == pytest.approx(deployed["health_check"]["expected_score"], abs=1e-5)
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks["accuracy_gate"] and checks["counts_add_up"] and checks["ids_disjoint"]

    # A floor no model can reach: the gate fails, deployed_endpoint is not materialised, and the
    # endpoint and its pointer still serve the first model.
    second = run_training(instance, QualityGates(pr_auc_floor=1.0))
    failed = {e.check_name for e in second.get_asset_check_evaluations() if not e.passed}
    assert "pr_auc_gate" in failed
    assert not any(
        e.asset_key.to_user_string() == "deployed_endpoint"
        for e in (ev.event_specific_data.materialization for ev in second.get_asset_materialization_events())
    )
    assert f"executions/{second.run_id}/deployed_endpoint/output.json" not in stage_keys(second.run_id)
    assert current_endpoint(s3, NAMES)["model_version"] == deployed["model_version"]
    assert invoke_one(runtime, NAMES.endpoint_name, known) == pytest.approx(deployed["health_check"]["expected_score"], abs=1e-5)

    # The same gate-failing model deployed by materialising deployed_endpoint alone: it loads the
    # evaluation stored before the blocking check failed, reads its verdict and refuses.
    alone = materialise_alone(instance, "deployed_endpoint")
    assert not alone.success
    refused = step_failure(alone, "deployed_endpoint")
    assert "failed its gates" in refused and "pr_auc_gate" in refused and "accuracy_gate" not in refused
    assert f"keeps serving {deployed['model_version']}" in refused
    assert current_endpoint(s3, NAMES)["model_version"] == deployed["model_version"]
    assert invoke_one(runtime, NAMES.endpoint_name, known) == pytest.approx(deployed["health_check"]["expected_score"], abs=1e-5)

    # A newer model that was never evaluated is not deployed on the strength of an older evaluation.
    assert materialise_alone(instance, "fraud_model").success
    unevaluated = materialise_alone(instance, "deployed_endpoint")
    assert not unevaluated.success
    assert "has no recorded evaluation" in step_failure(unevaluated, "deployed_endpoint")
    assert current_endpoint(s3, NAMES)["model_version"] == deployed["model_version"]

    # Evaluated and passing, the same single-asset path deploys it: the registry holds one package
    # per version, Rejected for the gate-failing model, Approved for this one, evaluated twice.
    assert materialise_alone(instance, "evaluation_metrics").success
    assert materialise_alone(instance, "evaluation_metrics").success
    registry = {m.model_version: m for m in list_models(boto3.client("sagemaker"))}
    assert len(registry) == 3 and registry[deployed["model_version"]].approved
    assert [m.failed_gates for m in registry.values() if not m.approved] == [["pr_auc_gate"]]
    assert materialise_alone(instance, "deployed_endpoint").success
    now = current_endpoint(s3, NAMES)
    assert now["model_version"] != deployed["model_version"] and registry[now["model_version"]].approved
    assert now["model_package_arn"] == registry[now["model_version"]].arn
    assert now["model_uri"] == registry[now["model_version"]].model_data_url
