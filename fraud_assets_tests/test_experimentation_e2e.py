"""Tune, promote with retrain, and the next deployed model names the experiment: the lineage from
experiment to endpoint, against the local stack."""

import boto3
import pytest
from dagster import DagsterInstance

from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import QualityGates
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames
from fraud_assets.lib.experimentation.experiments import format_experiment_detail, list_experiments, load_experiment
from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
from fraud_assets.lib.training.endpoint import current_endpoint
from fraud_assets.lib.training.hyperparameters import read_hyperparameters
from fraud_assets.main_job import promote_and_maybe_retrain

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()


def test_tune_promote_retrain_names_the_experiment_on_the_endpoint(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=60_000, seed=11)))
    defs = location_defs(quality_gates=QualityGates(pr_auc_floor=0.0, high_risk_precision_floor=0.0, regression_tolerance=1.0))
    instance = DagsterInstance.get()
    assert defs.resolve_job_def("training_job").execute_in_process(instance=instance).success
    assert current_endpoint(s3, NAMES).get("experiment_id") is None

    tuning = defs.resolve_job_def("tuning_experiment_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"tuning_experiment": {"config": {"strategy": "random", "n_trials": 3, "nthread": 1, "seed": 1}}}},
    )
    assert tuning.success
    experiment_id = tuning.asset_materializations_for_node("tuning_experiment")[0].metadata["experiment_id"].value
    assert [e["experiment_id"] for e in list_experiments(s3, NAMES.workflow_bucket)] == [experiment_id]
    record = load_experiment(s3, NAMES.workflow_bucket, experiment_id)
    assert len(record["trials"]) == 3 and record["best"] is not None
    assert experiment_id in format_experiment_detail(record)

    result = promote_and_maybe_retrain(experiment_id, retrain=True, announce=lambda _: None, defs=defs)
    assert result["retraining"]["deployed"]
    promoted = read_hyperparameters(boto3.client("ssm"))
    assert promoted.source == "ssm" and promoted.experiment_id == experiment_id
    deployed = current_endpoint(s3, NAMES)
    assert deployed["experiment_id"] == experiment_id
    assert deployed["run_id"] == result["retraining"]["run_id"]
