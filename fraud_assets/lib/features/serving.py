"""Serving a day's history features: the day's batch, the customers' last 30 days and the
terminals' labelled days read from the aggregates table (one BatchGetItem per 100 customers or
terminals, never a call per transaction), then the very functions training uses
(history.serving_history_features)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from fraud_assets.lib.features import history, store


@dataclasses.dataclass(frozen=True)
class ServedHistory:
    features: pd.DataFrame  # HISTORY_FEATURES, index aligned with the batch
    customers: int
    customer_transactions_read: int
    terminals: int
    terminal_days_read: int
    without_customer: int
    without_terminal: int

    def metadata(self) -> dict[str, Any]:
        return {
            "history_customers": self.customers,
            "history_transactions_read": self.customer_transactions_read,
            "history_terminals": self.terminals,
            "history_terminal_days_read": self.terminal_days_read,
            "without_customer": self.without_customer,
            "without_terminal": self.without_terminal,
        }


def terminal_window(day: int, label_delay_days: int) -> tuple[int, int]:
    """The labelled days a transaction of `day` may know: the 30 ending label_delay_days + 1 before it."""
    last = day - label_delay_days - 1
    return last - store.HISTORY_DAYS + 1, last


def serve_history(dynamodb, table: str, date: str, batch: pd.DataFrame, label_delay_days: int) -> ServedHistory:
    """The history features of the day's accepted transactions (`batch`: customerId, merchant,
    timestamp, Amount) from the aggregates table."""
    day = store.day_index(date)
    customers = batch["customerId"].dropna().astype(str).unique()
    merchants = batch["merchant"].dropna().astype(str).unique()
    customer_history = store.read_customer_history(dynamodb, table, customers, day)
    first, last = terminal_window(day, label_delay_days)
    terminal_counts = store.read_terminal_counts(dynamodb, table, merchants, first, last)
    features = history.serving_history_features(batch, customer_history, terminal_counts, label_delay_days)
    return ServedHistory(
        features=features,
        customers=len(customers),
        customer_transactions_read=len(customer_history),
        terminals=len(merchants),
        terminal_days_read=len(terminal_counts),
        without_customer=int(batch["customerId"].isna().sum()),
        without_terminal=int(batch["merchant"].isna().sum()),
    )


def with_served_history(transactions: pd.DataFrame, served: pd.DataFrame | None) -> pd.DataFrame:
    """The day's transactions with the history features daily_scores served them (its
    `history_features` table, by transactionId), for what reads the model's inputs again (drift's
    train/serve skew); as they are when the model had none."""
    if served is None:
        return transactions
    return transactions.merge(served, on="transactionId", how="left", validate="one_to_one")
