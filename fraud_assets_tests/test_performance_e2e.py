"""Measured production quality end to end against the local stack: performance/{date}.json equals what
this test computes on its own from the FraudScores items in DynamoDB and the label file; a label file
that appears or is replaced recomputes the day exactly once (label_file_sensor); recomputing the same
inputs leaves the file as it was and notifies the monitoring topic once."""

import datetime as dt
import io
import json

import boto3
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, build_sensor_context
from dagster_aws.s3 import S3Resource
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_assets.definitions import location_defs
from fraud_assets.defs.inference.sensors import label_requests
from fraud_assets.defs.resources import AlertBudget, FraudPlatform, PerformanceFloors, QualityGates, RiskThresholds
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key, label_file_key
from fraud_assets.lib.inference.performance import PERFORMANCE_KEYS, performance_key
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch, generate_transactions, to_csv_bytes
from fraud_assets.main_job import PERFORMANCE_SUMMARY, day_performance
from fraud_assets_tests.test_inference_e2e import drain, subscribe_queue

pytestmark = pytest.mark.e2e
NAMES = PlatformNames()
DATE = "2026-03-02"


def stored_scores(date: str) -> dict[str, tuple[float, str]]:
    """transactionId -> (fraudScore, modelVersion), straight from FraudScores through its date index."""
    pages = (
        boto3.client("dynamodb")
        .get_paginator("query")
        .paginate(
            TableName=NAMES.scores_table,
            IndexName=NAMES.scores_gsi,
            KeyConditionExpression="batchDate = :d",
            ExpressionAttributeValues={":d": {"S": date}},
        )
    )
    return {i["transactionId"]["S"]: (float(i["fraudScore"]["N"]), i["modelVersion"]["S"]) for p in pages for i in p["Items"]}


def metric(name: str, stat: str, **dimensions: str) -> float | None:
    """One statistic of a FraudDetection metric over the last hour (one period), None without data."""
    now = dt.datetime.now(dt.timezone.utc)
    result = boto3.client("cloudwatch").get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "FraudDetection",
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                    },
                    "Period": 7200,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(hours=1),
    )
    values = result["MetricDataResults"][0]["Values"]
    return values[0] if values else None


# A model released at thresholds other than the original design's 0.8 / 0.5: every figure must be at these.
HIGH, MEDIUM = 0.6, 0.3
# An alert budget other than the default 100, and fraud_alerts capped at it.
K = 20


def expected_investigator(scores: dict[str, tuple[float, str]], day: dict[str, tuple[float, str | None]], labels: dict[str, bool]) -> dict:
    """Precision@k and card precision@k straight from their definitions: the day's transactions
    ranked by score, raw score (`day`: id -> (rawScore, customerId)), id; a card stands where its
    best transaction does and is compromised with one confirmed fraud."""
    ranked = sorted(scores, key=lambda t: (-scores[t][0], -day[t][0], t))
    best: list[str] = []
    for t in ranked:
        card = day[t][1]
        if card is not None and card not in best:
            best.append(card)
    compromised = {day[t][1] for t in scores if labels.get(t) and day[t][1] is not None}
    found = sum(card in compromised for card in best[:K])
    return {
        "alert_budget": K,
        "precision_at_k": sum(labels.get(t, False) for t in ranked[:K]) / min(K, len(ranked)) if labels else None,
        "labelled_at_k": sum(t in labels for t in ranked[:K]),
        "card_precision_at_k": found / min(K, len(best)) if labels else None,
        "compromised_cards_found": found,
        "compromised_cards": len(compromised),
        "cards": len(best),
        "cards_unknown": sum(day[t][1] is None for t in scores),
    }


def expected_figures(scores: dict[str, tuple[float, str]], amounts: dict[str, float], labels: dict[str, bool]) -> dict:
    ids = sorted(scores)
    s = np.array([scores[i][0] for i in ids])
    known = np.array([i in labels for i in ids])
    y = np.array([labels.get(i, False) for i in ids])
    ratio = lambda a, b: a / b if b else None  # noqa: E731
    out = {
        "model_version": ",".join(sorted({v for _, v in scores.values()})),
        "labelled": int(known.sum()),
        "label_coverage": known.sum() / len(ids),
        "fraud": int(y[known].sum()),
        "high_risk_threshold": HIGH,
        "medium_risk_threshold": MEDIUM,
    }
    for name, t in (("threshold", HIGH), ("medium_threshold", MEDIUM)):
        pos = s >= t
        tp, fp = int((pos & y & known).sum()), int((pos & ~y & known).sum())
        fn, tn = int((~pos & y & known).sum()), int((~pos & ~y & known).sum())
        out |= {
            f"realised_precision_at_{name}": ratio(tp, tp + fp),
            f"realised_recall_at_{name}": ratio(tp, tp + fn),
            f"realised_false_positive_rate_at_{name}": ratio(fp, fp + tn),
        }
    alerted, missed = s >= HIGH, y & known & (s < HIGH)
    out |= {
        "alerted": int(alerted.sum()),
        "alert_precision": ratio(int((alerted & y & known).sum()), int(alerted.sum())),
        "missed_fraud": int(missed.sum()),
        "missed_fraud_amount": sum(amounts[i] for i, m in zip(ids, missed) if m),
        "roc_auc": roc_auc_score(y[known], s[known]),
        "pr_auc": average_precision_score(y[known], s[known]),
        "accuracy": ((s[known] >= 0.5) == y[known]).mean(),
    }
    return out


def assert_figures(stored: dict, expected: dict) -> None:
    assert set(stored) == set(PERFORMANCE_KEYS)
    for key, value in expected.items():
        assert stored[key] == (pytest.approx(value, rel=1e-12, abs=1e-9) if isinstance(value, float) else value), key


def test_performance_equals_an_independent_computation_and_a_replaced_label_file_recomputes_once(aws):
    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=20_000, fraud_rate=0.03, seed=5)))
    batch = generate_daily_batch(DATE, n_transactions=1_000, seed=21, fraud_rate=0.05)
    for transaction in batch[::50]:
        transaction["customerId"] = None  # 20 transactions without a card
    put_bytes(s3, NAMES.data_bucket, daily_batch_key(DATE), batch_to_json_bytes(batch))
    amounts = {t["id"]: t["amount"] for t in batch}
    monitoring = subscribe_queue(NAMES.monitoring_topic, "performance-monitoring")

    # A recall floor no model reaches: the warning fires, and must reach the topic once only.
    defs = location_defs(
        quality_gates=QualityGates(pr_auc_floor=0.2, high_risk_precision_floor=0.0),
        performance_floors=PerformanceFloors(recall_floor=1.01),
        risk_thresholds=RiskThresholds(high_risk_threshold=HIGH, medium_risk_threshold=MEDIUM),
        alert_budget=AlertBudget(budget=K, cap_at_budget=True),
    )
    instance = DagsterInstance.ephemeral()
    assert defs.resolve_job_def("training_job").execute_in_process(instance=instance).success

    # Scored before any label came back: the day is measured with no labels, and says so.
    result = defs.resolve_job_def("inference_job").execute_in_process(instance=instance, partition_key=DATE)
    [meta] = [
        e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == "model_performance"
    ]
    assert day_performance({k: v.value for k, v in meta.items()}) is None
    first = json.loads(s3.get_object(Bucket=NAMES.metrics_bucket, Key=performance_key(DATE))["Body"].read())
    assert first["labelled"] == 0 and first["labels_source"] is None and first["realised_recall_at_threshold"] is None
    assert first["alerted"] > K  # more alerts than the budget: the cap holds some back
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    # fraud_alerts sent the budget's worth, highest first, and counted the rest.
    alerted = materialized["fraud_alerts"]
    assert alerted["alerted"].value == min(first["alerted"], K) and alerted["alert_budget"].value == K
    assert alerted["alerts_held_back"].value == max(first["alerted"] - K, 0) and alerted["high_risk"].value == first["alerted"]
    assert materialized["daily_report"]["alerts_held_back"].value == alerted["alerts_held_back"].value
    # The raw scores tell apart what calibration tied: the day's scores table has them.
    scored_uri = materialized["daily_scores"]["scores_uri"].value
    bucket, key = scored_uri.removeprefix("s3://").split("/", 1)
    raw = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    cards = {t["id"]: t["customerId"] for t in batch}
    day = {t: (r, cards[t]) for t, r in zip(raw["transactionId"], raw["rawScore"])}
    assert first["alert_budget"] == K and first["precision_at_k"] is None and first["card_precision_at_k"] is None
    assert (first["cards_unknown"], first["labelled_at_k"]) == (20, 0)

    scores = stored_scores(DATE)
    assert len(scores) == len(batch)
    sensor = defs.resolve_sensor_def("label_file_sensor")
    job = defs.resolve_job_def("model_performance_job")
    cursor = None

    def tick():
        nonlocal cursor
        context = build_sensor_context(
            instance=instance, definitions=defs, cursor=cursor, resources={"s3": S3Resource(), "platform": FraudPlatform()}
        )
        requests = sensor(context)
        cursor = context.cursor
        return requests if isinstance(requests, list) else []

    assert tick() == []

    # Labels for 60% of the day, fraud more likely the higher the score, and the file's mistakes:
    # a label for a transaction the day never had, a repeated label, a contradiction, a non-boolean.
    rng = np.random.default_rng(3)
    ids = sorted(scores)
    chosen = rng.choice(len(ids), size=int(0.6 * len(ids)), replace=False)
    labels = {ids[i]: bool(rng.random() < 0.05 + 0.9 * scores[ids[i]][0]) for i in chosen}
    unlabelled = [i for i in ids if i not in labels]
    records = [{"transactionId": t, "isFraud": f, "labelledAt": "2026-03-09T10:00:00Z", "source": "chargeback"} for t, f in labels.items()]
    records += [
        {**records[0], "transactionId": "TXN-NOT-A-DAY-TXN"},
        records[1],
        {**records[0], "transactionId": unlabelled[0], "isFraud": True},
        {**records[0], "transactionId": unlabelled[0], "isFraud": False, "source": "analyst"},
        {**records[0], "transactionId": unlabelled[1], "isFraud": "yes"},
    ]

    def publish(body: list[dict]) -> tuple[str, str | None]:
        put_bytes(s3, NAMES.data_bucket, label_file_key(DATE), json.dumps(body).encode(), "application/json")
        head = s3.head_object(Bucket=NAMES.data_bucket, Key=label_file_key(DATE))
        return head["ETag"].strip('"'), head.get("VersionId")  # the data bucket is versioned

    etag, version = publish(records)
    [request] = tick()
    assert request.partition_key == DATE and etag in request.run_key
    assert tick() == []  # the same file: nothing more to do
    run = job.execute_in_process(instance=instance, partition_key=DATE)
    checks = {c.check_name: c for c in run.get_asset_check_evaluations()}
    assert not checks["labels_clean"].passed and checks["labels_clean"].description == (
        f"5 of {len(records)} labels quarantined: conflicting_label 2, duplicate_label 1, non_boolean 1, unknown_transaction 1"
    )
    assert not checks["realised_recall"].passed and checks["realised_recall"].severity.value == "WARN"
    stored = json.loads(s3.get_object(Bucket=NAMES.metrics_bucket, Key=performance_key(DATE))["Body"].read())
    assert_figures(stored, expected_figures(scores, amounts, labels) | expected_investigator(scores, day, labels))
    assert 0 < stored["precision_at_k"] <= 1 and 0 < stored["card_precision_at_k"] <= 1 and stored["compromised_cards_found"] > 0
    assert stored["compromised_cards_found"] <= min(K, stored["compromised_cards"]) and stored["labelled_at_k"] <= K
    assert stored["labels_source"] == {"uri": f"s3://{NAMES.data_bucket}/{label_file_key(DATE)}", "etag": etag, "version_id": version}
    assert stored["fraud"] > 0 and stored["missed_fraud"] > 0 and stored["alert_precision"] < 1
    [meta] = [
        e.event_specific_data.materialization.metadata
        for e in run.get_asset_materialization_events()
        if e.event_specific_data.materialization.asset_key.to_user_string() == "model_performance"
    ]
    assert day_performance({k: v.value for k, v in meta.items()}) == {k: stored[k] for k in PERFORMANCE_SUMMARY}
    assert meta["roc_auc"].value == stored["roc_auc"]
    # The investigator measures are metadata too, so the UI plots them per day.
    assert (meta["alert_budget"].value, meta["precision_at_k"].value, meta["card_precision_at_k"].value) == (
        K,
        stored["precision_at_k"],
        stored["card_precision_at_k"],
    )
    # CloudWatch has the figures under the roll-up the template's alarms watch and per model version;
    # the day without labels sent none of them.
    endpoint, version_dims = NAMES.endpoint_name, {"EndpointName": NAMES.endpoint_name, "ModelVersion": stored["model_version"]}
    assert metric("RealisedRecall", "SampleCount", EndpointName=endpoint) == 1
    first_recall = stored["realised_recall_at_threshold"]
    assert metric("RealisedRecall", "Maximum", EndpointName=endpoint) == pytest.approx(first_recall)
    assert metric("RealisedPrecision", "Maximum", **version_dims) == pytest.approx(stored["realised_precision_at_threshold"])
    assert metric("RealisedAccuracy", "Maximum", **version_dims) == pytest.approx(stored["accuracy"])
    assert metric("AlertPrecision", "Maximum", **version_dims) == pytest.approx(stored["alert_precision"])

    # The same inputs again: the file is not touched and no second notice goes out.
    before = s3.head_object(Bucket=NAMES.metrics_bucket, Key=performance_key(DATE))
    assert job.execute_in_process(instance=instance, partition_key=DATE).success
    after = s3.head_object(Bucket=NAMES.metrics_bucket, Key=performance_key(DATE))
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert metric("RealisedRecall", "SampleCount", EndpointName=endpoint) == 1
    [notice] = drain(monitoring)
    assert notice["batchDate"] == DATE and "recall at the high-risk threshold" in notice["warnings"][0]

    # A fuller file replaces it: one run for the change, then nothing until the next one.
    labels |= {t: bool(rng.random() < 0.05 + 0.9 * scores[t][0]) for t in unlabelled}
    fuller = [{"transactionId": t, "isFraud": f, "labelledAt": "2026-03-12T10:00:00Z", "source": "analyst"} for t, f in labels.items()]
    etag, version = publish(fuller)
    [request] = tick()
    assert etag in request.run_key and tick() == []
    assert job.execute_in_process(instance=instance, partition_key=DATE).success
    stored = json.loads(s3.get_object(Bucket=NAMES.metrics_bucket, Key=performance_key(DATE))["Body"].read())
    assert_figures(stored, expected_figures(scores, amounts, labels) | expected_investigator(scores, day, labels))
    assert stored["labelled"] == len(batch) and stored["labelled_at_k"] == K and stored["label_coverage"] == 1.0
    assert (stored["labels_source"]["etag"], stored["labels_source"]["version_id"]) == (etag, version)
    assert metric("RealisedRecall", "SampleCount", EndpointName=endpoint) == 2
    both = sorted([first_recall, stored["realised_recall_at_threshold"]])
    assert [metric("RealisedRecall", stat, EndpointName=endpoint) for stat in ("Minimum", "Maximum")] == pytest.approx(both)
    assert drain(monitoring) == []  # same model, same breached floor: already announced


def test_label_requests_one_per_change_and_none_for_what_is_already_measured():
    scored = {"2026-03-01", "2026-03-02", "2026-03-03"}.__contains__
    measured = {"2026-03-01": "a1", "2026-03-03": "c1"}.get
    requests, cursor = label_requests({"2026-03-01": "a1", "2026-03-02": "b1", "2026-03-04": "d1"}, {}, scored, measured)
    # 03-01 was measured from this very file by its inference run; 03-04 is not scored yet.
    assert [r["run_key"] for r in requests] == ["labels-2026-03-02-b1"]
    assert cursor == {"2026-03-01": "a1", "2026-03-02": "b1"}
    assert label_requests({"2026-03-01": "a1", "2026-03-02": "b1"}, cursor, scored, measured) == ([], cursor)
    # A changed file and a removed one (03-01, measured with labels) each recompute their day once.
    requests, cursor = label_requests({"2026-03-02": "b2"}, cursor, scored, measured)
    assert [(r["partition"], r["run_key"]) for r in requests] == [
        ("2026-03-02", "labels-2026-03-02-b2"),
        ("2026-03-01", "labels-2026-03-01-removed-a1"),
    ]
    assert cursor == {"2026-03-02": "b2"}
