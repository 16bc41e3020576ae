"""Realised-performance arithmetic without a stack: undefined figures are null, not zero; the counts
reconcile on any table; alert precision counts unlabelled alerts as not (yet) confirmed."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.inference.performance import (
    PERFORMANCE_KEYS,
    alert_precision_best_case,
    join_labels,
    realised_performance,
)

SOURCE = {"uri": "s3://fraud-detection-data/labels/2026-03-01.json", "etag": "e1", "version_id": None}


def table(rows: list[tuple[float, bool | None]], version: str = "v1", amount: float = 10.0) -> pd.DataFrame:
    ids = [f"T-{i}" for i in range(len(rows))]
    scores = pd.DataFrame({"transactionId": ids, "fraudScore": [s for s, _ in rows], "modelVersion": version})
    transactions = pd.DataFrame({"transactionId": ids, "amount": amount})
    labels = pd.DataFrame(
        [(t, f, "2026-03-05T00:00:00Z", "chargeback") for t, (_, f) in zip(ids, rows) if f is not None],
        columns=["transactionId", "isFraud", "labelledAt", "source"],
    )
    return join_labels(scores, transactions, labels)


# The original design's thresholds, as a model released with the fixed policy records them.
SEEDS = dict(high_threshold=0.8, medium_threshold=0.5)


def test_a_day_without_labels_has_counts_and_nulls_not_zeros():
    record = realised_performance(table([(0.9, None), (0.1, None)]), "2026-03-01", None, **SEEDS)
    assert list(record) == list(PERFORMANCE_KEYS)
    assert record | {"computed_at": None} == {
        "date": "2026-03-01",
        "model_version": "v1",
        "labelled": 0,
        "label_coverage": 0.0,
        "fraud": 0,
        "high_risk_threshold": 0.8,
        "medium_risk_threshold": 0.5,
        "realised_precision_at_threshold": None,
        "realised_recall_at_threshold": None,
        "realised_false_positive_rate_at_threshold": None,
        "realised_precision_at_medium_threshold": None,
        "realised_recall_at_medium_threshold": None,
        "realised_false_positive_rate_at_medium_threshold": None,
        "alert_precision": None,
        "alerted": 1,
        "missed_fraud": 0,
        "missed_fraud_amount": 0.0,
        "roc_auc": None,
        "pr_auc": None,
        "accuracy": None,
        # Two transactions, neither with a card (this table has no customerId), no label yet.
        "alert_budget": 100,
        "precision_at_k": None,
        "labelled_at_k": 0,
        "card_precision_at_k": None,
        "compromised_cards_found": 0,
        "compromised_cards": 0,
        "cards": 0,
        "cards_unknown": 2,
        "labels_source": None,
        "computed_at": None,
    }


def test_figures_of_a_small_day_by_hand():
    # Scores 0.95 fraud, 0.85 legit, 0.6 fraud, 0.3 fraud, 0.1 legit, 0.9 unlabelled.
    joined = table([(0.95, True), (0.85, False), (0.6, True), (0.3, True), (0.1, False), (0.9, None)], amount=5.0)
    record = realised_performance(joined, "2026-03-01", SOURCE, **SEEDS)
    assert (record["labelled"], record["fraud"], record["label_coverage"]) == (5, 3, 5 / 6)
    at_high = ("realised_precision_at_threshold", "realised_recall_at_threshold", "realised_false_positive_rate_at_threshold")
    at_medium = tuple(k.replace("_at_threshold", "_at_medium_threshold") for k in at_high)
    assert tuple(record[k] for k in at_high) == (0.5, 1 / 3, 0.5)
    assert tuple(record[k] for k in at_medium) == (2 / 3, 2 / 3, 0.5)
    # Three alerts (0.95, 0.85, 0.9), one confirmed; the unlabelled one could still be.
    assert (record["alerted"], record["alert_precision"], alert_precision_best_case(joined, 0.8)) == (3, 1 / 3, 2 / 3)
    assert (record["missed_fraud"], record["missed_fraud_amount"]) == (2, 10.0)
    assert record["accuracy"] == 3 / 5 and record["roc_auc"] == pytest.approx(4 / 6) and record["labels_source"] == SOURCE


def test_one_class_has_no_auc_and_a_mixed_day_names_every_version():
    record = realised_performance(table([(0.2, False), (0.9, False)]), "2026-03-01", SOURCE, **SEEDS)
    assert record["roc_auc"] is None and record["pr_auc"] is None and record["realised_recall_at_threshold"] is None
    assert record["realised_false_positive_rate_at_threshold"] == 0.5 and record["accuracy"] == 0.5
    mixed = pd.concat([table([(0.2, False)], "v2"), table([(0.9, True)], "v1").assign(transactionId="T-9")])
    assert realised_performance(mixed, "2026-03-01", SOURCE, **SEEDS)["model_version"] == "v1,v2"


def test_a_label_for_an_unscored_transaction_is_refused_by_the_join():
    with pytest.raises(ValueError, match="'T-0' is not among the day's transactions"):
        join_labels(
            pd.DataFrame({"transactionId": ["T-0"], "fraudScore": [0.5], "modelVersion": ["v1"]}),
            pd.DataFrame({"transactionId": ["T-1"], "amount": [1.0]}),
            pd.DataFrame(columns=["transactionId", "isFraud", "labelledAt", "source"]),
        )


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.sampled_from([True, False, None])), min_size=1, max_size=40),
    st.floats(0.05, 1.0),
)
def test_counts_reconcile_on_any_day_at_the_models_threshold(rows, high):
    # Whatever threshold the model was released with, every figure is at that one and records it.
    joined = table(rows)
    record = realised_performance(joined, "2026-03-01", SOURCE, high_threshold=high, medium_threshold=high / 2)
    assert record["high_risk_threshold"] == high
    labelled = [(s, f) for s, f in rows if f is not None]
    assert record["labelled"] == len(labelled) and record["fraud"] == sum(f for _, f in labelled)
    caught = sum(1 for s, f in labelled if f and s >= high)
    assert record["missed_fraud"] + caught == record["fraud"]
    assert record["alerted"] == sum(s >= high for s, _ in rows)
    if record["fraud"]:
        assert record["realised_recall_at_threshold"] == caught / record["fraud"]
    if record["alerted"] and record["labelled"]:
        assert record["alert_precision"] == caught / record["alerted"] <= alert_precision_best_case(joined, high)
    else:
        assert record["alert_precision"] is None
    for key in (
        "realised_precision_at_threshold",
        "realised_recall_at_threshold",
        "realised_false_positive_rate_at_medium_threshold",
        "accuracy",
        "roc_auc",
        "pr_auc",
    ):
        assert record[key] is None or 0.0 <= record[key] <= 1.0
