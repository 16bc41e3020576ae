"""The inference stages' decisions, out of the assets (issue 19): the typed stage summaries and
their one casing, a day's scoring, drift record, labels and quality messages, and the metadata
contract between the assets and the sensors that read them."""

import dataclasses
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from dagster import AssetMaterialization, DagsterInstance, SkipReason, build_sensor_context
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.defs.inference.sensors import drift_retraining_sensor, performance_requests
from fraud_assets.defs.resources import RetrainingPolicy
from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.config import FEATURE_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.inference import drift as drift_lib
from fraud_assets.lib.inference import performance as perf_lib
from fraud_assets.lib.inference.scoring import HIGH, score_day
from fraud_assets.lib.inference.summaries import (
    AlertSummary,
    LabelledSummary,
    MissingSummaryKey,
    ScoreSummary,
    TransactionCounts,
)
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training.model import package_model, predict, train_model

FEATURES = list(FEATURE_COLUMNS)
DATE = "2024-05-01"
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
SUMMARIES = (TransactionCounts, ScoreSummary, AlertSummary, LabelledSummary)


def score_summary(**changes) -> ScoreSummary:
    values = dict(
        date=DATE,
        model_version="v1",
        model_uri="s3://models/v1/model.tar.gz",
        endpoint_name="fraud-detection-prod",
        record_count=10,
        high_risk_count=2,
        medium_risk_count=3,
        low_risk_count=5,
        average_score=0.3,
        explained=2,
        top_reasons=3,
        high_risk_threshold=0.8,
        medium_risk_threshold=0.5,
        calibrated=True,
    )
    return ScoreSummary(**{**values, **changes})


# -- the typed summaries ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SUMMARIES, ids=lambda s: s.__name__)
def test_every_summary_field_is_snake_case(shape):
    assert [f.name for f in dataclasses.fields(shape) if not SNAKE.match(f.name)] == []


@settings(max_examples=50, deadline=None)
@given(
    counts=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6)),
    average=st.none() | st.floats(0, 1),
    thresholds=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted),
)
def test_a_score_summary_survives_output_json(counts, average, thresholds):
    high, medium, low = counts
    summary = score_summary(
        record_count=high + medium + low,
        high_risk_count=high,
        medium_risk_count=medium,
        low_risk_count=low,
        average_score=average,
        medium_risk_threshold=thresholds[0],
        high_risk_threshold=thresholds[1],
    )
    # As the IO manager stores and loads it: JSON, with its own `artifacts` beside the fields.
    stored = json.loads(json.dumps({**summary.to_summary(), "artifacts": {"tables": {}, "files": {}}}))
    assert ScoreSummary.from_summary(stored) == summary


def test_the_other_summaries_survive_output_json():
    for summary in (
        TransactionCounts(DATE, "s3://data/daily-batches/2024-05-01.json", 12, 10, 2),
        AlertSummary(DATE, 3, 1, 1, ["k1"], [], 0, None),
        AlertSummary(DATE, 230, 2, 2, ["k1", "k2"], [], 80, 150),
        LabelledSummary(
            DATE,
            {"uri": "s3://d/l.json", "etag": "e", "version_id": None},
            "ep",
            0.8,
            0.5,
            10,
            4,
            "s3://d/l.json",
            5,
            4,
            1,
            1,
            {"unknown_transaction": 1},
        ),
    ):
        assert type(summary).from_summary(json.loads(json.dumps(summary.to_summary()))) == summary


@pytest.mark.parametrize("shape", SUMMARIES, ids=lambda s: s.__name__)
def test_a_missing_field_fails_naming_the_stage_and_the_key(shape):
    names = [f.name for f in dataclasses.fields(shape)]
    for missing in names:
        with pytest.raises(MissingSummaryKey, match=rf"^{shape.STAGE}'s summary .* no '{missing}'") as err:
            shape.from_summary({n: None for n in names if n != missing})
        assert isinstance(err.value, KeyError)


def test_a_summary_written_before_the_rename_fails_loudly():
    old = {"date": DATE, "modelVersion": "v1", "modelUri": "s3://m", "endpointName": "ep", "highRiskCount": 1}
    with pytest.raises(MissingSummaryKey, match="daily_scores's summary .*'model_version'.*'model_uri'.*Materialise daily_scores"):
        ScoreSummary.from_summary(old)


# -- daily_scores --------------------------------------------------------------------------------


class InProcessEndpoint:
    """A sagemaker-runtime client whose endpoint is the booster itself (CSV in, CSV out)."""

    def __init__(self, booster):
        self.booster, self.calls = booster, 0

    def invoke_endpoint(self, EndpointName, ContentType, Accept, Body):  # noqa: N803 (boto3's names)
        self.calls += 1
        rows = np.loadtxt(io.BytesIO(Body), delimiter=",", dtype=np.float32, ndmin=2)
        scores = predict(self.booster, rows, FEATURES)
        return {"Body": io.BytesIO("\n".join(repr(float(s)) for s in scores).encode()), "ContentType": "text/csv"}


@pytest.fixture(scope="module")
def deployed():
    data = generate_transactions(n_rows=6_000, seed=5)
    trained = train_model(data.iloc[:4_000], data.iloc[4_000:5_000], {"num_round": 20})
    day = data.iloc[5_000:].reset_index(drop=True)
    # Thresholds at the day's own quantiles: a small synthetic day still has every risk level.
    medium, high = np.quantile(predict(trained.booster, day, FEATURES), [0.5, 0.95]).astype(float)
    package = package_model(trained.booster, {"feature_names": FEATURES, "thresholds": {"high": high, "medium": medium}})
    day.insert(0, TRANSACTION_ID, [f"T-{i}" for i in range(len(day))])
    day.insert(1, "timestamp", pd.Timestamp("2024-05-01T00:00:00Z") + pd.to_timedelta(day.index, unit="s"))
    endpoint = {"endpoint_name": "ep", "model_uri": "s3://m/v7/model.tar.gz", "model_version": "v7", "feature_names": FEATURES}
    return trained, package, day, endpoint


@pytest.mark.parametrize("top", [0, 3])
def test_a_scored_day_is_the_endpoints_scores_at_the_packages_thresholds(deployed, top):
    trained, package, day, endpoint = deployed
    scored = score_day(InProcessEndpoint(trained.booster), endpoint, package, day, DATE, top)
    table, summary = scored.scores, scored.summary
    np.testing.assert_allclose(table["fraudScore"], predict(trained.booster, day, FEATURES), atol=1e-6)  # no calibration map
    assert table[TRANSACTION_ID].tolist() == day[TRANSACTION_ID].tolist()
    assert (table["modelVersion"] == "v7").all() and (table["endpointName"] == "ep").all()
    high, medium = summary.high_risk_threshold, summary.medium_risk_threshold
    assert 0 < medium < high and not summary.calibrated
    assert summary.record_count == len(day) == summary.high_risk_count + summary.medium_risk_count + summary.low_risk_count
    assert summary.high_risk_count == int((table["riskLevel"] == HIGH).sum()) == int((table["fraudScore"] >= high).sum()) > 0
    assert summary.medium_risk_count == int(((table["fraudScore"] >= medium) & (table["fraudScore"] < high)).sum()) > 0
    assert (summary.date, summary.model_uri, summary.top_reasons) == (DATE, "s3://m/v7/model.tar.gz", top)
    assert summary.explained == (summary.high_risk_count if top else 0) == len(scored.explained_raw_scores)
    assert len(scored.reasons) == summary.explained * top
    np.testing.assert_allclose(scored.explanation.probabilities, scored.explained_raw_scores, atol=1e-5)
    counts = TransactionCounts(DATE, "s3://d", len(day) + 2, len(day), 2)
    figures = scored.cloudwatch_metrics(counts)
    assert figures["TransactionsReceived"] == len(day) + 2 and figures["HighRiskCount"] == summary.high_risk_count
    assert {keys.SCORED, keys.HIGH_RISK, keys.AVG_SCORE, keys.MODEL_VERSION, keys.HIGH_RISK_THRESHOLD} <= set(scored.metadata())


# -- drift_metrics -------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(scores=st.lists(st.floats(0, 1), max_size=40), history_days=st.integers(0, 12))
def test_a_days_drift_record_follows_its_scores_and_says_what_fired(scores, history_days):
    table = pd.DataFrame({"fraudScore": scores, "rawScore": scores})
    history = [{"date": f"2024-04-{d:02d}", "count": 100, "avgScore": 0.1, "highRiskPct": 0.01} for d in range(30 - history_days + 1, 31)]
    meta = {"feature_names": FEATURES, "reference": {"validation_raw_scores": [0.1, 0.2, 0.3, 0.9] * 10}}
    day = drift_lib.assess_day(table, pd.DataFrame(), score_summary(), meta, history)
    record = day.record
    assert record["count"] == len(scores) and record["modelVersion"] == "v1" and record["date"] == DATE
    assert day.history_days == history_days and day.scored_any == bool(scores) and not day.feature_reference
    assert (record["scorePsi"] is None) == (not scores) and record["featurePsi"] == {} and record["maxFeaturePsi"] is None
    assert record["warnings"] == [w["name"] for w in drift_lib.drift_warnings(record) if not w["passed"]]
    assert day.drifted == record["driftDetected"] == day.metadata()[keys.DRIFT_DETECTED] == day.cloudwatch_metrics()["DriftDetected"]
    if history_days < 7 or not scores:
        assert not day.drifted
    message = day.monitoring_message()
    assert message["messageKey"] == f"drift-{DATE}" and message["drift"] is record


# -- labelled_scores and model_performance ----------------------------------------------------------


def test_a_labelled_day_carries_the_scoring_thresholds_and_counts_its_file():
    transactions = pd.DataFrame({TRANSACTION_ID: ["a", "b", "c"], "amount": [1.0, 2.0, 3.0]})
    scores = pd.DataFrame({TRANSACTION_ID: ["a", "b", "c"], "fraudScore": [0.9, 0.6, 0.1], "modelVersion": "v1"})
    labels = [
        {"transactionId": "a", "isFraud": True, "labelledAt": "2024-05-03T00:00:00Z", "source": "chargeback"},
        {"transactionId": "zz", "isFraud": False, "labelledAt": "2024-05-03T00:00:00Z", "source": "analyst"},
    ]
    source = {"uri": "s3://d/labels/2024-05-01.json", "etag": "e1", "version_id": None}
    day = perf_lib.label_day(
        json.dumps(labels).encode(), source, source["uri"], scores, transactions, score_summary(high_risk_threshold=0.7)
    )
    s = day.summary
    assert (s.high_risk_threshold, s.medium_risk_threshold, s.endpoint_name) == (0.7, 0.5, "fraud-detection-prod")
    assert (s.scored, s.labelled, s.received, s.accepted, s.quarantined, s.fraud) == (3, 1, 2, 1, 1, 1)
    assert s.quarantine_checks == {"unknown_transaction": 1} and s.labels_source == source
    assert day.labels_clean() == (False, "1 of 2 labels quarantined: unknown_transaction 1")
    assert day.metadata()[keys.LABELS_ETAG] == "e1" and day.metadata()[keys.LABELLED] == 1
    none_yet = perf_lib.label_day(b"[]", None, source["uri"], scores, transactions, score_summary())
    assert none_yet.metadata()[keys.LABELS_ETAG] == "" and none_yet.labels_clean() == (True, "all 0 labels accepted")


def test_the_performance_metadata_carries_what_the_sensors_and_main_job_read():
    assert {keys.LABELLED, keys.FRAUD, keys.REALISED_RECALL_AT_THRESHOLD, keys.REALISED_PRECISION_AT_THRESHOLD} <= set(
        perf_lib.PERFORMANCE_KEYS
    )
    assert {keys.ALERT_PRECISION, keys.HIGH_RISK_THRESHOLD, keys.MODEL_VERSION} <= set(perf_lib.PERFORMANCE_KEYS)
    joined = pd.DataFrame(
        {
            TRANSACTION_ID: ["a", "b"],
            "fraudScore": [0.9, 0.1],
            "modelVersion": "v1",
            "amount": [1.0, 2.0],
            "isFraud": pd.array([True, None], dtype="boolean"),
            "labelledAt": ["t", None],
            "labelSource": ["s", None],
        }
    )
    record = perf_lib.realised_performance(joined, DATE, {"etag": "e2"}, high_threshold=0.8, medium_threshold=0.5)
    meta = perf_lib.performance_metadata(record, written=True)
    for key in (keys.LABELLED, keys.FRAUD, keys.REALISED_RECALL_AT_THRESHOLD, keys.MODEL_VERSION):
        assert key in meta
    assert meta[keys.LABELS_ETAG] == "e2" and meta["performance_file_written"] is True


def test_a_floor_breach_message_is_keyed_by_version_and_floors_breached():
    record = {"date": DATE, "model_version": "v1"}
    one = perf_lib.floor_breach_message(record, [("realised_recall", "WARNING: recall 0.2 below 0.5")])
    assert one == perf_lib.floor_breach_message(record, [("realised_recall", "other words, same floor")]) | {"warnings": one["warnings"]}
    assert one["messageKey"] != perf_lib.floor_breach_message({**record, "model_version": "v2"}, [("realised_recall", "")])["messageKey"]
    two = perf_lib.floor_breach_message(record, [("realised_recall", ""), ("realised_accuracy", "")])
    assert two["messageKey"] != one["messageKey"] and one["warnings"] == ["WARNING: recall 0.2 below 0.5"]


# -- the sensors' side of the metadata contract ----------------------------------------------------


def test_an_unreadable_verdict_leaves_the_days_standing():
    _, cursor = performance_requests([(1, "2024-05-01", True)], {}, 0.0, 1.0, 3)
    _, cursor = performance_requests([(2, "2024-05-01", None)], cursor, 0.0, 1.0, 3)
    assert cursor["low_recall_partitions"] == ["2024-05-01"] and cursor["last_performance_storage_id"] == 2


def test_a_materialization_without_the_key_is_skipped_with_its_name_logged_and_the_rest_still_count(capfd):
    instance = DagsterInstance.ephemeral()
    # Written before a rename: the old key only (as model_performance wrote recall_at_0_8 once).
    instance.report_runless_asset_event(AssetMaterialization("drift_metrics", partition="2024-05-01", metadata={"drift": True}))
    instance.report_runless_asset_event(
        AssetMaterialization("model_performance", partition="2024-05-01", metadata={"recall_at_0_8": 0.1, keys.FRAUD: 9})
    )
    context = build_sensor_context(instance=instance, resources={"retraining_policy": RetrainingPolicy()})
    result = drift_retraining_sensor(context)
    assert isinstance(result, SkipReason)
    logged = "".join(capfd.readouterr())  # the sensor's logger writes to the console, not to the root logger
    assert f"no '{keys.DRIFT_DETECTED}'" in logged and f"no '{keys.REALISED_RECALL_AT_THRESHOLD}'" in logged
    cursor = json.loads(context.cursor)
    assert cursor["last_storage_id"] > 0 and cursor["last_performance_storage_id"] > cursor["last_storage_id"]

    instance.report_runless_asset_event(AssetMaterialization("drift_metrics", partition="2024-05-02", metadata={keys.DRIFT_DETECTED: True}))
    context = build_sensor_context(instance=instance, resources={"retraining_policy": RetrainingPolicy()}, cursor=context.cursor)
    requests = drift_retraining_sensor(context)
    assert [r.tags["fraud/drift_partition"] for r in requests] == ["2024-05-02"]
