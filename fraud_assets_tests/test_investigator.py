"""Investigator measures without a stack: precision@k and card precision@k by hand and against a
brute-force reference, the alerts' ranking on a whole day, the budget's cap, and the alert budget
resource read from FRAUD_ALERT_BUDGET / FRAUD_ALERT_CAP_AT_BUDGET."""

from __future__ import annotations

import math

import dagster as dg
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.defs.resources import AlertBudget, resources
from fraud_assets.lib.inference.alerts import alert_rank_key, cap_alerts, rank_alerts, rank_order
from fraud_assets.lib.inference.investigator import INVESTIGATOR_KEYS, investigator_measures
from fraud_assets.lib.inference.summaries import AlertSummary, MissingSummaryKey


def day(rows: list[tuple], raw: bool = True) -> pd.DataFrame:
    """(score, raw score, card or None, label True/False/None) per transaction, ids T-0, T-1, ..."""
    frame = pd.DataFrame(
        {
            "transactionId": [f"T-{i}" for i in range(len(rows))],
            "fraudScore": [r[0] for r in rows],
            "rawScore": [r[1] for r in rows],
            "customerId": pd.Series([r[2] for r in rows], dtype=object),
            "isFraud": pd.array([r[3] for r in rows], dtype="boolean"),
        }
    )
    return frame if raw else frame.drop(columns="rawScore")


SMALL = [
    (0.9, 0.90, "C1", True),  # T-0
    (0.9, 0.95, "C2", False),  # T-1: ties T-0 on the score, first on the raw score
    (0.8, 0.80, "C1", False),  # T-2
    (0.7, 0.70, "C3", None),  # T-3: not labelled yet
    (0.6, 0.60, None, True),  # T-4: no card
    (0.5, 0.50, "C3", True),  # T-5
    (0.1, 0.10, "C4", False),  # T-6
]


def test_precision_and_card_precision_at_k_of_a_small_day_by_hand():
    # Ranked T-1, T-0, T-2, T-3, T-4, T-5, T-6. Cards by their best transaction: C2, C1, C3, C4;
    # compromised: C1 (T-0) and C3 (T-5, though its best-ranked transaction is unlabelled).
    at3 = investigator_measures(day(SMALL), 3)
    assert list(at3) == list(INVESTIGATOR_KEYS)
    assert at3 == {
        "alert_budget": 3,
        "precision_at_k": 1 / 3,  # T-0 of T-1, T-0, T-2
        "labelled_at_k": 3,
        "card_precision_at_k": 2 / 3,  # C1 and C3 of C2, C1, C3
        "compromised_cards_found": 2,
        "compromised_cards": 2,
        "cards": 4,
        "cards_unknown": 1,
    }
    at5 = investigator_measures(day(SMALL), 5)
    assert (at5["precision_at_k"], at5["labelled_at_k"]) == (2 / 5, 4)  # T-0 and T-4 (no card, still counted)
    assert (at5["card_precision_at_k"], at5["compromised_cards_found"]) == (2 / 4, 2)  # only 4 cards: divided by 4
    at2 = investigator_measures(day(SMALL), 2)
    assert (at2["precision_at_k"], at2["card_precision_at_k"], at2["compromised_cards_found"]) == (1 / 2, 1 / 2, 1)
    # A day smaller than k is judged on what it has.
    at100 = investigator_measures(day(SMALL), 100)
    assert (at100["precision_at_k"], at100["card_precision_at_k"]) == (3 / 7, 2 / 4)


def test_equal_scores_go_by_the_raw_score_then_the_id_as_the_alerts_do():
    assert investigator_measures(day(SMALL), 1)["precision_at_k"] == 0.0  # T-1 (raw 0.95) first: legit
    assert investigator_measures(day(SMALL, raw=False), 1)["precision_at_k"] == 1.0  # without raw scores, T-0 by id


def test_no_labels_no_cards_and_blank_cards():
    unlabelled = investigator_measures(day([(0.9, 0.9, "C1", None), (0.2, 0.2, "C2", None)]), 100)
    assert unlabelled["precision_at_k"] is None and unlabelled["card_precision_at_k"] is None
    assert (unlabelled["labelled_at_k"], unlabelled["cards"], unlabelled["compromised_cards"]) == (0, 2, 0)
    # Blank and missing customer ids belong to no card; their fraud still counts for precision@k.
    cardless = investigator_measures(day([(0.9, 0.9, "", True), (0.8, 0.8, "  ", False), (0.7, 0.7, None, True)]), 2)
    assert cardless["precision_at_k"] == 1 / 2 and cardless["card_precision_at_k"] is None
    assert (cardless["cards"], cardless["cards_unknown"]) == (0, 3)
    without_column = investigator_measures(day(SMALL).drop(columns="customerId"), 3)
    assert without_column["cards"] == 0 and without_column["cards_unknown"] == len(SMALL)
    empty = investigator_measures(day([]), 10)
    assert empty["precision_at_k"] is None and empty["cards"] == 0
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="alert budget"):
            investigator_measures(day(SMALL), bad)


def brute_force(rows: list[tuple], k: int) -> dict:
    """The handbook's definitions straight from the rows, ranked with alert_rank_key."""
    items = [
        {"transactionId": f"T-{i}", "fraudScore": s, "rawScore": r, "card": c, "fraud": f is True, "labelled": f is not None}
        for i, (s, r, c, f) in enumerate(rows)
    ]
    ranked = sorted(items, key=alert_rank_key)
    any_label = any(i["labelled"] for i in items)
    top = ranked[:k]
    best: dict[str, tuple] = {}
    compromised: dict[str, bool] = {}
    for item in items:
        card = item["card"]
        if card is None or not card.strip():
            continue
        key = alert_rank_key(item)
        best[card] = min(best.get(card, key), key)
        compromised[card] = compromised.get(card, False) or item["fraud"]
    top_cards = sorted(best, key=best.__getitem__)[:k]
    found = sum(compromised[c] for c in top_cards)
    return {
        "precision_at_k": sum(i["fraud"] for i in top) / len(top) if any_label and top else None,
        "labelled_at_k": sum(i["labelled"] for i in top),
        "card_precision_at_k": found / len(top_cards) if any_label and top_cards else None,
        "compromised_cards_found": found,
        "compromised_cards": sum(compromised.values()),
        "cards": len(best),
        "cards_unknown": sum(1 for i in items if i["card"] is None or not i["card"].strip()),
    }


# Few distinct values: ties on the score, on both scores and many transactions per card are the rule.
ROWS = st.lists(
    st.tuples(
        st.sampled_from([0.1, 0.5, 0.8, 1.0]),
        st.sampled_from([0.2, 0.6, 0.9, 0.99]),
        st.sampled_from([None, "", "C1", "C2", "C3", "C4", "C5", "C6"]),
        st.sampled_from([True, False, None]),
    ),
    max_size=50,
)


@settings(max_examples=150, deadline=None)
@given(ROWS, st.integers(1, 60), st.randoms(use_true_random=False))
def test_measures_equal_a_brute_force_reference_whatever_the_row_order(rows, k, rnd):
    frame = day(rows)
    measures = investigator_measures(frame, k)
    assert measures == {"alert_budget": k, **brute_force(rows, k)}
    shuffled = frame.sample(frac=1.0, random_state=rnd.randrange(2**32)).reset_index(drop=True)
    assert investigator_measures(shuffled, k) == measures
    for key in ("precision_at_k", "card_precision_at_k"):
        assert measures[key] is None or 0.0 <= measures[key] <= 1.0
    assert measures["compromised_cards_found"] <= min(k, measures["compromised_cards"], measures["cards"])
    assert measures["cards"] + measures["cards_unknown"] <= len(rows)
    # A budget covering the whole day finds every compromised card.
    assert investigator_measures(frame, max(len(rows), 1))["compromised_cards_found"] == measures["compromised_cards"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.8, 0.9, 1.0, math.nan]), st.sampled_from([0.85, 0.95, 0.999, math.nan, None])),
        max_size=40,
    ),
    st.randoms(use_true_random=False),
)
def test_a_whole_day_is_ranked_as_rank_alerts_ranks_its_rows(pairs, rnd):
    alerts = [{"transactionId": f"T-{i:02d}", "fraudScore": s, "rawScore": r} for i, (s, r) in enumerate(pairs)]
    rnd.shuffle(alerts)
    frame = pd.DataFrame(alerts, columns=["transactionId", "fraudScore", "rawScore"])
    assert [alerts[i]["transactionId"] for i in rank_order(frame)] == [a["transactionId"] for a in rank_alerts(alerts)]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.8, 0.9, 1.0]), st.sampled_from([0.85, 0.95, 0.999])), max_size=60), st.integers(1, 80))
def test_the_cap_keeps_the_top_k_by_the_ranking_and_counts_the_rest(pairs, budget):
    alerts = [{"transactionId": f"T-{i:02d}", "fraudScore": s, "rawScore": r} for i, (s, r) in enumerate(pairs)]
    kept, held_back = cap_alerts(alerts[::-1], budget)
    assert kept == rank_alerts(alerts)[:budget]
    assert held_back == max(len(alerts) - budget, 0) and len(kept) + held_back == len(alerts)
    assert cap_alerts(alerts, budget) == (kept, held_back)  # the same alerts, the same cut
    assert cap_alerts(alerts, None) == (rank_alerts(alerts), 0)
    with pytest.raises(ValueError, match="at least 1"):
        cap_alerts(alerts, 0)


def test_an_alert_summary_written_before_the_budget_asks_for_fraud_alerts_again():
    # As every summary shape does: the reader names what is missing instead of guessing "not capped".
    old = {"date": "2024-05-01", "high_risk_count": 3, "alerts_sent": 1, "batch_count": 1, "sent_message_keys": ["k"]}
    with pytest.raises(MissingSummaryKey, match="'alerts_held_back', 'alert_budget'.*Materialise fraud_alerts"):
        AlertSummary.from_summary({**old, "skipped_message_keys": []})


def test_the_alert_budget_resource_reads_its_variables_and_refuses_less_than_one(monkeypatch):
    monkeypatch.delenv("FRAUD_ALERT_BUDGET", raising=False)
    monkeypatch.delenv("FRAUD_ALERT_CAP_AT_BUDGET", raising=False)
    default = resources().resources["alert_budget"]
    assert (default.budget, default.cap_at_budget) == (100, False)

    monkeypatch.setenv("FRAUD_ALERT_BUDGET", "7")
    monkeypatch.setenv("FRAUD_ALERT_CAP_AT_BUDGET", "1")
    bound = resources().resources["alert_budget"]
    assert bound.cap_at_budget is True

    @dg.asset
    def budget_seen(alert_budget: AlertBudget) -> int:
        return alert_budget.budget

    assert dg.materialize([budget_seen], resources={"alert_budget": bound}).output_for_node("budget_seen") == 7
    monkeypatch.setenv("FRAUD_ALERT_BUDGET", "0")  # resolved when the run starts, and refused there
    with pytest.raises(dg.DagsterResourceFunctionError) as refused:
        dg.materialize([budget_seen], resources={"alert_budget": resources().resources["alert_budget"]})
    assert "at least 1, not 0" in str(refused.value.__cause__)
    with pytest.raises(ValueError, match="at least 1"):
        AlertBudget(budget=0)
