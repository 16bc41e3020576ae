"""Scores into DynamoDB: items, 25-item chunks, UnprocessedItems retried until written, and the
GSI count. Service tests run against the moto server of the shared `aws` fixture."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.inference.score_store import ScoreItems, StoreError, count_items_for_date, to_items, write_scores

DATE = "2024-05-01"


def scored_frame(n: int, start: int = 0) -> pd.DataFrame:
    ids = [f"T-{i:05d}" for i in range(start, start + n)]
    scores = np.linspace(0.0, 1.0, n) if n > 1 else np.full(n, 0.93)
    return pd.DataFrame(
        {
            "transactionId": ids,
            "timestamp": pd.to_datetime([f"2024-05-01T{i % 24:02d}:00:00Z" for i in range(n)], utc=True),
            "fraudScore": scores,
            "riskLevel": np.where(scores >= 0.8, "HIGH", np.where(scores >= 0.5, "MEDIUM", "LOW")),
            "scoringTimestamp": "2024-05-02T01:00:05+00:00",
            "modelVersion": "v20240428",
            "endpointName": "fraud-detection-prod",
        }
    )


def test_items_carry_the_original_designs_attributes_with_decimal_scores():
    frame = scored_frame(3)
    frame.loc[1, "fraudScore"] = 0.1 + 0.2
    items = to_items(frame, DATE)
    assert items[1] == {
        "transactionId": "T-00001",
        "timestamp": "2024-05-01T01:00:00.000000Z",
        "batchDate": DATE,
        "fraudScore": Decimal("0.30000000000000004"),
        "riskLevel": "MEDIUM",
        "modelVersion": "v20240428",
        "endpointName": "fraud-detection-prod",
        "scoringTimestamp": "2024-05-02T01:00:05+00:00",
    }
    assert all(type(item["fraudScore"]) is Decimal for item in items)


def test_items_refuse_what_dynamodb_would_refuse():
    frame = scored_frame(2)
    frame.loc[0, "fraudScore"] = np.nan
    with pytest.raises(ValueError, match="fraudScore of 'T-00000' is nan"):
        to_items(frame, DATE)
    with pytest.raises(ValueError, match=r"lacks columns \['riskLevel'\]"):
        to_items(scored_frame(2).drop(columns="riskLevel"), DATE)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        to_items(scored_frame(2), "2024-05-01/x")


class RecordingDynamoDB:
    """An in-memory stand-in for BatchWriteItem (AWS's behaviour, not our code): rejects requests
    over 25 items or with a repeated key, and leaves the items `unprocess` chooses unprocessed."""

    def __init__(self, unprocess):
        self.unprocess, self.table, self.calls = unprocess, {}, []
        self.lock = threading.Lock()

    def batch_write_item(self, RequestItems):
        ((table, requests),) = RequestItems.items()
        keys = [(r["PutRequest"]["Item"]["transactionId"]["S"], r["PutRequest"]["Item"]["timestamp"]["S"]) for r in requests]
        assert 1 <= len(requests) <= 25 and len(set(keys)) == len(keys)
        with self.lock:
            self.calls.append(len(requests))
            left = [r for i, r in enumerate(requests) if self.unprocess(len(self.calls), i)]
            for r in requests:
                if r not in left:
                    item = r["PutRequest"]["Item"]
                    self.table.setdefault((item["transactionId"]["S"], item["timestamp"]["S"]), []).append(item)
        return {"UnprocessedItems": {table: left} if left else {}}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 140), batch_size=st.integers(1, 25), seed=st.integers(0, 2**32 - 1))
def test_every_item_is_written_exactly_once_in_chunks_of_at_most_25(n, batch_size, seed):
    rng = np.random.default_rng(seed)
    lock = threading.Lock()

    def unprocess(call: int, index: int) -> bool:
        with lock:
            return call < 30 and rng.random() < 0.3  # flaky at first, then everything goes through

    client = RecordingDynamoDB(unprocess)
    result = write_scores(
        client, "FraudScores", to_items(scored_frame(n), DATE), batch_size=batch_size, max_attempts=50, sleep=lambda _: None
    )
    assert result.written == n == len(client.table)
    assert all(len(copies) == 1 for copies in client.table.values())
    assert result.batches == -(-n // batch_size)
    assert len(client.calls) == result.batches + result.retries
    assert max(client.calls, default=0) <= batch_size


def test_repeated_keys_are_refused_before_any_write():
    items = to_items(scored_frame(3), DATE)
    items.append(dict(items[0]))
    client = RecordingDynamoDB(lambda call, index: False)
    with pytest.raises(ValueError, match="items 0 and 3 share the key transactionId='T-00000'"):
        write_scores(client, "FraudScores", items)
    assert client.calls == []


# -- against moto -------------------------------------------------------------------------------


class UnprocessingClient:
    """A real boto3 DynamoDB client, except that the first `flaky_calls` BatchWriteItem calls send
    only the first half of their items and hand the rest back as UnprocessedItems, the way
    DynamoDB does under throttling. Any other method goes straight to the real client."""

    def __init__(self, client, flaky_calls: int):
        self.client, self.flaky_calls, self.calls = client, flaky_calls, 0
        self.lock = threading.Lock()

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]):
        with self.lock:
            self.calls += 1
            flaky = self.calls <= self.flaky_calls
        if not flaky:
            return self.client.batch_write_item(RequestItems=RequestItems)
        ((table, requests),) = RequestItems.items()
        half = len(requests) // 2
        if half:
            self.client.batch_write_item(RequestItems={table: requests[:half]})
        return {"UnprocessedItems": {table: requests[half:]}}

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_unprocessed_items_are_retried_until_all_are_written(aws):
    dynamodb = aws.client("dynamodb")
    items = to_items(scored_frame(120), DATE)
    client = UnprocessingClient(dynamodb, flaky_calls=6)
    delays: list[float] = []
    result = write_scores(client, aws.names.scores_table, items, sleep=delays.append, max_workers=3)
    assert (result.written, result.batches, result.retries) == (120, 5, 6)
    assert client.calls == 11 and len(delays) == 6
    assert count_items_for_date(dynamodb, aws.names.scores_table, aws.names.scores_gsi, DATE) == 120
    stored = dynamodb.get_item(
        TableName=aws.names.scores_table, Key={"transactionId": {"S": "T-00119"}, "timestamp": {"S": "2024-05-01T23:00:00.000000Z"}}
    )
    assert Decimal(stored["Item"]["fraudScore"]["N"]) == 1 and stored["Item"]["batchDate"] == {"S": DATE}


def test_writing_the_same_day_again_overwrites_instead_of_adding(aws):
    dynamodb = aws.client("dynamodb")
    table, gsi = aws.names.scores_table, aws.names.scores_gsi
    write_scores(dynamodb, table, to_items(scored_frame(30), DATE))
    write_scores(dynamodb, table, to_items(scored_frame(30), DATE))
    write_scores(dynamodb, table, to_items(scored_frame(5, start=100), "2024-05-02"))
    assert count_items_for_date(dynamodb, table, gsi, DATE) == 30
    assert count_items_for_date(dynamodb, table, gsi, "2024-05-02") == 5
    assert count_items_for_date(dynamodb, table, gsi, "2024-05-03") == 0


def test_items_that_never_get_processed_raise_after_the_bound(aws):
    client = UnprocessingClient(aws.client("dynamodb"), flaky_calls=10**6)
    items = to_items(scored_frame(60), DATE)
    delays: list[float] = []
    with pytest.raises(StoreError, match=r"items not written to FraudScores") as info:
        write_scores(client, aws.names.scores_table, items, max_attempts=3, max_workers=1, sleep=delays.append)
    err = info.value
    # With one worker the first chunk fails alone: 25 → 13 → 7 → 4 left after 3 attempts; the
    # chunks queued behind it never start.
    assert err.remaining == 60 - err.written and err.written == 21
    assert "4 of items 0-24 still unwritten after 3 attempts" in str(err)
    assert delays and len(delays) == 2


def test_a_validation_error_is_not_retried(aws):
    dynamodb = aws.client("dynamodb")
    with pytest.raises(StoreError, match="rejected") as info:
        write_scores(dynamodb, "NoSuchTable", to_items(scored_frame(3), DATE), sleep=lambda _: None)
    assert "ResourceNotFoundException" in str(info.value) and info.value.written == 0
    causes, err = [], info.value
    while err is not None:
        causes.append(err)
        err = err.__cause__
    assert any(isinstance(c, ClientError) for c in causes)


# -- a day's items made a chunk at a time --------------------------------------------------------


def test_score_items_are_the_items_of_to_items_made_a_chunk_at_a_time():
    frame = scored_frame(23)
    reasons = {"T-00021": [{"feature": "V14", "value": -3.5, "contribution": 1.25}]}
    items = ScoreItems(frame, DATE, reasons, chunk_rows=4)
    assert len(items) == 23
    assert list(items) == list(items) == to_items(frame, DATE, reasons)
    assert list(items)[21]["topReasons"] == [{"feature": "V14", "value": Decimal("-3.5"), "contribution": Decimal("1.25")}]


def test_score_items_refuse_a_repeated_key_over_the_whole_day_when_made():
    frame = pd.concat([scored_frame(30), scored_frame(30).iloc[[4]]], ignore_index=True)
    with pytest.raises(ValueError, match="items 4 and 30 share the key transactionId='T-00004', timestamp='2024-05-01T04:00:00.000000Z'"):
        ScoreItems(frame, DATE, chunk_rows=7)
    # Two timestamps within one microsecond are one sort key (the key text has microseconds).
    close = scored_frame(2).assign(transactionId="T-1")
    close["timestamp"] = pd.to_datetime(["2024-05-01T00:00:00.000000100Z", "2024-05-01T00:00:00.000000900Z"], utc=True)
    with pytest.raises(ValueError, match="items 0 and 1 share the key"):
        ScoreItems(close, DATE)
    with pytest.raises(ValueError, match="fraudScore of 'T-00001' is nan"):
        ScoreItems(scored_frame(3).assign(fraudScore=[0.1, np.nan, 0.2]), DATE)


class CountingItems(ScoreItems):
    made = 0

    def __iter__(self):
        for item in super().__iter__():
            self.made += 1
            yield item


@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 700), chunk_rows=st.integers(1, 120), max_workers=st.integers(1, 3))
def test_a_days_items_are_written_once_each_with_a_bounded_number_made_ahead(n, chunk_rows, max_workers):
    items = CountingItems(scored_frame(n), DATE, chunk_rows=chunk_rows)
    ahead: list[int] = []
    client = RecordingDynamoDB(lambda call, index: call % 3 == 0 and index % 2 == 0)
    original = client.batch_write_item

    def recording(RequestItems):
        with client.lock:
            ahead.append(items.made - len(client.table))
        return original(RequestItems)

    client.batch_write_item = recording
    result = write_scores(client, "FraudScores", items, max_workers=max_workers, max_attempts=20, sleep=lambda _: None)
    assert result.written == n == len(client.table) and all(len(copies) == 1 for copies in client.table.values())
    assert result.batches == -(-n // 25)
    # Made but not yet written: the chunks in flight and queued (5 per worker) and the one being made.
    assert max(ahead, default=0) <= (5 * max_workers + 1) * 25 + chunk_rows
