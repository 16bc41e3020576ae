"""High-risk alerts (the original design's Filter High Risk + Alert stages): rank the day's high-risk
transactions, batch them at most 100 and at most 256 KiB per SNS message, publish each message once.

The topic must exist: run-time code never creates infrastructure, so a mistyped topic name is a
clear failure (`MissingTopicError`), not alerts published to a new topic nobody subscribes to.

"Once" is kept by a ledger in S3, one entry per message, `<ledger_prefix>/<topic name>/<messageKey>.json`:
before publishing, a run claims the entry ("publishing", its host and pid) with a conditional put
that only creates, so of two runs of one day at once exactly one sends each message (the other
fails the step: re-run to confirm); after publishing it records "sent" with the topic ARN and SNS
message id, and a later run (a retry after a crash, a re-materialisation) skips sent messages. A
claim whose process is gone (a SIGKILLed run) is taken over. Keyed by topic, so a message sent to another topic is not taken as delivered
here. The key of a message is a hash of its date and transaction ids, so the same alerts always
give the same key. Delivery is **at-least-once**: a crash (SIGKILL) between Publish and the ledger
write sends that one message again on the retry. Every message carries its `messageKey` in the body
and as a message attribute: the deduplication id subscribers use to drop the repeat; a FIFO topic
drops it by itself (the key is its deduplication id).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import socket
import uuid
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.aws.storage import json_default, put_json, validate_key_part
from fraud_assets.lib.config import HIGH_RISK_THRESHOLD, TRANSACTION_ID
from fraud_assets.lib.inference.daily import format_timestamps
from fraud_assets.lib.inference.reasons import reasons_by_transaction
from fraud_assets.lib.inference.scoring import risk_levels
from fraud_assets.lib.inference.summaries import AlertSummary

URGENT_THRESHOLD = 0.95
MAX_ALERTS_PER_MESSAGE = 100  # the original design's batching
SNS_MAX_BYTES = 256 * 1024  # Publish's limit for message + attributes
SNS_MAX_SUBJECT = 100
# A claim (a ledger entry "publishing") from another host older than this is a dead publisher's.
CLAIM_TTL_SECONDS = 900
# Free text in an alert is cut to this many characters: one absurd merchant name must not make an
# alert too big for any message.
MAX_DETAIL_CHARS = 4_096
URGENT, HIGH_PRIORITY = "URGENT", "HIGH"
_TRANSACTION_DETAILS = ("amount", "merchant", "customerId", "category", "timestamp")


@dataclasses.dataclass(frozen=True)
class PublishResult:
    sent: list[str]
    skipped: list[str]


class AlertsInFlight(RuntimeError):
    """Some messages were claimed by another run publishing the same day at the same time: this run
    sent the rest and none twice; the step fails so that a re-run confirms the others went out."""

    def __init__(self, sent: list[str], skipped: list[str], in_flight: list[str]):
        self.sent, self.skipped, self.in_flight = sent, skipped, in_flight
        super().__init__(
            f"{len(in_flight)} alert messages are being published by another run of this day right now (e.g. {in_flight[0]}); "
            f"this run sent {len(sent)} and skipped {len(skipped)} already sent, none twice. Re-run the partition once the "
            "other run has finished to confirm every message went out."
        )


class MissingTopicError(LookupError):
    """The SNS topic to publish to does not exist (a mistyped name, or the stack not deployed)."""

    def __init__(self, name: str, region: str | None):
        self.name = name
        super().__init__(
            f"SNS topic {name!r} does not exist in {region or 'this region'}: nothing was published. "
            "Check the topic name (FRAUD_ALERTS_TOPIC / FRAUD_MONITORING_TOPIC / FRAUD_FAILURES_TOPIC) or "
            "deploy the platform's topics; run-time code never creates them."
        )


def find_topic_arn(sns, name: str) -> str:
    """The ARN of the existing topic called `name` (ListTopics), or MissingTopicError. Never
    CreateTopic: creating on publish would turn a typo into alerts sent to nowhere."""
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page.get("Topics", []):
            if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                return topic["TopicArn"]
    raise MissingTopicError(name, getattr(sns.meta, "region_name", None))


def _descending(value: Any) -> float:
    """A sort key putting higher numbers first; a missing or NaN number after every real one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("inf")
    return -number if number == number else float("inf")


def alert_rank_key(alert: dict[str, Any]) -> tuple[float, float, str]:
    """fraudScore descending, then rawScore descending, then transactionId. Isotonic calibration
    maps a range of raw scores to one value (most of a day's alerts at 1.0), so the calibrated
    score alone leaves the order arbitrary; the raw score is the model's own finer ranking, the id
    makes the order total."""
    return _descending(alert.get("fraudScore")), _descending(alert.get("rawScore")), str(alert.get(TRANSACTION_ID))


def rank_alerts(alerts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts in the one order the SNS messages and the daily report both use (`alert_rank_key`)."""
    return sorted(alerts, key=alert_rank_key)


def rank_order(scored: pd.DataFrame) -> np.ndarray:
    """The row positions of a scored table (transactionId, fraudScore, optionally rawScore) in
    `alert_rank_key`'s order: what `rank_alerts` would make of its rows as alerts, for a whole day
    at once. Without a rawScore column, equal scores go by transactionId."""
    _require(scored, (TRANSACTION_ID, "fraudScore"), "scored")

    def descending(column: str) -> np.ndarray:
        if column not in scored.columns:
            return np.full(len(scored), np.inf)
        values = pd.to_numeric(scored[column], errors="coerce").to_numpy(dtype=np.float64)
        return np.where(np.isnan(values), np.inf, -values)  # as `_descending`: missing after every number

    keys_ = pd.DataFrame({"s": descending("fraudScore"), "r": descending("rawScore"), "i": scored[TRANSACTION_ID].astype(str).to_numpy()})
    return keys_.sort_values(["s", "r", "i"], kind="mergesort").index.to_numpy()


def cap_alerts(alerts: Sequence[dict[str, Any]], budget: int | None) -> tuple[list[dict[str, Any]], int]:
    """The first `budget` alerts by `rank_alerts` and how many were held back (None: no cap, all
    kept). The same alerts and budget always keep the same ones, so their messages (and keys) are
    the same on every run of the day."""
    ranked = rank_alerts(alerts)
    if budget is None:
        return ranked, 0
    if budget < 1:
        raise ValueError(f"the alert budget must be at least 1, not {budget}")
    return ranked[:budget], max(len(ranked) - budget, 0)


def high_risk_alerts(
    scored: pd.DataFrame,
    transactions: pd.DataFrame,
    threshold: float = HIGH_RISK_THRESHOLD,
    urgent_threshold: float = URGENT_THRESHOLD,
    reasons: dict[str, list[dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Transactions with fraudScore >= `threshold`, ranked by `rank_alerts` (score, then raw score,
    then transactionId), with the transaction's details and `rawScore` (None when `scored` has no
    rawScore column; daily_scores always has one). alertPriority is URGENT when the score is above
    `urgent_threshold` (strictly), HIGH otherwise. With `reasons` (transactionId -> top
    contributing features, from reasons.reasons_by_transaction) each alert carries `topReasons`."""
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
    scores = joined["fraudScore"].to_numpy(dtype=np.float64)
    raw = joined["rawScore"].to_numpy(dtype=np.float64).tolist() if "rawScore" in joined.columns else [None] * len(joined)
    levels = (joined["riskLevel"] if "riskLevel" in joined.columns else pd.Series(risk_levels(scores))).astype(str).tolist()
    alerts = [
        {
            "transactionId": tid,
            "fraudScore": score,
            "rawScore": raw_score,
            "riskLevel": level,
            "alertPriority": URGENT if score > urgent_threshold else HIGH_PRIORITY,
            "amount": amount,
            "merchant": merchant,
            "customerId": customer,
            "category": category,
            "timestamp": timestamp,
        }
        for tid, score, raw_score, level, amount, merchant, customer, category, timestamp in zip(
            joined[TRANSACTION_ID].astype(str).tolist(),
            scores.tolist(),
            raw,
            levels,
            joined["amount"].to_numpy(dtype=np.float64).tolist(),
            _cut(joined["merchant"]),
            _cut(joined["customerId"]),
            _cut(joined["category"]),
            format_timestamps(joined["timestamp"]),
        )
    ]
    if reasons is not None:
        for alert in alerts:
            alert["topReasons"] = reasons.get(alert["transactionId"], [])
    return rank_alerts(alerts)


def alert_messages(
    alerts: Sequence[dict[str, Any]],
    batch_date: str,
    max_per_message: int = MAX_ALERTS_PER_MESSAGE,
    max_bytes: int = SNS_MAX_BYTES,
) -> list[dict[str, Any]]:
    """The alerts ranked by `rank_alerts` (the report's order too), cut into messages of at most `max_per_message` (<= 100) alerts and at
    most `max_bytes` as SNS counts a Publish (body + subject + message attributes), whatever each
    alert dict holds. Each message's `messageKey` hashes its date and transaction ids: stable across
    runs, so the ledger can recognise a message already sent. An alert too big for a message of its
    own is a ValueError naming it."""
    validate_key_part(batch_date, "batch date")
    if not 1 <= max_per_message <= MAX_ALERTS_PER_MESSAGE:
        raise ValueError(f"max_per_message must be 1..{MAX_ALERTS_PER_MESSAGE}, not {max_per_message}")
    if not 1 <= max_bytes <= SNS_MAX_BYTES:
        raise ValueError(f"max_bytes must be 1..{SNS_MAX_BYTES}, not {max_bytes}")
    # Ranked here as well: the messages (and their keys) do not depend on the order alerts arrive in.
    alerts = rank_alerts(alerts)
    # A message's size is its envelope plus its alerts' JSON plus one ", " between alerts; the
    # envelope is measured with the widest numbers it can hold, so each cut is an upper bound, and
    # every finished message is measured exactly below.
    envelope = publish_size(_message(batch_date, 10**6, 10**6, [], priority=URGENT, count=MAX_ALERTS_PER_MESSAGE))
    sizes = [len(_body(a)) for a in alerts]
    parts: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    used = envelope
    for alert, size in zip(alerts, sizes):
        extra = size + (2 if current else 0)
        if current and (len(current) == max_per_message or used + extra > max_bytes):
            parts.append(current)
            current, used, extra = [], envelope, size
        if envelope + size > max_bytes:
            raise ValueError(
                f"alert for {alert.get(TRANSACTION_ID)!r} is {size} bytes: no SNS message of at most {max_bytes} bytes can hold it"
            )
        current.append(alert)
        used += extra
    if current:
        parts.append(current)
    messages = []
    for number, part in enumerate(parts, start=1):
        priority = URGENT if any(a.get("alertPriority") == URGENT for a in part) else HIGH_PRIORITY
        message = _message(batch_date, number, len(parts), part, priority=priority, count=len(part))
        if publish_size(message) > max_bytes:  # the bound above makes this a bug, never a day's fate
            raise AssertionError(f"message {number} of {batch_date} is {publish_size(message)} bytes, over {max_bytes}")
        messages.append(message)
    return messages


def _message(batch_date: str, number: int, parts: int, alerts: list[dict[str, Any]], *, priority: str, count: int) -> dict[str, Any]:
    ids = [str(a.get(TRANSACTION_ID)) for a in alerts]
    return {
        "messageKey": hashlib.sha256("\n".join([batch_date, *ids]).encode()).hexdigest()[:32],
        "batchDate": batch_date,
        "part": number,
        "parts": parts,
        "alertCount": count,
        "maxPriority": priority,
        "subject": f"Fraud alerts {batch_date}: {count} high-risk transactions ({number} of {parts})",
        "alerts": alerts,
    }


def publish_size(message: dict[str, Any]) -> int:
    """Bytes SNS counts against its 256 KiB limit for this message as `publish_alerts` sends it:
    the body, the subject, and each attribute's name, data type and value."""
    key = str(message.get("messageKey", ""))
    attributes = _attributes(key, message)
    return (
        len(_body(message))
        + len(_subject(message).encode())
        + sum(len(k.encode()) + len(v["DataType"].encode()) + len(v["StringValue"].encode()) for k, v in attributes.items())
    )


def _body(value: Any) -> bytes:
    return json.dumps(value, default=json_default, allow_nan=False).encode()


def _cut(values: pd.Series) -> list[str]:
    return [v if len(v) <= MAX_DETAIL_CHARS else v[: MAX_DETAIL_CHARS - 1] + "…" for v in values.astype(str).tolist()]


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
    `maxPriority` used when present) unless its ledger object exists for this topic; `resend=True`
    publishes all again. Returns the message keys sent and skipped, in order.

    The ledger prefix is the caller's, per partition (e.g. `alert-ledger/<date>`), so that one
    day's ledger never hides another day's alerts; below it, one folder per topic."""
    prefix = "/".join(validate_key_part(part, "ledger prefix part") for part in ledger_prefix.strip("/").split("/"))
    prefix = f"{prefix}/{_topic_folder(topic_arn)}"
    keys = [validate_key_part(str(m.get("messageKey", "")), "messageKey") for m in messages]
    if len(set(keys)) != len(keys):
        raise ValueError("two messages share a messageKey: the ledger could not tell them apart")
    fifo = topic_arn.endswith(".fifo")
    sent: list[str] = []
    skipped: list[str] = []
    in_flight: list[str] = []
    for key, message in zip(keys, messages):
        ledger_key = f"{prefix}/{key}.json"
        if not resend:
            entry = _ledger_entry(s3, ledger_bucket, ledger_key)
            if entry is not None and entry.get("status", "sent") == "sent":
                skipped.append(key)
                continue
            if entry is not None:
                if _claim_is_live(entry):
                    in_flight.append(key)  # another run is publishing it right now
                    continue
                # Claimed by a publisher that died before it could record the send: take it over.
                s3.delete_object(Bucket=ledger_bucket, Key=ledger_key)
            if not _claim(s3, ledger_bucket, ledger_key, key, topic_arn):
                in_flight.append(key)  # another run claimed it between our read and our claim
                continue
        body = _body(message).decode()
        subject = _subject(message)
        attributes = _attributes(key, message)
        size = publish_size(message)
        request: dict[str, Any] = dict(TopicArn=topic_arn, Subject=subject, Message=body, MessageAttributes=attributes)
        if fifo:
            request["MessageGroupId"] = str(message.get("batchDate") or "fraud-alerts")
            # A deliberate resend must not be swallowed by the topic's 5-minute deduplication.
            request["MessageDeduplicationId"] = f"{key}-{uuid.uuid4().hex}" if resend else key
        try:
            if size > SNS_MAX_BYTES:
                raise ValueError(f"message {key} is {size} bytes, over SNS's {SNS_MAX_BYTES}: use fewer alerts per message")
            response = sns.publish(**request)
        except BaseException:
            if not resend:  # nothing went out: let a retry (in this process too) publish it
                s3.delete_object(Bucket=ledger_bucket, Key=ledger_key)
            raise
        put_json(
            s3,
            ledger_bucket,
            ledger_key,
            {
                "status": "sent",
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
    if in_flight:
        raise AlertsInFlight(sent, skipped, in_flight)
    return PublishResult(sent=sent, skipped=skipped)


def _ledger_entry(s3, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def _claim(s3, bucket: str, key: str, message_key: str, topic_arn: str) -> bool:
    """Write the ledger entry as "publishing" only if there is none (S3 conditional put): of two
    runs publishing one day at once, exactly one sends each message."""
    claim = {
        "status": "publishing",
        "messageKey": message_key,
        "topicArn": topic_arn,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "claimedAt": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
    try:
        put_json(s3, bucket, key, claim, if_absent=True)
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def _claim_is_live(entry: dict[str, Any]) -> bool:
    """Is the publisher that claimed this message still at it? On this host its process says so
    (a SIGKILLed run's claim is taken over at once); elsewhere, a claim younger than CLAIM_TTL."""
    if entry.get("host") == socket.gethostname() and isinstance(entry.get("pid"), int):
        try:
            os.kill(entry["pid"], 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return entry["pid"] != os.getpid()  # our own is an attempt this process already gave up
    try:
        age = dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(str(entry.get("claimedAt")))
    except ValueError:
        return False
    return age.total_seconds() < CLAIM_TTL_SECONDS


# -- a day's alerts (fraud_alerts) ---------------------------------------------------------------

ALERT_METRIC_UNITS = {"AlertsSent": "Count", "AlertMessagesSent": "Count"}


@dataclasses.dataclass(frozen=True)
class DayAlerts:
    """fraud_alerts' outcome: the day's ranked alerts (at most `budget` of them when capped), the
    messages they make, which of those this run sent (the rest the ledger showed as sent already),
    and how many high-risk transactions the budget held back."""

    date: str
    alerts: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    published: PublishResult
    held_back: int = 0
    budget: int | None = None  # None: not capped

    def summary(self) -> AlertSummary:
        return AlertSummary(
            date=self.date,
            high_risk_count=len(self.alerts) + self.held_back,
            alerts_sent=len(self.published.sent),
            batch_count=len(self.messages),
            sent_message_keys=list(self.published.sent),
            skipped_message_keys=list(self.published.skipped),
            alerts_held_back=self.held_back,
            alert_budget=self.budget,
        )

    def cloudwatch_metrics(self) -> dict[str, int]:
        """This run's sends (units: ALERT_METRIC_UNITS): a re-run that finds every message in the
        ledger sends, and counts, none."""
        sent = set(self.published.sent)
        return {
            "AlertsSent": sum(m["alertCount"] for m in self.messages if m["messageKey"] in sent),
            "AlertMessagesSent": len(sent),
        }

    def metadata(self) -> dict[str, int]:
        """Counts for the UI: high_risk is every high-risk transaction, alerted the ones in the
        messages (all of them unless capped), alerts_held_back the rest."""
        return {
            "high_risk": len(self.alerts) + self.held_back,
            "alerted": len(self.alerts),
            keys.ALERTS_HELD_BACK: self.held_back,
            "urgent": sum(1 for a in self.alerts if a["alertPriority"] == URGENT),
            "messages": len(self.messages),
            keys.MESSAGES_SENT: len(self.published.sent),
            "messages_skipped": len(self.published.skipped),
        }

    def held_back_note(self) -> str:
        """One line for the run's log: what the budget did to the day's alerts."""
        if self.budget is None:
            return f"{len(self.alerts)} high-risk alerts, not capped (no alert budget applied)"
        return (
            f"{len(self.alerts)} of {len(self.alerts) + self.held_back} high-risk alerts sent at the alert budget of "
            f"{self.budget} (highest first); {self.held_back} held back"
        )


def send_day_alerts(
    sns,
    s3,
    *,
    date: str,
    scores: pd.DataFrame,
    transactions: pd.DataFrame,
    reasons: pd.DataFrame | None,
    high_threshold: float,
    urgent_threshold: float,
    topic_arn: str,
    ledger_bucket: str,
    resend: bool = False,
    budget: int | None = None,
) -> DayAlerts:
    """The day's high-risk transactions (fraudScore >= `high_threshold`, the scoring model's) as
    ranked alerts with their top reasons (the `reasons` table of daily_scores), URGENT above
    `urgent_threshold` (never below the high-risk threshold), published once per message to
    `topic_arn` with the day's ledger under `alert-ledger/{date}` (`resend`: all again).

    With a `budget` only the first `budget` alerts by `rank_alerts` are sent (`cap_alerts`); the
    rest are counted as held back. Capped alerts are deterministic, so a retry or a repeated run
    with the same budget makes the same messages and the ledger keeps each to one send. A budget
    changed between runs of one day changes the last, partial message (its key hashes its alerts):
    that message is new to the ledger and goes out, repeating the alerts it shares with the old one."""
    alerts, held_back = cap_alerts(
        high_risk_alerts(
            scores,
            transactions,
            threshold=high_threshold,
            urgent_threshold=max(urgent_threshold, high_threshold),
            reasons=reasons_by_transaction(reasons),
        ),
        budget,
    )
    messages = alert_messages(alerts, date)
    published = publish_alerts(
        sns,
        s3,
        topic_arn=topic_arn,
        ledger_bucket=ledger_bucket,
        ledger_prefix=f"alert-ledger/{date}",
        messages=messages,
        resend=resend,
    )
    return DayAlerts(date, alerts, messages, published, held_back, budget)


def _topic_folder(topic_arn: str) -> str:
    name = topic_arn.rsplit(":", 1)[-1]
    try:
        return validate_key_part(name, "topic name")
    except ValueError:  # a name the key alphabet cannot hold (too long): its hash, still one per topic
        return "topic-" + hashlib.sha256(topic_arn.encode()).hexdigest()[:32]


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
