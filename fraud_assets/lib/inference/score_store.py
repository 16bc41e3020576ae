"""The day's scores into DynamoDB `FraudScores` (PK transactionId, SK timestamp; GSI BatchDateIndex
on batchDate + fraudScore), through the low-level client's BatchWriteItem.

Idempotent by construction: every write is a PutRequest of the whole item, keyed by the
transaction, so a retry or a re-materialisation overwrites the same items instead of adding any.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from decimal import Decimal
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from fraud_assets.lib.config import TRANSACTION_ID
from fraud_assets.lib.inference.daily import format_timestamps
from fraud_assets.lib.inference.scoring import backoff_delay

PARTITION_KEY = TRANSACTION_ID
SORT_KEY = "timestamp"
MAX_BATCH_SIZE = 25  # BatchWriteItem's limit per request
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
    _check_date(batch_date)
    missing = [c for c in SCORED_COLUMNS if c not in scored.columns]
    if missing:
        raise ValueError(f"scored table lacks columns {missing} (has {list(scored.columns)})")
    scores = scored["fraudScore"].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"fraudScore of {scored[TRANSACTION_ID].iloc[row]!r} is {scores[row]}: DynamoDB stores no NaN")
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


def write_scores(
    dynamodb_client,
    table: str,
    items: Iterable[dict[str, Any]],
    *,
    batch_size: int = MAX_BATCH_SIZE,
    max_workers: int = 4,
    max_attempts: int = 10,
    base_delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> StoreResult:
    """Write `items` (from `to_items`) in BatchWriteItem chunks of <= 25, `max_workers` chunks in
    flight. A chunk's UnprocessedItems are sent again with exponential
    backoff until none remain; after `max_attempts` calls for one chunk, StoreError says how many
    items are still unwritten. Re-running after a failure is safe: puts overwrite.

    Keys are checked up front: BatchWriteItem rejects a request holding one key twice, and two
    items with one key in a day's scores would mean a bug upstream.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, not {batch_size}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
    items = list(items)
    _check_unique_keys(items)
    chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
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

    def write_chunk(first: int, chunk: list[dict[str, Any]]) -> tuple[int, int]:
        if abort.is_set():
            return 0, 0  # another chunk failed for good: leave the rest for the re-run
        requests = [{"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in item.items()}}} for item in chunk]
        retries = 0
        for attempt in range(1, max_attempts + 1):
            try:
                response = dynamodb_client.batch_write_item(RequestItems={table: requests})
            except (ClientError, BotoConnectionError, HTTPClientError) as err:
                # Throttling, 5xx and dropped connections were retried by the client's retry mode
                # (lib/aws/clients.py) already; what is left is not worth another round of ours.
                raise fail(
                    _ChunkFailed(
                        f"{table}: items {first}-{first + len(chunk) - 1} rejected: {err}",
                        written=len(chunk) - len(requests),
                        remaining=len(requests),
                    )
                ) from err
            # What botocore does not retry: items DynamoDB accepted the request for but did not write.
            unprocessed = response.get("UnprocessedItems", {}).get(table, [])
            problem = f"{len(unprocessed)} unprocessed"
            if not unprocessed:
                return len(chunk), retries
            if attempt == max_attempts or abort.is_set():
                raise fail(
                    _ChunkFailed(
                        f"{table}: {len(unprocessed)} of items {first}-{first + len(chunk) - 1} still unwritten after "
                        f"{attempt} attempts ({problem})",
                        written=len(chunk) - len(unprocessed),
                        remaining=len(unprocessed),
                    )
                )
            retries += 1
            sleep(backoff_delay(attempt, base_delay))
            requests = unprocessed
        raise AssertionError("unreachable")

    written = retries = 0
    failures: list[_ChunkFailed] = []
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="store") as pool:
        futures: list[Future] = [pool.submit(write_chunk, i * batch_size, chunk) for i, chunk in enumerate(chunks)]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
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
        remaining = len(items) - written
        raise StoreError(
            f"{remaining} of {len(items)} items not written to {table} ({written} written); first failure: "
            f"{first_failure[0]}. Writes are idempotent puts: re-run to finish.",
            written=written,
            remaining=remaining,
        ) from first_failure[0]
    return StoreResult(written=written, batches=len(chunks), retries=retries)


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


MAX_GET_BATCH = 100  # BatchGetItem's limit per request


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
    items: list[dict[str, Any]],
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
        found: list[dict] = []
        request = {
            table: {
                "Keys": chunk,
                "ConsistentRead": True,
                "ProjectionExpression": "#pk, #sk, fraudScore, modelVersion",
                "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            }
        }
        for attempt in range(1, max_attempts + 1):
            response = dynamodb_client.batch_get_item(RequestItems=request)
            found += response.get("Responses", {}).get(table, [])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
            sleep(backoff_delay(attempt, base_delay))
        raise StoreError(f"{table}: keys still unread after {max_attempts} BatchGetItem calls")

    found, missing, mismatched = 0, [], []
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="verify") as pool:
        for first in range(0, len(items), window):
            expected = {(i[PARTITION_KEY], i[SORT_KEY]): i for i in items[first : first + window]}
            keys = [{PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}} for pk, sk in expected]
            chunks = [keys[i : i + MAX_GET_BATCH] for i in range(0, len(keys), MAX_GET_BATCH)]
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
    owners: dict[tuple[str, str], str] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), MAX_GET_BATCH):
        request = {
            table: {
                "Keys": [{PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": sk}} for pk, sk in unique[start : start + MAX_GET_BATCH]],
                "ConsistentRead": True,
                "ProjectionExpression": "#pk, #sk, batchDate",
                "ExpressionAttributeNames": {"#pk": PARTITION_KEY, "#sk": SORT_KEY},
            }
        }
        for attempt in range(1, max_attempts + 1):
            response = dynamodb_client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                date = item.get("batchDate", {}).get("S")
                if date != other_than:
                    owners[(item[PARTITION_KEY]["S"], item[SORT_KEY]["S"])] = str(date)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            sleep(backoff_delay(attempt, base_delay))
        else:
            raise StoreError(f"{table}: keys still unread after {max_attempts} BatchGetItem calls")
    return owners


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


def _check_date(value: str) -> None:
    try:
        ok = isinstance(value, str) and len(value) == 10 and dt.date.fromisoformat(value).isoformat() == value
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"batch date must be YYYY-MM-DD, not {value!r}")
