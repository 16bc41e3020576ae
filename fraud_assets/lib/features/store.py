"""The history features' aggregates in DynamoDB (the original design's "pre-computed aggregates
from DynamoDB", Feature Extraction), one item per customer and one per terminal, keyed `entityId`:

- `customer#<customerId>`: the customer's transactions of the last RETENTION_DAYS batch days
  before the newest written, as parallel lists `txBatchDays` (the daily batch that brought it,
  days since 1970-01-01), `txMicros` (its time, epoch microseconds) and `txAmounts`. Writing batch
  day D replaces the item's entries of D and keeps the others, so re-running D (a retry, a
  backfill) never counts D twice. Maintained by the daily `feature_aggregates` asset.
- `terminal#<merchant>`: per labelled day, an attribute named by the day (`day#YYYY-MM-DD`) holding
  [transactions, frauds]. One UpdateItem per terminal and day sets exactly that attribute: atomic,
  idempotent, and safe when label days arrive concurrently. Maintained by `fraud_labels`.

Both carry `expiresAt` (epoch seconds; the table's TTL attribute), pushed past the last day the
features could still read the item.

Numbers go over the wire as DynamoDB number strings: integers exactly, amounts as Python's
shortest round-trip repr, so what serving reads back is bit-identical to what training saw.
Reads are BatchGetItem (100 keys a call) for the day's distinct customers and terminals; nothing
is read per transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.lib.aws.dynamodb_batches import MAX_WRITE_REQUESTS, BatchIncomplete, batch_get, batch_write
from fraud_assets.lib.features.history import HISTORY_DAYS, MICROS_PER_DAY

ENTITY_KEY = "entityId"
TTL_ATTRIBUTE = "expiresAt"
CUSTOMER_PREFIX = "customer#"
TERMINAL_PREFIX = "terminal#"
DAY_ATTRIBUTE_PREFIX = "day#"
# The longest window is 30 days back from a transaction of day D: days D-30..D-1 are read.
RETENTION_DAYS = HISTORY_DAYS + 1
_DAY_ATTRIBUTE = re.compile(r"day#(\d{4}-\d{2}-\d{2})")


class AggregateItemError(ValueError):
    """A stored aggregate that cannot be read: names the item's key and the attribute."""

    def __init__(self, table: str, key: str, attribute: str, problem: str):
        self.key, self.attribute = key, attribute
        super().__init__(f"{table}: item {key!r}, attribute {attribute!r}: {problem}")


def day_index(date: str) -> int:
    """Days since 1970-01-01 of an ISO date: the day numbers the history features use."""
    return (dt.date.fromisoformat(date) - dt.date(1970, 1, 1)).days


def day_date(index: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(index))).isoformat()


def expires_at(last_day: int, keep_days: int) -> int:
    """Epoch seconds after which the item is no longer read by any window."""
    return (int(last_day) + keep_days + 1) * 86_400


# --------------------------------------------------------------------------- customers


@dataclasses.dataclass(frozen=True)
class WriteStats:
    entities: int
    items_written: int
    read_calls: int
    write_calls: int


def write_customer_days(dynamodb, table: str, history: pd.DataFrame, **retry: Any) -> WriteStats:
    """Store transactions into their customers' items (`history`: customerId, micros, Amount, as
    history.customer_history_rows makes them, plus `batch_day`, the day of the batch that brought
    each; rows without customer are not stored). Per customer, the item's entries of the batch days
    written are replaced and entries of batch days more than RETENTION_DAYS before the newest are
    dropped. One BatchGetItem per 100 customers, one BatchWriteItem per 25."""
    frame = history[history["customerId"].notna()].sort_values(["customerId", "batch_day", "micros"], kind="stable")
    written_days = np.unique(frame["batch_day"].to_numpy(dtype=np.int64))
    customers = frame["customerId"].astype(str).unique().tolist()
    stored, read_calls = _read_items(dynamodb, table, [CUSTOMER_PREFIX + c for c in customers], **retry)
    items = []
    for customer, rows in frame.groupby(frame["customerId"].astype(str), sort=False):
        key = CUSTOMER_PREFIX + customer
        days, micros, amounts = _customer_entries(table, stored.get(key))
        kept = ~np.isin(days, written_days)
        days = np.concatenate([days[kept], rows["batch_day"].to_numpy(dtype=np.int64)])
        micros = np.concatenate([micros[kept], rows["micros"].to_numpy(dtype=np.int64)])
        amounts = np.concatenate([amounts[kept], rows["Amount"].to_numpy(dtype=np.float64)])
        newest = int(days.max())
        recent = days > newest - RETENTION_DAYS
        order = np.lexsort((micros[recent], days[recent]))
        items.append(_customer_item(key, days[recent][order], micros[recent][order], amounts[recent][order], newest))
    write_calls = _write_items(dynamodb, table, items, **retry)
    return WriteStats(len(customers), len(items), read_calls, write_calls)


def read_customer_history(dynamodb, table: str, customers: Iterable[str], day: int, **retry: Any) -> pd.DataFrame:
    """The stored transactions of `customers` timed on days day-HISTORY_DAYS..day-1, as
    customer_history rows (customerId, micros, Amount): what serving day `day` may know."""
    wanted = sorted({str(c) for c in customers})
    stored, _ = _read_items(dynamodb, table, [CUSTOMER_PREFIX + c for c in wanted], **retry)
    ids, micros_parts, amount_parts = [], [], []
    first, last = (day - HISTORY_DAYS) * MICROS_PER_DAY, day * MICROS_PER_DAY
    for key, item in stored.items():
        _, micros, amounts = _customer_entries(table, item)
        keep = (micros >= first) & (micros < last)
        ids.append(np.full(int(keep.sum()), key[len(CUSTOMER_PREFIX) :], dtype=object))
        micros_parts.append(micros[keep])
        amount_parts.append(amounts[keep])
    return pd.DataFrame(
        {
            "customerId": np.concatenate(ids) if ids else np.empty(0, dtype=object),
            "micros": np.concatenate(micros_parts) if ids else np.empty(0, dtype=np.int64),
            "Amount": np.concatenate(amount_parts) if ids else np.empty(0, dtype=np.float64),
        }
    )


def _customer_item(key: str, days: np.ndarray, micros: np.ndarray, amounts: np.ndarray, newest: int) -> dict[str, Any]:
    return {
        ENTITY_KEY: {"S": key},
        "txBatchDays": {"L": [{"N": str(int(d))} for d in days.tolist()]},
        "txMicros": {"L": [{"N": str(int(m))} for m in micros.tolist()]},
        "txAmounts": {"L": [{"N": repr(float(a))} for a in amounts.tolist()]},
        TTL_ATTRIBUTE: {"N": str(expires_at(newest, RETENTION_DAYS))},
    }


def _customer_entries(table: str, item: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(batch day, epoch microseconds, amount) per stored transaction of a customer item."""
    if item is None:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    key = item[ENTITY_KEY]["S"]
    days = _number_list(table, key, item, "txBatchDays", int)
    micros = _number_list(table, key, item, "txMicros", int)
    amounts = _number_list(table, key, item, "txAmounts", float)
    for name, values in (("txMicros", micros), ("txAmounts", amounts)):
        if len(values) != len(days):
            raise AggregateItemError(table, key, name, f"{len(values)} values for {len(days)} transactions")
    return np.asarray(days, dtype=np.int64), np.asarray(micros, dtype=np.int64), np.asarray(amounts, dtype=np.float64)


# --------------------------------------------------------------------------- terminals


def write_terminal_days(dynamodb, table: str, counts: pd.DataFrame, keep_days: int, max_workers: int = 8) -> int:
    """Set each terminal's [transactions, frauds] of the labelled days in `counts` (merchant, day,
    tx, fraud, as history.terminal_day_counts makes them): one UpdateItem per terminal setting
    exactly its days' attributes, so label days written concurrently never overwrite each other,
    `max_workers` calls in flight. Returns the calls made."""
    per_terminal = counts.loc[:, ["merchant", "day", "tx", "fraud"]].groupby("merchant", sort=True)

    def update(merchant: str, rows: pd.DataFrame) -> None:
        names, values = {"#ttl": TTL_ATTRIBUTE}, {":ttl": {"N": str(expires_at(int(rows["day"].max()), keep_days))}}
        assignments = ["#ttl = :ttl"]
        for i, (day, tx, fraud) in enumerate(rows.loc[:, ["day", "tx", "fraud"]].itertuples(index=False)):
            names[f"#d{i}"] = DAY_ATTRIBUTE_PREFIX + day_date(day)
            values[f":c{i}"] = {"L": [{"N": str(int(tx))}, {"N": str(int(fraud))}]}
            assignments.append(f"#d{i} = :c{i}")
        dynamodb.update_item(
            TableName=table,
            Key={ENTITY_KEY: {"S": TERMINAL_PREFIX + str(merchant)}},
            UpdateExpression="SET " + ", ".join(assignments),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="terminals") as pool:
        done = list(pool.map(lambda item: update(*item), per_terminal))
    return len(done)


def read_terminal_counts(dynamodb, table: str, merchants: Iterable[str], first_day: int, last_day: int, **retry: Any) -> pd.DataFrame:
    """The stored [transactions, frauds] of `merchants` on labelled days first_day..last_day, as
    terminal_day_counts rows (merchant, day, tx, fraud)."""
    wanted = sorted({str(m) for m in merchants})
    stored, _ = _read_items(dynamodb, table, [TERMINAL_PREFIX + m for m in wanted], **retry)
    rows = []
    for key, item in stored.items():
        for attribute, value in item.items():
            match = _DAY_ATTRIBUTE.fullmatch(attribute)
            if match is None:
                continue
            day = day_index(match.group(1))
            if not first_day <= day <= last_day:
                continue
            pair = _number_list(table, key, item, attribute, int)
            if len(pair) != 2 or min(pair) < 0 or pair[1] > pair[0]:
                raise AggregateItemError(
                    table, key, attribute, f"expected [transactions, frauds] with 0 <= frauds <= transactions, got {value}"
                )
            rows.append((key[len(TERMINAL_PREFIX) :], day, pair[0], pair[1]))
    frame = pd.DataFrame(rows, columns=["merchant", "day", "tx", "fraud"])
    return frame.astype({"merchant": object, "day": np.int64, "tx": np.int64, "fraud": np.int64})


# --------------------------------------------------------------------------- DynamoDB calls


def _number_list(table: str, key: str, item: dict[str, Any], attribute: str, kind: Callable[[str], Any]) -> list[Any]:
    value = item.get(attribute)
    if not isinstance(value, dict) or "L" not in value:
        raise AggregateItemError(table, key, attribute, f"expected a list of numbers, got {value!r}")
    try:
        return [kind(entry["N"]) for entry in value["L"]]
    except (KeyError, TypeError, ValueError) as err:
        raise AggregateItemError(table, key, attribute, f"expected a list of numbers, got {value!r}") from err


def _read_items(dynamodb, table: str, keys: Sequence[str], **retry: Any) -> tuple[dict[str, dict[str, Any]], int]:
    """Items by entityId (absent keys are simply missing), consistent reads."""
    items, calls = batch_get(dynamodb, table, [{ENTITY_KEY: {"S": k}} for k in keys], ConsistentRead=True, **retry)
    return {item[ENTITY_KEY]["S"]: item for item in items}, calls


def _write_items(dynamodb, table: str, items: Sequence[dict[str, Any]], **retry: Any) -> int:
    calls = 0
    for start in range(0, len(items), MAX_WRITE_REQUESTS):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + MAX_WRITE_REQUESTS]]
        try:
            calls += batch_write(dynamodb, table, requests, **retry)
        except BatchIncomplete as err:
            raise BatchIncomplete(table, err.remaining, f"items {err.reason}; re-run: writes are idempotent") from err
    return calls
