"""Keeping the aggregates table current: a day's transactions into the customers' items, a labelled
day's counts into the terminals' items, and, for the first daily partition, the tail of the raw
training history (the days before the first batch) so that the first days are served the history
training saw."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.lib.config import LABEL_COLUMN
from fraud_assets.lib.features import history, store


@dataclasses.dataclass(frozen=True)
class MaintenanceResult:
    transactions: int
    stored: int  # transactions with a customer (customers) or with a merchant and a label (terminals)
    entities: int
    calls: int
    seconds: float
    from_history: int = 0  # rows of the raw training history written with it (first partition only)

    def metadata(self) -> dict[str, Any]:
        per_10k = self.seconds / self.transactions * 10_000 if self.transactions else 0.0
        return {
            "transactions": self.transactions,
            "stored": self.stored,
            "entities": self.entities,
            "dynamodb_calls": self.calls,
            "seconds": round(self.seconds, 3),
            "seconds_per_10k_transactions": round(per_10k, 3),
            "from_training_history": self.from_history,
        }


def customer_rows(frame: pd.DataFrame, batch_day: int | None = None) -> pd.DataFrame:
    """customer_history rows plus `batch_day`: the given day, or each row's own day (history)."""
    rows = history.customer_history_rows(frame)
    rows["batch_day"] = batch_day if batch_day is not None else rows["micros"].to_numpy() // store.MICROS_PER_DAY
    return rows


def store_customer_day(
    dynamodb, table: str, transactions: pd.DataFrame, date: str, raw_tail: pd.DataFrame | None = None
) -> MaintenanceResult:
    """The day's accepted transactions (and, given, the raw history's last days) into the customers' items."""
    started = time.perf_counter()
    rows = customer_rows(transactions, store.day_index(date))
    from_history = 0
    if raw_tail is not None and len(raw_tail):
        tail = customer_rows(raw_tail)
        from_history = len(tail)
        rows = pd.concat([tail, rows], ignore_index=True)
    stats = store.write_customer_days(dynamodb, table, rows)
    stored = int(rows["customerId"].notna().sum())
    return MaintenanceResult(
        len(transactions), stored, stats.entities, stats.read_calls + stats.write_calls, time.perf_counter() - started, from_history
    )


def labelled_rows(transactions: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """The day's transactions that have a label (`labels`: isFraud by transactionId; missing =
    not labelled yet), with Class."""
    known = labels.dropna().astype(bool)
    rows = transactions[transactions["transactionId"].isin(known.index)].copy()
    rows[LABEL_COLUMN] = rows["transactionId"].map(known).astype(np.int64)
    return rows


def store_terminal_days(dynamodb, table: str, labelled: pd.DataFrame, date: str | None, label_delay_days: int) -> MaintenanceResult:
    """Each terminal's labelled transactions and frauds per day into its item. With `date`, only
    that day's counts are written: a transaction timed on another day (a late arrival) is left out
    rather than overwrite that day's count."""
    started = time.perf_counter()
    counts = history.terminal_day_counts(labelled)
    if date is not None:
        counts = counts[counts["day"] == store.day_index(date)]
    calls = store.write_terminal_days(dynamodb, table, counts, keep_days=label_delay_days + store.RETENTION_DAYS)
    stored = int(counts["tx"].sum()) if len(counts) else 0
    return MaintenanceResult(len(labelled), stored, len(counts), calls, time.perf_counter() - started)


def raw_history_tail(raw: pa.Table, before: str, days: int) -> pd.DataFrame:
    """The raw training rows (CUSTOMER_FIELDS, Amount, Class) timed on the `days` days before `before`."""
    frame = raw.to_pandas()
    micros = history.timestamp_micros(frame["timestamp"]) if len(frame) else np.empty(0, dtype=np.int64)
    end = store.day_index(before) * store.MICROS_PER_DAY
    keep = (micros >= end - days * store.MICROS_PER_DAY) & (micros < end)
    return frame[keep].reset_index(drop=True)
