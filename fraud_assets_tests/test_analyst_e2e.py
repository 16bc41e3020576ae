"""What the fraud analysts get, end to end against the local stack: a model released with a
calibration map and a threshold chosen by target recall (shown in the evaluation metadata); alert
messages received through an SQS subscription carry each transaction's reasons, and recomputing
them from the deployed model package gives the same numbers; the FraudScores items of high-risk
transactions carry them too; and every scored day has its HTML report in the metrics bucket."""

import html

import boto3
import pytest
from dagster import DagsterInstance

from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import QualityGates, RiskThresholds
from fraud_assets.lib.aws.storage import get_bytes, put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, TRANSACTION_ID, PlatformNames, daily_batch_key
from fraud_assets.lib.inference import reasons as reasons_lib
from fraud_assets.lib.inference.alerts import rank_alerts
from fraud_assets.lib.inference.daily import parse_daily_batch
from fraud_assets.lib.inference.report import report_key
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch, generate_transactions, to_csv_bytes
from fraud_assets.lib.training.endpoint import current_endpoint
from fraud_assets.lib.training.model import load_model_package, model_inputs
from fraud_assets_tests.test_inference_e2e import drain, subscribe_queue

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()
DATES = ["2026-04-01", "2026-04-02"]


def metadata_of(result, asset: str) -> dict:
    [materialization] = [
        e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == asset
    ]
    return {k: v.value for k, v in materialization.metadata.items()}


def test_alerts_carry_reasons_recomputable_from_the_deployed_model(aws):
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=60_000, seed=21)))
    for i, date in enumerate(DATES):
        batch = generate_daily_batch(date, n_transactions=1_500, seed=300 + i, fraud_rate=0.03)
        put_bytes(s3, NAMES.data_bucket, daily_batch_key(date), batch_to_json_bytes(batch))
    alerts_queue = subscribe_queue(NAMES.alerts_topic, "analyst-alerts")

    defs = location_defs(
        quality_gates=QualityGates(pr_auc_floor=0.2, high_risk_precision_floor=0.0), risk_thresholds=RiskThresholds(target_recall=0.7)
    )
    instance = DagsterInstance.ephemeral()
    training = defs.resolve_job_def("training_job").execute_in_process(instance=instance)
    assert training.success
    evaluation = metadata_of(training, "evaluation_metrics")
    assert evaluation["threshold_policy"] == "target_recall 0.7"
    assert evaluation["expected_high_risk_recall"] >= 0.7
    high_threshold = evaluation["high_risk_threshold"]
    inference = defs.resolve_job_def("inference_job")
    reports = {}
    for date in DATES:
        result = inference.execute_in_process(instance=instance, partition_key=date)
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        assert checks["reasons_match_endpoint"].passed, checks["reasons_match_endpoint"].metadata
        scores, report = metadata_of(result, "daily_scores"), metadata_of(result, "daily_report")
        assert scores["calibrated"] and scores["high_risk_threshold"] == high_threshold
        assert report["report_key"] == report_key(date) and report["high_risk"] == scores["high_risk"]
        assert report["transactions_processed"] == 1_500 and report["high_risk_threshold"] == high_threshold
        reports[date] = get_bytes(s3, f"s3://{NAMES.metrics_bucket}/{report_key(date)}").decode()

    # Recompute from the deployed package, through the URI the pointer records.
    deployed = current_endpoint(s3, NAMES)
    booster, meta = load_model_package(get_bytes(s3, deployed["model_uri"]))
    transactions = {}
    for date in DATES:
        transactions[date] = parse_daily_batch(get_bytes(s3, f"s3://{NAMES.data_bucket}/{daily_batch_key(date)}"), date).accepted

    messages = drain(alerts_queue)
    alerts = [a for m in messages for a in m["alerts"]]
    assert alerts, "the fraud-heavy days raise alerts"
    for message in messages:
        frame = transactions[message["batchDate"]].set_index(TRANSACTION_ID)
        ids = [a["transactionId"] for a in message["alerts"]]
        features = model_inputs(frame.loc[ids].reset_index(), meta)
        explanation = reasons_lib.explain(booster, features, meta["feature_names"])
        expected = reasons_lib.reasons_by_transaction(reasons_lib.reason_table(ids, features, explanation, meta["feature_names"]))
        for alert in message["alerts"]:
            assert alert["fraudScore"] >= high_threshold  # alerts act on the calibrated score
            assert alert["transactionId"] in reports[message["batchDate"]]  # and the day's report lists them
            assert len(alert["topReasons"]) == reasons_lib.DEFAULT_TOP
            assert alert["topReasons"] == expected[alert["transactionId"]]
            assert alert["topReasons"][0]["contribution"] >= alert["topReasons"][-1]["contribution"]

    # The FraudScores item of an alerted transaction carries the same reasons.
    first = alerts[0]
    item = boto3.client("dynamodb").get_item(
        TableName=NAMES.scores_table, Key={TRANSACTION_ID: {"S": first["transactionId"]}, "timestamp": {"S": first["timestamp"]}}
    )["Item"]
    stored = [
        {"feature": r["M"]["feature"]["S"], "value": float(r["M"]["value"]["N"]), "contribution": float(r["M"]["contribution"]["N"])}
        for r in item["topReasons"]["L"]
    ]
    assert stored == first["topReasons"]
    # One order, the raw score breaking the calibrated ties: in the day's messages and in its report.
    for date, page in reports.items():
        parts = sorted((m for m in messages if m["batchDate"] == date), key=lambda m: m["part"])
        sent = [a for m in parts for a in m["alerts"]]
        assert all(isinstance(a["rawScore"], float) for a in sent) and sent == rank_alerts(sent)
        listed = [page.index(f">{html.escape(a['transactionId'])}</td>") for a in sent]
        assert listed == sorted(listed)
    for date, page in reports.items():
        assert page.count("<svg") == 3 and deployed["model_version"] in page and f"Daily fraud report: {date}" in page
