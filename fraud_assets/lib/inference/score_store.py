"""The day's scores into DynamoDB `FraudScores` (PK transactionId, SK timestamp; GSI BatchDateIndex
on batchDate + fraudScore), through the low-level client's BatchWriteItem.

Idempotent by construction: every write is a PutRequest of the whole item, keyed by the
transaction, so a retry or a re-materialisation overwrites the same items instead of adding any.

A day's items are `ScoreItems`: made from the scored table a chunk at a time whenever they are
written or read back, so the store holds one chunk of item dicts (and the requests in flight),
not one dict per score of the day (~1 KB each, ~1 GB for a 1M-transaction day).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from boto3.dynamodb.types import TypeSerializer

from fraud_assets.lib.aws.dynamodb_batches import MAX_GET_KEYS, MAX_WRITE_REQUESTS, BatchIncomplete, batch_get, batch_write
from fraud_assets.lib.config import TRANSACTION_ID
from fraud_assets.lib.inference.daily import format_timestamps, utc_microseconds

PARTITION_KEY = TRANSACTION_ID
SORT_KEY = "timestamp"
ITEM_CHUNK_ROWS = 10_000  # scored rows turned into items at a time
SCORED_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    "timestamp",
    "fraudScore",
    "riskLevel",
    "scoringTimestamp",
    "modelVersion",
    "endpointName",
)


@dataclasses.dataclass(frozen=True)
class StoreResult:
    written: int
    batches: int
    retries: int  # BatchWriteItem calls repeated for unprocessed items


class StoreError(RuntimeError):
    def __init__(self, message: str, *, written: int = 0, remaining: int = 0):
        super().__init__(message)
        self.written, self.remaining = written, remaining


def to_items(scored: pd.DataFrame, batch_date: str, reasons: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """One FraudScores item per scored transaction, in Python types for the TypeSerializer:
    strings, and fraudScore as a Decimal of the float's shortest text (DynamoDB rejects floats).
    A transaction in `reasons` (the high-risk ones) also gets `topReasons`, a list of maps
    {feature, value, contribution}."""
    scores = _checked_scores(scored, batch_date)
    columns = {
        TRANSACTION_ID: scored[TRANSACTION_ID].astype(str).tolist(),
        "timestamp": format_timestamps(scored["timestamp"]),
        "fraudScore": [Decimal(repr(s)) for s in scores.tolist()],
        "riskLevel": scored["riskLevel"].astype(str).tolist(),
        "modelVersion": scored["modelVersion"].astype(str).tolist(),
        "endpointName": scored["endpointName"].astype(str).tolist(),
        "scoringTimestamp": format_timestamps(scored["scoringTimestamp"]),
        "batchDate": [batch_date] * len(scored),
    }
    names = list(columns)
    items = [dict(zip(names, values)) for values in zip(*columns.values())]
    for item in items if reasons else ():
        if item[TRANSACTION_ID] in reasons:
            item["topReasons"] = [
                {
                    "feature": r["feature"],
                    "value": Decimal(repr(float(r["value"]))),
                    "contribution": Decimal(repr(float(r["contribution"]))),
                }
                for r in reasons[item[TRANSACTION_ID]]
            ]
    return items


class ScoreItems:
    """A day's FraudScores items as `to_items` makes them, made again `chunk_rows` scored rows at a
    time each time they are iterated: what is written and what is read back never sits whole in
    memory. Checked once over whole columns when made: the columns, the date, finite scores, and
    one row per key (which `write_scores` then need not check item by item)."""

    def __init__(
        self,
        scored: pd.DataFrame,
        batch_date: str,
        reasons: dict[str, list[dict[str, Any]]] | None = None,
        *,
        chunk_rows: int = ITEM_CHUNK_ROWS,
    ):
        _checked_scores(scored, batch_date)
        _check_unique_rows(scored)
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, not {chunk_rows}")
        self.scored, self.batch_date, self.reasons, self.chunk_rows = scored, batch_date, reasons, chunk_rows

    def __len__(self) -> int:
        return len(self.scored)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for start in range(0, len(self.scored), self.chunk_rows):
            yield from to_items(self.scored.iloc[start : start + self.chunk_rows], self.batch_date, self.reasons)


def write_scores(
    dynamodb_client,
    table: str,
    items: Iterable[dict[str, Any]] | ScoreItems,
    *,
    batch_size: int = MAX_WRITE_REQUESTS,
    max_workers: int = 4,
    max_attempts: int = 10,
    base_delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> StoreResult:
    """Write `items` (from `to_items`, or a day's `ScoreItems`) in BatchWriteItem chunks of <= 25,
    `max_workers` chunks in flight and a few more made ahead (items are made as they are sent). A
    chunk's UnprocessedItems are sent again with exponential backoff until none remain; after
    `max_attempts` calls for one chunk, StoreError says how many items are still unwritten.
    Re-running after a failure is safe: puts overwrite.

    Keys are checked up front (ScoreItems checked its rows when made): BatchWriteItem rejects a
    request holding one key twice, and two items with one key in a day's scores would mean a bug
    upstream.
    """
    if not 1 <= batch_size <= MAX_WRITE_REQUESTS:
        raise ValueError(f"batch_size must be 1..{MAX_WRITE_REQUESTS}, not {batch_size}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
    if not isinstance(items, ScoreItems):
        items = list(items)
        _check_unique_keys(items)
    total = len(items)
    serializer = TypeSerializer()
    abort = threading.Event()
    first_failure: list[_ChunkFailed] = []
    failure_lock = threading.Lock()

    def fail(failure: _ChunkFailed) -> _ChunkFailed:
        # Set by the failing worker itself, not later by the caller: with one worker the next
        # queued chunk starts at once and must already see it.
        with failure_lock:
            if not first_failure:
                first_failure.append(failure)
            abort.set()
        return failure

    def write_chunk(first: int, requests: list[dict[str, Any]]) -> tuple[int, int]:
        if abort.is_set():
            return 0, 0  # another chunk failed for good: leave the rest for the re-run
        size = len(requests)
        try:
            calls = batch_write(
                dynamodb_client, table, requests, max_attempts=max_attempts, base_delay=base_delay, sleep=sleep, give_up=abort.is_set
            )
        except BatchIncomplete as err:
            message = f"{table}: {err.remaining} of items {first}-{first + size - 1} {err.reason}"
            raise fail(_ChunkFailed(message, written=size - err.remaining, remaining=err.remaining)) from err
        return size, calls - 1

    def chunks() -> Iterator[tuple[int, list[dict[str, Any]]]]:
        source = iter(items)
        for first in itertools.count(0, batch_size):
            chunk = list(itertools.islice(source, batch_size))
            if not chunk:
                return
            yield first, [{"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in item.items()}}} for item in chunk]

    written = retries = batches = 0
    failures: list[_ChunkFailed] = []
    ahead = max_workers * 4  # chunks made and queued beyond those being sent: bounded, never the day
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="store") as pool:
        pending: set[Future] = set()
        queue = chunks()
        while True:
            while not failures and len(pending) < max_workers + ahead and (chunk := next(queue, None)) is not None:
                pending.add(pool.submit(write_chunk, *chunk))
                batches += 1
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    n, r = future.result()
                    written, retries = written + n, retries + r
                except _ChunkFailed as failed:
                    failures.append(failed)
                    written += failed.written
            if failures:
                # In-flight chunks give up at their next retry; queued ones never start.
                for future in pending:
                    future.cancel()
                pending = {f for f in pending if not f.cancelled()}
    if failures:
        remaining = total - written
        raise StoreError(
            f"{remaining} of {total} items not written to {table} ({written} written); first failure: "
            f"{first_failure[0]}. Writes are idempotent puts: re-run to finish.",
            written=written,
            remaining=remaining,
        ) from first_failure[0]
    return StoreResult(written=written, batches=batches, retries=retries)


def count_items_for_date(dynamodb_client, table: str, gsi: str, batch_date: str) -> int:
    """How many items the GSI holds for `batch_date` (Select=COUNT, every page)."""
    _check_date(batch_date)
    total = 0
    paginator = dynamodb_client.get_paginator("query")
    for page in paginator.paginate(
        TableName=table,
        IndexName=gsi,
        KeyConditionExpression="batchDate = :d",
        ExpressionAttributeValues={":d": {"S": batch_date}},
        Select="COUNT",
    ):
        total += page["Count"]
    return total


@dataclasses.dataclass(frozen=True)
class StoredCheck:
    expected: int
    found: int
    missing: list[str]  # transactionIds (first few) with no item
    mismatched: list[str]  # items whose fraudScore or modelVersion differ from the scores written


VERIFY_WINDOW = 10_000  # items read back per window: bounds the keys and answers held at once


def verify_stored(
    dynamodb_client,
    table: str,
    items: Sequence[dict[str, Any]] | ScoreItems,
    *,
    max_workers: int = 4,
    max_attempts: int = 10,
    base_delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    window: int = VERIFY_WINDOW,
) -> StoredCheck:
    """Read every item back by primary key with ConsistentRead (BatchGetItem, 100 keys a call,
    UnprocessedKeys retried with backoff) and compare fraudScore and modelVersion. Exact where a
    count through the GSI is not: GSI reads are eventually consistent on AWS, so a count straight
    after the writes can come up short. Linear in items (moto's GSI query re-sorts the index per
    page), and on AWS one read unit per item. `items` (unique keys, as `write_scores` requires)
    are checked `window` at a time, so the keys and answers in memory do not grow with the day."""
    serializer = TypeSerializer()

    def read_chunk(chunk: list[dict]) -> list[dict]:
        return _read_keys(dynamodb_client, table, chunk, "fraudScore, modelVersion", max_attempts, base_delay, sleep)

    found, missing, mismatched = 0, [], []
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="verify") as pool:
        source = iter(items)
        while window_items := list(itertools.islice(source, window)):
            expected = {(i[PARTITION_KEY], i[SORT_KEY]): i for i in window_items}
            keys = [{PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}} for pk, sk in expected]
            chunks = [keys[i : i + MAX_GET_KEYS] for i in range(0, len(keys), MAX_GET_KEYS)]
            seen = set()
            for chunk in pool.map(read_chunk, chunks):
                for item in chunk:
                    key = (item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])
                    seen.add(key)
                    want = expected[key]
                    if (
                        item.get("fraudScore") != serializer.serialize(want["fraudScore"])
                        or item.get("modelVersion", {}).get("S") != want["modelVersion"]
                    ) and len(mismatched) < 20:
                        mismatched.append(key[0])
            found += len(seen)
            missing += [pk for pk, sk in expected if (pk, sk) not in seen][: max(0, 20 - len(missing))]
            del window_items, expected  # before the next window is made
    return StoredCheck(expected=len(items), found=found, missing=missing[:20], mismatched=mismatched[:20])


def stored_batch_dates(
    dynamodb_client,
    table: str,
    keys: list[tuple[str, str]],
    *,
    other_than: str,
    max_attempts: int = 10,
    base_delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[tuple[str, str], str]:
    """The batchDate of each (transactionId, timestamp) key already stored for a day other than
    `other_than` (BatchGetItem by key, consistent reads, 100 keys a call): the keys a day must not
    write, because their items belong to another day."""
    _check_date(other_than)
    unique = list(dict.fromkeys(keys))
    keys_json = [{PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}} for pk, sk in unique]
    items = _read_keys(dynamodb_client, table, keys_json, "batchDate", max_attempts, base_delay, sleep)
    owners: dict[tuple[str, str], str] = {}
    for item in items:
        date = item.get("batchDate", {}).get("S")
        if date != other_than:
            owners[(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])] = str(date)
    return owners


def _read_keys(
    dynamodb_client, table: str, keys: list[dict], attributes: str, max_attempts: int, base_delay: float, sleep: Callable[[float], None]
) -> list[dict]:
    """The items of `keys` with their key and `attributes`, consistent reads."""
    try:
        items, _ = batch_get(
            dynamodb_client,
            table,
            keys,
            max_attempts=max_attempts,
            base_delay=base_delay,
            sleep=sleep,
            ConsistentRead=True,
            ProjectionExpression=f"#pk, #sk, {attributes}",
            ExpressionAttributeNames={"#pk": PARTITION_KEY, "#sk": SORT_KEY},
        )
    except BatchIncomplete as err:
        raise StoreError(str(err)) from err
    return items


class _ChunkFailed(Exception):
    def __init__(self, message: str, *, written: int, remaining: int):
        super().__init__(message)
        self.written, self.remaining = written, remaining


def _check_unique_keys(items: list[dict[str, Any]]) -> None:
    seen: dict[tuple[Any, Any], int] = {}
    for i, item in enumerate(items):
        try:
            key = (item[PARTITION_KEY], item[SORT_KEY])
        except KeyError as err:
            raise ValueError(f"item {i} has no key attribute {err.args[0]!r}") from None
        first = seen.setdefault(key, i)
        if first != i:
            raise ValueError(f"items {first} and {i} share the key {PARTITION_KEY}={key[0]!r}, {SORT_KEY}={key[1]!r}")


def _checked_scores(scored: pd.DataFrame, batch_date: str) -> np.ndarray:
    _check_date(batch_date)
    missing = [c for c in SCORED_COLUMNS if c not in scored.columns]
    if missing:
        raise ValueError(f"scored table lacks columns {missing} (has {list(scored.columns)})")
    scores = scored["fraudScore"].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"fraudScore of {scored[TRANSACTION_ID].iloc[row]!r} is {scores[row]}: DynamoDB stores no NaN")
    return scores


def _check_unique_rows(scored: pd.DataFrame) -> None:
    """One row per item key, over whole columns: the key's timestamp text is a function of the
    timestamp in microseconds (`format_timestamps`), so equal microseconds are equal keys."""
    micros = utc_microseconds(scored["timestamp"])
    keys = pd.DataFrame(
        {
            "id": scored[TRANSACTION_ID].astype(str).to_numpy(),
            "at": micros if micros is not None else scored["timestamp"].astype(str).to_numpy(),
        }
    )
    repeated = keys.duplicated(keep="first").to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        same = (keys["id"] == keys["id"].iloc[row]) & (keys["at"] == keys["at"].iloc[row])
        first = int(np.flatnonzero(same.to_numpy())[0])
        (timestamp,) = format_timestamps(scored["timestamp"].iloc[row : row + 1])
        raise ValueError(f"items {first} and {row} share the key {PARTITION_KEY}={keys['id'].iloc[row]!r}, {SORT_KEY}={timestamp!r}")


def _check_date(value: str) -> None:
    try:
        ok = isinstance(value, str) and len(value) == 10 and dt.date.fromisoformat(value).isoformat() == value
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"batch date must be YYYY-MM-DD, not {value!r}")
