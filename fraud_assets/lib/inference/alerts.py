"""High-risk alerts (the seeds' Filter High Risk + Alert stages): rank the day's high-risk
transactions, batch them at most 100 per SNS message, publish each message once.

"Once" is kept by a ledger in S3: after a message is published, `<ledger_prefix>/<messageKey>.json`
records it, and a later run (a retry after a crash, a re-materialisation) skips messages whose
ledger object exists. The key of a message is a hash of its date and transaction ids, so the same
alerts always give the same key. The one window left is a crash between Publish and the ledger
write: that message goes out again on the retry (at-least-once). Subscribers can close it with the
`messageKey` attribute every message carries; a FIFO topic closes it by itself (the key is its
deduplication id).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.config import HIGH_RISK_THRESHOLD, TRANSACTION_ID
from fraud_assets.lib.inference.daily import format_timestamps
from fraud_assets.lib.inference.scoring import risk_levels
from fraud_assets.lib.aws.storage import json_default, object_exists, put_json, validate_key_part

URGENT_THRESHOLD = 0.95
MAX_ALERTS_PER_MESSAGE = 100  # the seeds' batching
SNS_MAX_BYTES = 256 * 1024  # Publish's limit for message + attributes
SNS_MAX_SUBJECT = 100
URGENT, HIGH_PRIORITY = "URGENT", "HIGH"
_TRANSACTION_DETAILS = ("amount", "merchant", "customerId", "category", "timestamp")


@dataclasses.dataclass(frozen=True)
class PublishResult:
    sent: list[str]
    skipped: list[str]


def high_risk_alerts(
    scored: pd.DataFrame,
    transactions: pd.DataFrame,
    threshold: float = HIGH_RISK_THRESHOLD,
    urgent_threshold: float = URGENT_THRESHOLD,
) -> list[dict[str, Any]]:
    """Transactions with fraudScore >= `threshold`, highest score first (ties by transactionId),
    with the transaction's details. alertPriority is URGENT when the score is above
    `urgent_threshold` (strictly), HIGH otherwise."""
    if not 0.0 <= threshold <= urgent_threshold <= 1.0:
        raise ValueError(f"need 0 <= threshold ({threshold}) <= urgent_threshold ({urgent_threshold}) <= 1")
    _require(scored, (TRANSACTION_ID, "fraudScore"), "scored")
    _require(transactions, (TRANSACTION_ID, *_TRANSACTION_DETAILS), "transactions")
    high = scored.loc[scored["fraudScore"].to_numpy(dtype=np.float64) >= threshold]
    if high.empty:
        return []
    details = transactions.loc[:, [TRANSACTION_ID, *_TRANSACTION_DETAILS]]
    if details[TRANSACTION_ID].duplicated().any():
        dup = details.loc[details[TRANSACTION_ID].duplicated(), TRANSACTION_ID].iloc[0]
        raise ValueError(f"transactions hold {dup!r} more than once: which details would the alert show?")
    joined = high.merge(details, on=TRANSACTION_ID, how="left", indicator=True, suffixes=("_scored", ""))
    unknown = joined.loc[joined["_merge"] == "left_only", TRANSACTION_ID]
    if len(unknown):
        raise ValueError(f"{len(unknown)} scored transactions are not in the day's transactions, e.g. {unknown.iloc[0]!r}")
    joined = joined.sort_values(["fraudScore", TRANSACTION_ID], ascending=[False, True], kind="mergesort")
    scores = joined["fraudScore"].to_numpy(dtype=np.float64)
    levels = (joined["riskLevel"] if "riskLevel" in joined.columns else pd.Series(risk_levels(scores))).astype(str).tolist()
    return [
        {
            "transactionId": tid,
            "fraudScore": score,
            "riskLevel": level,
            "alertPriority": URGENT if score > urgent_threshold else HIGH_PRIORITY,
            "amount": amount,
            "merchant": merchant,
            "customerId": customer,
            "category": category,
            "timestamp": timestamp,
        }
        for tid, score, level, amount, merchant, customer, category, timestamp in zip(
            joined[TRANSACTION_ID].astype(str).tolist(),
            scores.tolist(),
            levels,
            joined["amount"].to_numpy(dtype=np.float64).tolist(),
            joined["merchant"].astype(str).tolist(),
            joined["customerId"].astype(str).tolist(),
            joined["category"].astype(str).tolist(),
            format_timestamps(joined["timestamp"]),
        )
    ]


def alert_messages(
    alerts: Sequence[dict[str, Any]], batch_date: str, max_per_message: int = MAX_ALERTS_PER_MESSAGE
) -> list[dict[str, Any]]:
    """The alerts in order, cut into messages of at most `max_per_message` (<= 100) alerts. Each
    message's `messageKey` hashes its date and transaction ids: stable across runs, so the ledger
    can recognise a message already sent."""
    validate_key_part(batch_date, "batch date")
    if not 1 <= max_per_message <= MAX_ALERTS_PER_MESSAGE:
        raise ValueError(f"max_per_message must be 1..{MAX_ALERTS_PER_MESSAGE}, not {max_per_message}")
    parts = [list(alerts[i : i + max_per_message]) for i in range(0, len(alerts), max_per_message)]
    messages = []
    for number, part in enumerate(parts, start=1):
        ids = [a[TRANSACTION_ID] for a in part]
        digest = hashlib.sha256("\n".join([batch_date, *ids]).encode()).hexdigest()[:32]
        priority = URGENT if any(a.get("alertPriority") == URGENT for a in part) else HIGH_PRIORITY
        messages.append(
            {
                "messageKey": digest,
                "batchDate": batch_date,
                "part": number,
                "parts": len(parts),
                "alertCount": len(part),
                "maxPriority": priority,
                "subject": f"Fraud alerts {batch_date}: {len(part)} high-risk transactions ({number} of {len(parts)})",
                "alerts": part,
            }
        )
    return messages


def publish_alerts(
    sns,
    s3,
    *,
    topic_arn: str,
    ledger_bucket: str,
    ledger_prefix: str,
    messages: Sequence[dict[str, Any]],
    resend: bool = False,
) -> PublishResult:
    """Publish each message (a dict with a `messageKey`; `subject`, `batchDate`, `alertCount`,
    `maxPriority` used when present) unless its ledger object exists; `resend=True` publishes all
    again. Returns the message keys sent and skipped, in order.

    The ledger prefix is the caller's, per partition (e.g. `alert-ledger/<date>`), so that one
    day's ledger never hides another day's alerts."""
    prefix = "/".join(validate_key_part(part, "ledger prefix part") for part in ledger_prefix.strip("/").split("/"))
    keys = [validate_key_part(str(m.get("messageKey", "")), "messageKey") for m in messages]
    if len(set(keys)) != len(keys):
        raise ValueError("two messages share a messageKey: the ledger could not tell them apart")
    fifo = topic_arn.endswith(".fifo")
    sent: list[str] = []
    skipped: list[str] = []
    for key, message in zip(keys, messages):
        ledger_key = f"{prefix}/{key}.json"
        if not resend and object_exists(s3, ledger_bucket, ledger_key):
            skipped.append(key)
            continue
        body = json.dumps(message, default=json_default, allow_nan=False)
        subject = _subject(message)
        attributes = _attributes(key, message)
        size = len(body.encode()) + len(subject) + sum(len(k) + len(v["StringValue"]) for k, v in attributes.items())
        if size > SNS_MAX_BYTES:
            raise ValueError(f"message {key} is {size} bytes, over SNS's {SNS_MAX_BYTES}: use fewer alerts per message")
        request: dict[str, Any] = dict(TopicArn=topic_arn, Subject=subject, Message=body, MessageAttributes=attributes)
        if fifo:
            request["MessageGroupId"] = str(message.get("batchDate") or "fraud-alerts")
            # A deliberate resend must not be swallowed by the topic's 5-minute deduplication.
            request["MessageDeduplicationId"] = f"{key}-{uuid.uuid4().hex}" if resend else key
        response = sns.publish(**request)
        put_json(
            s3,
            ledger_bucket,
            ledger_key,
            {
                "messageKey": key,
                "messageId": response.get("MessageId"),
                "topicArn": topic_arn,
                "batchDate": message.get("batchDate"),
                "alertCount": message.get("alertCount"),
                "publishedAt": dt.datetime.now(dt.timezone.utc).isoformat(),
                "resend": resend,
            },
        )
        sent.append(key)
    return PublishResult(sent=sent, skipped=skipped)


def _subject(message: dict[str, Any]) -> str:
    subject = str(message.get("subject") or f"Fraud detection {message.get('batchDate', '')}".strip())
    # SNS subjects: ASCII, no line breaks, at most 100 characters.
    subject = "".join(c if " " <= c <= "~" else " " for c in subject).strip()
    return subject[:SNS_MAX_SUBJECT] or "Fraud detection"


def _attributes(key: str, message: dict[str, Any]) -> dict[str, dict[str, str]]:
    attributes = {"messageKey": {"DataType": "String", "StringValue": key}}
    if message.get("batchDate") is not None:
        attributes["batchDate"] = {"DataType": "String", "StringValue": str(message["batchDate"])}
    if message.get("alertCount") is not None:
        attributes["alertCount"] = {"DataType": "Number", "StringValue": str(int(message["alertCount"]))}
    if message.get("maxPriority") is not None:
        attributes["maxPriority"] = {"DataType": "String", "StringValue": str(message["maxPriority"])}
    return attributes


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing} (has {list(frame.columns)})")

