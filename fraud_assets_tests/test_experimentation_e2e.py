"""Tune, promote with retrain, and the next deployed model names the experiment: the lineage from
experiment to endpoint, against the local stack."""

import boto3
import pytest
from dagster import AssetSelection, DagsterInstance

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
    lenient = {"pr_auc_floor": 0.0, "high_risk_precision_floor": 0.0, "regression_tolerance": 1.0}
    defs = location_defs(quality_gates=QualityGates(**lenient))
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

    result = promote_and_maybe_retrain(experiment_id, retrain=True, announce=lambda _: None, resources={"quality_gates": lenient})
    assert result["retraining"]["deployed"]
    promoted = read_hyperparameters(boto3.client("ssm"))
    assert promoted.source == "ssm" and promoted.experiment_id == experiment_id
    deployed = current_endpoint(s3, NAMES)
    assert deployed["experiment_id"] == experiment_id
    assert deployed["run_id"] == result["retraining"]["run_id"]


def test_an_experiment_compares_algorithms_prequentially_in_dagster_and_a_non_xgboost_winner_is_refused(aws, tmp_path, monkeypatch):
    """Kept small: the splits and the experiment only (no training or endpoint), one trial per
    algorithm on 20,000 rows, prequential folds of 8-hour blocks over the two days."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=20_000, fraud_rate=0.01, seed=11)))
    defs = location_defs()
    instance = DagsterInstance.get()
    selection = AssetSelection.assets("tuning_experiment").upstream().required_multi_asset_neighbors().resolve(defs.resolve_asset_graph())
    small = {"xgboost": {"num_round": 30}, "lightgbm": {"n_estimators": 30}, "random_forest": {"n_estimators": 20}, "mlp": {"max_iter": 10}}
    config = {
        "strategy": "random",
        "n_trials": 1,
        "nthread": 1,
        "algorithms": ["xgboost", "lightgbm", "random_forest", "mlp"],
        "validation": "prequential",
        "block_days": 1 / 3,
        "base_on_production": False,
        "base_hyperparameters": small,
    }
    run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=list(selection), run_config={"ops": {"tuning_experiment": {"config": config}}}
    )
    assert run.success
    metadata = run.asset_materializations_for_node("tuning_experiment")[0].metadata
    experiment_id = metadata["experiment_id"].value
    table = metadata["best_per_algorithm"].value
    assert [r.data["algorithm"] for r in table.records] == config["algorithms"]
    assert all(r.data["folds"] == 4 and 0 < r.data["pr_auc"] <= 1 and "pr_auc_std" in r.data for r in table.records)
    assert metadata["pr_auc_by_trial"].value.startswith("![pr_auc by trial](data:image/svg+xml;base64,")

    record = load_experiment(s3, NAMES.workflow_bucket, experiment_id)
    assert record["config"]["validation"]["kind"] == "prequential" and record["config"]["validation"]["block_days"] == 1 / 3
    for trial in record["trials"]:
        assert trial["validation"] == "prequential" and trial["feature_set"] == "raw" and len(trial["folds"]) == 4
    assert "Best trial per algorithm" in format_experiment_detail(record)

    # Whatever won here, a lightgbm-only experiment's winner is refused by the promote job.
    lightgbm_only = {**config, "algorithms": ["lightgbm"], "base_hyperparameters": {"lightgbm": small["lightgbm"]}}
    run = defs.resolve_job_def("tuning_experiment_job").execute_in_process(
        instance=instance, run_config={"ops": {"tuning_experiment": {"config": lightgbm_only}}}
    )
    refused_id = run.asset_materializations_for_node("tuning_experiment")[0].metadata["experiment_id"].value
    promotion = defs.resolve_job_def("promote_experiment").execute_in_process(
        instance=instance, run_config={"ops": {"promote": {"config": {"experiment_id": refused_id}}}}, raise_on_error=False
    )
    assert not promotion.success
    failure = next(e for e in promotion.all_events if e.is_step_failure)
    assert "'lightgbm', which the serving path cannot serve" in str(failure.event_specific_data.error)
    assert read_hyperparameters(boto3.client("ssm")).source == "defaults"

    # Bad input fails at once, naming it, before any trial.
    bad = defs.resolve_job_def("tuning_experiment_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"tuning_experiment": {"config": {**config, "algorithms": ["catboost"]}}}},
        raise_on_error=False,
    )
    assert not bad.success
    assert "unknown algorithm 'catboost'" in str(next(e for e in bad.all_events if e.is_step_failure).event_specific_data.error)
