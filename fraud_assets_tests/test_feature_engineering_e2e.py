"""Turning feature engineering on changes the model's features end to end: training, the
endpoint's feature names, and daily scoring with the training split's statistics."""

import boto3
import pytest
from dagster import DagsterInstance

from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import FeatureEngineering, QualityGates
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import FEATURE_COLUMNS, RAW_DATA_KEY, PlatformNames, daily_batch_key
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch, generate_transactions, to_csv_bytes
from fraud_assets.lib.training.endpoint import current_endpoint
from fraud_assets.lib.training.features import engineered_feature_names

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()


def test_feature_engineering_reaches_the_endpoint_and_daily_scoring(aws):
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=100_000, seed=11)))
    put_bytes(s3, NAMES.data_bucket, daily_batch_key("2026-04-01"), batch_to_json_bytes(generate_daily_batch("2026-04-01", 1_500)))
    defs = location_defs(
        quality_gates=QualityGates(pr_auc_floor=0.2, high_risk_precision_floor=0.0),
        feature_engineering=FeatureEngineering(enabled=True),
    )
    instance = DagsterInstance.ephemeral()
    assert defs.resolve_job_def("training_job").execute_in_process(instance=instance).success

    deployed = current_endpoint(s3, NAMES)
    # The training data (Kaggle schema) has no customers or merchants: time and amount features only.
    assert deployed["feature_names"] == engineered_feature_names(has_customer_fields=False)
    assert len(deployed["feature_names"]) > len(FEATURE_COLUMNS)

    day = defs.resolve_job_def("inference_job").execute_in_process(instance=instance, partition_key="2026-04-01")
    assert day.success
    scores = day.asset_materializations_for_node("daily_scores")[0].metadata
    assert scores["scored"].value == 1_500
    skew = [e for e in day.get_asset_check_evaluations() if e.check_name == "train_serve_skew"]
    assert skew and skew[0].metadata["value"].value >= 0
