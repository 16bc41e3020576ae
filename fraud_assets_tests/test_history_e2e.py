"""History features end to end on the simulated world, against the local stack: training computes
them point in time over the raw history and the labelled days, the model records them, the first
daily partition loads the history's last days into DynamoDB, each day and each label file keeps
the aggregates current, and daily scoring serves exactly the features training computes for the
same transactions (to 1e-9)."""

import boto3
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance

from fraud_assets.definitions import location_defs
from fraud_assets.defs.common import daily_partitions
from fraud_assets.defs.resources import FeatureEngineering, QualityGates, TrainingEngine
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key, label_file_key
from fraud_assets.lib.features.history import HISTORY_FEATURES, history_features
from fraud_assets.lib.features.training_history import history_source
from fraud_assets.lib.inference.daily import parse_daily_batch
from fraud_assets.lib.seeding.seed import label_records
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes
from fraud_assets.lib.seeding.world import world_history, world_labelled_daily_batch
from fraud_assets.lib.training.endpoint import current_endpoint
from fraud_assets.lib.training.raw_data import read_customer_columns

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()
DELAY = 1
SEED = 5


def test_daily_scoring_serves_the_history_features_training_computes(aws):
    first = daily_partitions.get_first_partition_key()
    days = daily_partitions.get_partition_keys()[:4]
    s3 = boto3.client("s3")
    history = world_history(start_date=str(pd.Timestamp(first) - pd.Timedelta(days=35))[:10], days=35, transactions_per_day=250, seed=SEED)
    raw_csv = history.drop(columns=["scenario"]).to_csv(index=False).encode()
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, raw_csv)
    batches = {d: world_labelled_daily_batch(d, 400, seed=SEED) for d in days}
    batches[days[-1]].records[7]["customerId"] = None  # a card the issuer could not name: no customer history
    for d, batch in batches.items():
        put_bytes(s3, NAMES.data_bucket, daily_batch_key(d), batch_to_json_bytes(batch.records))

    defs = location_defs(
        quality_gates=QualityGates(pr_auc_floor=0.0, high_risk_precision_floor=0.0, recall_floor=0.0),
        training_engine=TrainingEngine(engine="in-process"),
        feature_engineering=FeatureEngineering(label_delay_days=DELAY),  # enabled unset: on, the data has customers
    )
    instance = DagsterInstance.ephemeral()
    assert defs.resolve_job_def("training_job").execute_in_process(instance=instance).success
    deployed = current_endpoint(s3, NAMES)
    assert set(HISTORY_FEATURES) <= set(deployed["feature_names"])

    inference, performance = defs.resolve_job_def("inference_job"), defs.resolve_job_def("model_performance_job")
    for d in days:
        day = inference.execute_in_process(instance=instance, partition_key=d)
        assert day.success
        body = batch_to_json_bytes(label_records(d, batches[d], DELAY))  # the day's labels come back after it
        put_bytes(s3, NAMES.data_bucket, label_file_key(d), body)
        assert performance.execute_in_process(instance=instance, partition_key=d).success

    last = days[-1]
    served = defs.load_asset_value("daily_scores", partition_key=last, instance=instance).tables["history_features"]
    scored = day.asset_materializations_for_node("daily_scores")[0].metadata
    assert len(served) == scored["scored"].value == 400
    assert scored["history_customers"].value > 0 and scored["history_terminal_days_read"].value > 0

    # Training's computation for the same rows: the raw history, then every day with its labels.
    raw = read_customer_columns(raw_csv, "raw")
    frames = []
    for d in days:
        parsed = parse_daily_batch(batch_to_json_bytes(batches[d].records), d).accepted
        parsed["Class"] = np.asarray(batches[d].is_fraud, dtype=np.int64)
        frames.append(parsed.assign(timestamp=parsed["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")))
    source = history_source(raw, frames)
    expected = history_features(source, DELAY).set_index(source["transactionId"])
    got = served.set_index("transactionId")
    want = expected.loc[got.index, list(HISTORY_FEATURES)]
    np.testing.assert_allclose(got[list(HISTORY_FEATURES)].to_numpy(), want.to_numpy(), rtol=0, atol=1e-9, equal_nan=True)
    no_customer = got.loc[batches[last].records[7]["id"]]
    assert np.isnan(no_customer["velocity_1h"]) and not np.isnan(no_customer["terminal_risk_7d"])
    assert scored["without_customer"].value == 1
