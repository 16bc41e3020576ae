"""Reasons on alerts: TreeSHAP contributions from xgboost's pred_contribs, ranked, and carried by
alerts and FraudScores items."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fraud_assets.lib.config import FEATURE_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.inference import reasons as reasons_lib
from fraud_assets.lib.inference.alerts import high_risk_alerts
from fraud_assets.lib.inference.score_store import to_items
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training.model import train_model

FEATURES = list(FEATURE_COLUMNS)


@pytest.fixture(scope="module")
def model():
    data = generate_transactions(n_rows=20_000, seed=3)
    return train_model(data.iloc[:15_000], data.iloc[15_000:], {"num_round": 40}), data.iloc[15_000:]


def test_contributions_add_up_to_the_margin_and_the_probability_is_the_models(model):
    trained, rows = model
    features = rows[FEATURES].to_numpy(np.float32)[:500]
    explanation = reasons_lib.explain(trained.booster, features, FEATURES)
    assert explanation.contributions.shape == (500, len(FEATURES) + 1)
    assert explanation.additivity_error <= reasons_lib.ADDITIVITY_TOLERANCE
    np.testing.assert_allclose(explanation.probabilities, trained.predict(features), atol=reasons_lib.SCORE_TOLERANCE)


def test_no_rows_no_reasons(model):
    trained, _ = model
    explanation = reasons_lib.explain(trained.booster, np.empty((0, len(FEATURES)), np.float32), FEATURES)
    assert explanation.additivity_error == 0.0
    table = reasons_lib.reason_table([], np.empty((0, len(FEATURES))), explanation, FEATURES)
    assert table.empty and list(table.columns) == list(reasons_lib.REASON_COLUMNS)
    assert reasons_lib.reasons_by_transaction(table) == {}


@settings(max_examples=50, deadline=None)
@given(contribs=arrays(np.float32, (4, 6), elements=st.floats(-5, 5, width=32)), top=st.integers(1, 5))
def test_reason_table_ranks_the_largest_contributions_first(contribs, top):
    names = [f"f{i}" for i in range(5)]
    values = np.arange(20, dtype=np.float32).reshape(4, 5)
    explanation = reasons_lib.Explanation(contributions=contribs, margins=contribs.sum(axis=1).astype(np.float64))
    table = reasons_lib.reason_table(["a", "b", "c", "d"], values, explanation, names, top)
    assert len(table) == 4 * top
    for i, tid in enumerate("abcd"):
        rows = table[table[TRANSACTION_ID] == tid]
        assert rows["rank"].tolist() == list(range(1, top + 1))
        # the chosen ones are the top-k contributions, in descending order, each with its own value
        assert rows["contribution"].tolist() == sorted(contribs[i, :5].astype(float).tolist(), reverse=True)[:top]
        for feature, value in zip(rows["feature"], rows["value"]):
            assert value == values[i, names.index(feature)]


def test_alerts_and_items_carry_the_reasons():
    reasons = {"t1": [{"feature": "V14", "value": -7.5, "contribution": 2.25}]}
    scored = pd.DataFrame(
        {
            TRANSACTION_ID: ["t1", "t2"],
            "timestamp": ["2026-03-01T10:00:00Z"] * 2,
            "fraudScore": [0.95, 0.1],
            "riskLevel": ["HIGH", "LOW"],
            "scoringTimestamp": ["2026-03-02T00:00:00Z"] * 2,
            "modelVersion": "m",
            "endpointName": "e",
        }
    )
    transactions = pd.DataFrame(
        {
            TRANSACTION_ID: ["t1", "t2"],
            "amount": [10.0, 2.0],
            "merchant": ["m1", "m2"],
            "customerId": ["c1", "c2"],
            "category": ["x", "y"],
            "timestamp": ["2026-03-01T10:00:00Z"] * 2,
        }
    )
    [alert] = high_risk_alerts(scored, transactions, reasons=reasons)
    assert alert["topReasons"] == reasons["t1"]
    items = {i[TRANSACTION_ID]: i for i in to_items(scored, "2026-03-01", reasons=reasons)}
    assert [(r["feature"], float(r["value"]), float(r["contribution"])) for r in items["t1"]["topReasons"]] == [("V14", -7.5, 2.25)]
    assert "topReasons" not in items["t2"]
