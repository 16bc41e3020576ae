"""The history aggregates in DynamoDB (lib/features/store.py), against the local stack's moto
server: per-customer and per-terminal items, idempotent per batch day, exact round trip, and a
malformed item named by its key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud_assets.lib.features import store

DAY = store.day_index("2026-03-10")
MICROS = store.MICROS_PER_DAY


def rows(customers: list[str], days: list[int], seconds: list[int], amounts: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customerId": customers,
            "micros": [d * MICROS + s * 1_000_000 for d, s in zip(days, seconds)],
            "Amount": amounts,
            "batch_day": days,
        }
    )


def test_customer_history_round_trips_exactly_and_only_the_window_before_the_day_is_read(aws):
    ddb, table = aws.client("dynamodb"), aws.names.aggregates_table
    amounts = [0.1 + 0.2, 1e-7, 12345.67, 88.0]  # values whose decimal text must round-trip bit for bit
    written = rows(["C-1", "C-1", "C-2", "C-1"], [DAY - 31, DAY - 30, DAY - 1, DAY], [5, 7, 86_399, 0], amounts)
    for day in sorted(set(written["batch_day"])):
        store.write_customer_days(ddb, table, written[written["batch_day"] == day])
    history = store.read_customer_history(ddb, table, ["C-1", "C-2", "C-unknown"], DAY)
    got = history.sort_values(["customerId", "micros"]).reset_index(drop=True)
    want = written.iloc[[1, 2]].loc[:, ["customerId", "micros", "Amount"]].sort_values(["customerId", "micros"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["Amount"].tolist() == [1e-7, 12345.67]  # exact, not approximately


def test_writing_a_batch_day_again_replaces_it_instead_of_counting_it_twice(aws):
    ddb, table = aws.client("dynamodb"), aws.names.aggregates_table
    day_before = rows(["C-1"], [DAY - 1], [10], [5.0])
    day = rows(["C-1", "C-1"], [DAY, DAY], [20, 30], [6.0, 7.0])
    store.write_customer_days(ddb, table, day_before)
    store.write_customer_days(ddb, table, day)
    store.write_customer_days(ddb, table, day)  # a retry, a re-materialisation
    store.write_customer_days(ddb, table, day_before)  # a backfill of an earlier day, out of order
    history = store.read_customer_history(ddb, table, ["C-1"], DAY + 1)
    assert sorted(history["Amount"].tolist()) == [5.0, 6.0, 7.0]


def test_entries_older_than_the_retention_are_dropped_when_a_newer_day_is_written(aws):
    ddb, table = aws.client("dynamodb"), aws.names.aggregates_table
    store.write_customer_days(ddb, table, rows(["C-1"], [DAY - store.RETENTION_DAYS], [1], [1.0]))
    store.write_customer_days(ddb, table, rows(["C-1"], [DAY], [1], [2.0]))
    item = ddb.get_item(TableName=table, Key={store.ENTITY_KEY: {"S": "customer#C-1"}})["Item"]
    assert [int(v["N"]) for v in item["txBatchDays"]["L"]] == [DAY]
    assert int(item[store.TTL_ATTRIBUTE]["N"]) == (DAY + store.RETENTION_DAYS + 1) * 86_400


def test_terminal_days_are_set_per_day_and_read_back_for_the_asked_days_only(aws):
    ddb, table = aws.client("dynamodb"), aws.names.aggregates_table
    counts = pd.DataFrame({"merchant": ["T-1", "T-1", "T-2"], "day": [DAY - 3, DAY - 2, DAY - 2], "tx": [10, 4, 7], "fraud": [1, 0, 7]})
    assert store.write_terminal_days(ddb, table, counts, keep_days=32) == 2  # one call per terminal
    store.write_terminal_days(ddb, table, counts.iloc[[0]].assign(tx=11), keep_days=32)  # a fuller label file
    got = store.read_terminal_counts(ddb, table, ["T-1", "T-2", "T-3"], DAY - 3, DAY - 3)
    assert got.to_dict("records") == [{"merchant": "T-1", "day": DAY - 3, "tx": 11, "fraud": 1}]
    both = store.read_terminal_counts(ddb, table, ["T-1", "T-2"], DAY - 30, DAY - 1)
    assert sorted(map(tuple, both.to_numpy().tolist())) == [("T-1", DAY - 3, 11, 1), ("T-1", DAY - 2, 4, 0), ("T-2", DAY - 2, 7, 7)]


@pytest.mark.parametrize(
    ("item", "attribute"),
    [
        ({"txBatchDays": {"L": [{"N": "1"}]}, "txMicros": {"L": [{"N": "1"}]}, "txAmounts": {"S": "12.5"}}, "txAmounts"),
        ({"txBatchDays": {"L": [{"N": "1"}]}, "txMicros": {"L": []}, "txAmounts": {"L": [{"N": "1"}]}}, "txMicros"),
    ],
)
def test_a_malformed_customer_item_fails_naming_its_key_and_attribute(aws, item, attribute):
    ddb, table = aws.client("dynamodb"), aws.names.aggregates_table
    ddb.put_item(TableName=table, Item={store.ENTITY_KEY: {"S": "customer#C-9"}, **item})
    with pytest.raises(store.AggregateItemError, match=f"item 'customer#C-9', attribute '{attribute}'"):
        store.read_customer_history(ddb, table, ["C-9"], DAY)


def test_a_malformed_terminal_day_fails_naming_its_key(aws):
    ddb, table = aws.client("dynamodb"), aws.names.aggregates_table
    ddb.put_item(TableName=table, Item={store.ENTITY_KEY: {"S": "terminal#T-9"}, "day#2026-03-01": {"L": [{"N": "2"}, {"N": "5"}]}})
    with pytest.raises(store.AggregateItemError, match="item 'terminal#T-9', attribute 'day#2026-03-01'"):
        store.read_terminal_counts(ddb, table, ["T-9"], DAY - 30, DAY)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 40), st.integers(0, 86_399), st.floats(0, 1e5)), max_size=40),
    st.randoms(use_true_random=False),
)
def test_any_order_of_day_writes_and_rewrites_leaves_what_writing_each_day_once_in_order_leaves(aws, entries, random):
    """Idempotent and order-free within the retention: the store read for the day after the last
    holds exactly the transactions of the last 30 days, however the days were (re)written."""
    aws.reset()
    ddb, table = aws.client("dynamodb"), aws.names.aggregates_table
    frame = rows([e[0] for e in entries], [DAY - e[1] for e in entries], [e[2] for e in entries], [e[3] for e in entries])
    days = sorted(set(frame["batch_day"]))
    schedule = days + random.sample(days, k=len(days) // 2)
    random.shuffle(schedule)
    for day in [*schedule, max(days, default=DAY)]:
        store.write_customer_days(ddb, table, frame[frame["batch_day"] == day])
    got = store.read_customer_history(ddb, table, ["A", "B", "C"], DAY + 1)
    window = frame[(frame["micros"] >= (DAY + 1 - store.HISTORY_DAYS) * MICROS)]
    key = ["customerId", "micros", "Amount"]
    assert sorted(map(tuple, got.loc[:, key].to_numpy().tolist())) == sorted(map(tuple, window.loc[:, key].to_numpy().tolist()))
    assert np.all(got["micros"].to_numpy() < (DAY + 1) * MICROS)
