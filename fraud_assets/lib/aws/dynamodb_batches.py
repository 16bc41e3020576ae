"""BatchGetItem and BatchWriteItem to the end: what botocore leaves to the caller.

botocore's retry mode (lib/aws/clients.py) repeats a call that failed (throttling, 5xx, a dropped
connection). A batch call can also succeed and hand back the keys or items DynamoDB did not get to
(UnprocessedKeys / UnprocessedItems); no client retries those. boto3's resource `batch_writer`
re-sends unprocessed items, but with no backoff, for writes only and on the resource layer, where
items are Python values rather than the DynamoDB JSON the stores build. So this module sends them
again with jittered exponential backoff and says what is left when it gives up.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

MAX_GET_KEYS = 100  # BatchGetItem's limit per request
MAX_WRITE_REQUESTS = 25  # BatchWriteItem's limit per request
MAX_BACKOFF_SECONDS = 20.0


def backoff_delay(attempt: int, base_delay: float, cap: float = MAX_BACKOFF_SECONDS) -> float:
    """Exponential backoff with jitter after failed attempt `attempt` (1-based): half fixed, half
    random, so parallel workers throttled together do not come back together."""
    delay = min(cap, base_delay * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


class BatchIncomplete(RuntimeError):
    """Keys left unread or items left unwritten: `remaining` of them, and why (`reason`)."""

    def __init__(self, table: str, remaining: int, reason: str):
        self.table, self.remaining, self.reason = table, remaining, reason
        super().__init__(f"{table}: {remaining} {reason}")


def batch_get(
    dynamodb,
    table: str,
    keys: Sequence[dict[str, Any]],
    *,
    max_attempts: int = 10,
    base_delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    **options: Any,
) -> tuple[list[dict[str, Any]], int]:
    """The items of `keys` (DynamoDB JSON key maps, any number: MAX_GET_KEYS a request; absent
    items are simply missing) and the calls made. `options` (ConsistentRead, ProjectionExpression,
    ...) go into every request."""
    items: list[dict[str, Any]] = []
    calls = 0
    for start in range(0, len(keys), MAX_GET_KEYS):
        request = {table: {"Keys": list(keys[start : start + MAX_GET_KEYS]), **options}}
        for attempt in range(1, max_attempts + 1):
            response = dynamodb.batch_get_item(RequestItems=request)
            calls += 1
            items += response.get("Responses", {}).get(table, [])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            if attempt == max_attempts:
                left = len(request[table]["Keys"])
                raise BatchIncomplete(table, left, f"keys still unread after {max_attempts} BatchGetItem calls")
            sleep(backoff_delay(attempt, base_delay))
    return items, calls


def batch_write(
    dynamodb,
    table: str,
    requests: Sequence[dict[str, Any]],
    *,
    max_attempts: int = 10,
    base_delay: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
    give_up: Callable[[], bool] = lambda: False,
) -> int:
    """Send one BatchWriteItem of <= MAX_WRITE_REQUESTS `requests` (PutRequest / DeleteRequest)
    until none is unprocessed; returns the calls made. BatchIncomplete says how many are left
    when the call fails for good (after botocore's own retries), after `max_attempts` calls, or
    when `give_up()` turns true between attempts."""
    if not 1 <= len(requests) <= MAX_WRITE_REQUESTS:
        raise ValueError(f"a BatchWriteItem holds 1..{MAX_WRITE_REQUESTS} requests, not {len(requests)}")
    pending, attempt = list(requests), 0
    while True:
        attempt += 1
        try:
            response = dynamodb.batch_write_item(RequestItems={table: pending})
        except (ClientError, BotoConnectionError, HTTPClientError) as err:
            raise BatchIncomplete(table, len(pending), f"rejected: {err}") from err
        pending = response.get("UnprocessedItems", {}).get(table, [])
        if not pending:
            return attempt
        if attempt >= max_attempts or give_up():
            raise BatchIncomplete(table, len(pending), f"still unwritten after {attempt} attempts (unprocessed)")
        sleep(backoff_delay(attempt, base_delay))
