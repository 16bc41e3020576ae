"""BatchGetItem / BatchWriteItem to the end (lib/aws/dynamodb_batches.py): what DynamoDB hands back
unprocessed is sent again until nothing is left, requests never exceed the service's limits, and
giving up says how many keys or items are left. Properties against an in-memory stand-in for the
service's batch calls; the same behaviour against the local stack's DynamoDB over HTTP."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.aws.dynamodb_batches import MAX_GET_KEYS, MAX_WRITE_REQUESTS, BatchIncomplete, batch_get, batch_write
from fraud_assets.lib.features.store import ENTITY_KEY

TABLE = "T"


class FlakyBatches:
    """DynamoDB's batch calls over a dict, leaving each key or item unprocessed with probability
    `p` on the first `flaky_calls` calls, as the service does under throttling; it refuses requests
    over the service's limits."""

    def __init__(self, stored: dict[str, dict], p: float, flaky_calls: int, seed: int):
        self.stored, self.p, self.flaky_calls = stored, p, flaky_calls
        self.rng = np.random.default_rng(seed)
        self.calls: list[int] = []

    def _left(self, entries: list) -> tuple[list, list]:
        flaky = len(self.calls) <= self.flaky_calls
        left = [e for e in entries if flaky and self.rng.random() < self.p]
        return [e for e in entries if not any(e is x for x in left)], left

    def batch_get_item(self, RequestItems):
        ((table, request),) = RequestItems.items()
        assert 1 <= len(request["Keys"]) <= MAX_GET_KEYS and request["ConsistentRead"] is True
        self.calls.append(len(request["Keys"]))
        done, left = self._left(request["Keys"])
        found = [self.stored[k[ENTITY_KEY]["S"]] for k in done if k[ENTITY_KEY]["S"] in self.stored]
        return {"Responses": {table: found}, "UnprocessedKeys": {table: {**request, "Keys": left}} if left else {}}

    def batch_write_item(self, RequestItems):
        ((table, requests),) = RequestItems.items()
        assert 1 <= len(requests) <= MAX_WRITE_REQUESTS
        self.calls.append(len(requests))
        done, left = self._left(requests)
        for r in done:
            item = r["PutRequest"]["Item"]
            self.stored[item[ENTITY_KEY]["S"]] = item
        return {"UnprocessedItems": {table: left} if left else {}}


def key(i: int) -> dict:
    return {ENTITY_KEY: {"S": f"k{i}"}}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 450), present=st.integers(0, 450), p=st.floats(0, 0.9), seed=st.integers(0, 2**32 - 1))
def test_every_stored_item_is_read_once_whatever_comes_back_unprocessed(n, present, p, seed):
    stored = {f"k{i}": {**key(i), "v": {"N": str(i)}} for i in range(present)}
    client = FlakyBatches(stored, p, flaky_calls=40, seed=seed)
    items, calls = batch_get(client, TABLE, [key(i) for i in range(n)], max_attempts=60, sleep=lambda _: None, ConsistentRead=True)
    assert sorted(int(i["v"]["N"]) for i in items) == list(range(min(n, present)))
    assert calls == len(client.calls) and sum(client.calls) >= n


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, MAX_WRITE_REQUESTS), p=st.floats(0, 0.9), seed=st.integers(0, 2**32 - 1))
def test_every_item_is_written_whatever_comes_back_unprocessed(n, p, seed):
    client = FlakyBatches({}, p, flaky_calls=40, seed=seed)
    requests = [{"PutRequest": {"Item": {**key(i), "v": {"N": str(i)}}}} for i in range(n)]
    calls = batch_write(client, TABLE, requests, max_attempts=60, sleep=lambda _: None)
    assert sorted(client.stored) == sorted(f"k{i}" for i in range(n))
    assert calls == len(client.calls) and client.calls[0] == n


def test_giving_up_says_how_many_are_left():
    client = FlakyBatches({}, p=1.0, flaky_calls=10**6, seed=0)
    delays: list[float] = []
    with pytest.raises(BatchIncomplete, match=r"T: 3 still unwritten after 4 attempts") as info:
        batch_write(client, TABLE, [{"PutRequest": {"Item": key(i)}} for i in range(3)], max_attempts=4, sleep=delays.append)
    assert info.value.remaining == 3 and len(delays) == 3 and all(d > 0 for d in delays)
    with pytest.raises(BatchIncomplete, match=r"T: 100 keys still unread after 2 BatchGetItem calls"):
        batch_get(client, TABLE, [key(i) for i in range(150)], max_attempts=2, sleep=lambda _: None, ConsistentRead=True)
    stop = FlakyBatches({}, p=1.0, flaky_calls=10**6, seed=0)
    with pytest.raises(BatchIncomplete, match="after 1 attempts"):
        batch_write(stop, TABLE, [{"PutRequest": {"Item": key(0)}}], give_up=lambda: True, sleep=lambda _: None)
    with pytest.raises(ValueError, match="1..25 requests, not 26"):
        batch_write(stop, TABLE, [{"PutRequest": {"Item": key(i)}} for i in range(26)])


def test_against_the_local_stack(aws):
    dynamodb, table = aws.client("dynamodb"), aws.names.aggregates_table
    items = [{**key(i), "v": {"N": str(i)}} for i in range(30)]
    for start in range(0, 30, MAX_WRITE_REQUESTS):
        assert batch_write(dynamodb, table, [{"PutRequest": {"Item": i}} for i in items[start : start + MAX_WRITE_REQUESTS]]) == 1
    found, calls = batch_get(dynamodb, table, [key(i) for i in range(250)], ConsistentRead=True)
    assert calls == 3 and sorted(int(i["v"]["N"]) for i in found) == list(range(30))
    with pytest.raises(BatchIncomplete, match="rejected: .*ResourceNotFoundException") as info:
        batch_write(dynamodb, "NoSuchTable", [{"PutRequest": {"Item": key(0)}}])
    assert info.value.remaining == 1
