"""Investigator measures of one labelled day: what a team that can examine k alerts a day (the
alert budget, FRAUD_ALERT_BUDGET, 100 by default) finds when it takes the day's k highest-ranked.
Definitions after Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud
Detection", chapter on performance metrics (precision top-k and card precision top-k).

Ranking is the alerts' (`alerts.rank_order`, the order `rank_alerts` gives the SNS messages and
the report): fraudScore descending, then rawScore descending, then transactionId, so the top k are
exactly the k first alerts of a day with that many.

Keys (`INVESTIGATOR_KEYS`, part of `performance/{date}.json`; null where undefined):

- alert_budget: k.
- precision_at_k: of the day's top-k scored transactions, the share confirmed as fraud. Divided by
  min(k, scored transactions): a day with fewer than k transactions is judged on the ones it has
  (the handbook divides by k whatever the day holds, which caps a small day's precision below 1).
  As with alert_precision, a transaction without a label (yet) counts as not confirmed, so the
  figure grows as labels arrive; null while the day has no labels at all.
- labelled_at_k: how many of those top-k transactions carry a label: how final precision_at_k is.
- card_precision_at_k: per card (customerId), its best-ranked transaction of the day stands for it
  (the handbook's maximum score per card, ties broken as the alerts break them) and the card is
  compromised when at least one of its transactions that day is confirmed fraud; cards ranked so,
  the share of the top k that are compromised, divided by min(k, cards). Transactions without a
  customerId (null or blank) belong to no card: counted in precision_at_k, skipped here, counted in
  cards_unknown. Null while the day has no labels, or no card.
- compromised_cards_found: compromised cards among the top k cards; compromised_cards: compromised
  cards of the whole day; cards: distinct cards of the day; cards_unknown: transactions without one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.lib.config import TRANSACTION_ID
from fraud_assets.lib.inference.alerts import rank_order

DEFAULT_ALERT_BUDGET = 100
CARD_ID = "customerId"
INVESTIGATOR_KEYS: tuple[str, ...] = (
    "alert_budget",
    "precision_at_k",
    "labelled_at_k",
    "card_precision_at_k",
    "compromised_cards_found",
    "compromised_cards",
    "cards",
    "cards_unknown",
)


def validate_budget(budget: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"the alert budget must be a whole number of at least 1, not {budget!r}")
    return int(budget)


def investigator_measures(joined: pd.DataFrame, budget: int) -> dict[str, Any]:
    """The day's INVESTIGATOR_KEYS at k = `budget` from a table of the day's scored transactions
    (transactionId, fraudScore, isFraud as a nullable boolean; rawScore and customerId when known:
    without rawScore equal scores go by transactionId, without customerId no transaction has a card)."""
    k = validate_budget(budget)
    missing = [c for c in (TRANSACTION_ID, "fraudScore", "isFraud") if c not in joined.columns]
    if missing:
        raise ValueError(f"scored transactions lack columns {missing} (has {list(joined.columns)})")
    order = rank_order(joined)
    is_fraud = joined["isFraud"].astype("boolean")
    fraud = is_fraud.fillna(False).to_numpy(dtype=bool)[order]
    labelled = is_fraud.notna().to_numpy()[order]
    any_label = bool(labelled.any())
    top = min(k, len(order))

    cards = joined[CARD_ID] if CARD_ID in joined.columns else pd.Series([None] * len(joined), index=joined.index, dtype=object)
    has_card = (cards.notna() & cards.astype(str).str.strip().ne("")).to_numpy()[order]
    card_ids = pd.Series(cards.to_numpy(dtype=object)[order][has_card]).astype(str)
    compromised = pd.Series(fraud[has_card]).groupby(card_ids.to_numpy(), sort=False).any()
    # In rank order, a card's first transaction is its best-ranked one: the cards in rank order.
    ranked_cards = card_ids[~card_ids.duplicated()].to_numpy()
    top_cards = min(k, len(ranked_cards))
    found = int(compromised.loc[ranked_cards[:top_cards]].sum()) if top_cards else 0
    return {
        "alert_budget": k,
        "precision_at_k": int(fraud[:top].sum()) / top if any_label and top else None,
        "labelled_at_k": int(labelled[:top].sum()),
        "card_precision_at_k": found / top_cards if any_label and top_cards else None,
        "compromised_cards_found": found,
        "compromised_cards": int(compromised.sum()),
        "cards": len(ranked_cards),
        "cards_unknown": int((~has_card).sum()),
    }
