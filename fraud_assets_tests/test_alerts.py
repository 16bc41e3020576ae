"""High-risk alerts: ranking and details, messages of at most 100 alerts, and publishing each
message once per day (S3 ledger) against moto's SNS with an SQS queue subscribed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.aws.storage import InvalidKeyError, get_json
from fraud_assets.lib.inference.alerts import (
    MAX_DETAIL_CHARS,
    SNS_MAX_BYTES,
    MissingTopicError,
    alert_messages,
    find_topic_arn,
    high_risk_alerts,
    publish_alerts,
    publish_size,
    rank_alerts,
    send_day_alerts,
)

DATE = "2024-05-01"


def day(scores: list[float], raw: list[float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"T-{i:03d}" for i in range(len(scores))]
    scored = pd.DataFrame(
        {
            "transactionId": ids,
            "timestamp": "ignored",
            "fraudScore": scores,
            "riskLevel": ["HIGH" if s >= 0.8 else "MEDIUM" if s >= 0.5 else "LOW" for s in scores],
        }
    )
    if raw is not None:
        scored["rawScore"] = raw
    transactions = pd.DataFrame(
        {
            "transactionId": ids[::-1],  # another order: the join must not rely on position
            "timestamp": pd.to_datetime([f"2024-05-01T10:{i % 60:02d}:00Z" for i in range(len(ids))][::-1], utc=True),
            "amount": [100.0 + i for i in range(len(ids))][::-1],
            "category": "online",
            "customerId": [f"C-{i}" for i in range(len(ids))][::-1],
            "merchant": "Suspicious Store",
        }
    )
    return scored, transactions


def test_high_risk_alerts_are_ranked_with_priority_and_details():
    scored, transactions = day([0.2, 0.85, 0.97, 0.8, 0.97, 0.79999, 0.95])
    alerts = high_risk_alerts(scored, transactions)
    assert [a["transactionId"] for a in alerts] == ["T-002", "T-004", "T-006", "T-001", "T-003"]
    assert [a["alertPriority"] for a in alerts] == ["URGENT", "URGENT", "HIGH", "HIGH", "HIGH"]  # 0.95 is not above
    assert alerts[0] == {
        "transactionId": "T-002",
        "fraudScore": 0.97,
        "rawScore": None,  # this scored table has no rawScore column
        "riskLevel": "HIGH",
        "alertPriority": "URGENT",
        "amount": 102.0,
        "merchant": "Suspicious Store",
        "customerId": "C-2",
        "category": "online",
        "timestamp": "2024-05-01T10:02:00.000000Z",
    }
    json.dumps(alerts)  # plain JSON types only
    assert high_risk_alerts(*day([0.1, 0.5])) == []


def test_calibration_ties_are_ranked_by_the_raw_score_in_alerts_and_messages():
    # After isotonic calibration most alerts score exactly 1.0: the raw score says which comes first.
    scored, transactions = day([1.0, 1.0, 0.9, 1.0, 1.0], raw=[0.97, 0.999, 0.95, 0.98, 0.97])
    alerts = high_risk_alerts(scored, transactions)
    ranked = ["T-001", "T-003", "T-000", "T-004", "T-002"]  # T-000 and T-004 tie on both: by id
    assert [a["transactionId"] for a in alerts] == ranked
    assert [a["rawScore"] for a in alerts] == [0.999, 0.98, 0.97, 0.97, 0.95]
    messages = alert_messages(alerts[::-1], DATE, max_per_message=2)
    assert [a["transactionId"] for m in messages for a in m["alerts"]] == ranked
    assert [a["rawScore"] for m in messages for a in m["alerts"]] == [0.999, 0.98, 0.97, 0.97, 0.95]


def ranked_before(a: dict, b: dict) -> bool:
    """May `a` come before `b`: a higher score, or the same score and a higher raw score, or both the
    same and the smaller id."""
    if a["fraudScore"] != b["fraudScore"]:
        return a["fraudScore"] > b["fraudScore"]
    if a["rawScore"] != b["rawScore"]:
        return a["rawScore"] > b["rawScore"]
    return a["transactionId"] < b["transactionId"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0.5, 0.8, 0.9, 1.0]), st.sampled_from([0.6, 0.81, 0.93, 0.995, 0.999])), max_size=60),
    st.randoms(use_true_random=False),
    st.integers(1, 100),
)
def test_alerts_and_messages_follow_one_total_order_whatever_the_row_order(pairs, rnd, per_message):
    # Few distinct values, so that ties on the score and on both scores are the rule.
    scored, transactions = day([p[0] for p in pairs], raw=[p[1] for p in pairs])
    shuffled = scored.sample(frac=1.0, random_state=rnd.randrange(2**32)).reset_index(drop=True)
    alerts = high_risk_alerts(shuffled, transactions)
    assert alerts == high_risk_alerts(scored, transactions)  # the order is the data's, not the rows'
    assert len(alerts) == sum(p[0] >= 0.8 for p in pairs)
    assert all(ranked_before(a, b) for a, b in zip(alerts, alerts[1:]))
    assert alerts == rank_alerts(alerts)
    reordered = alerts[:]
    rnd.shuffle(reordered)
    messages = alert_messages(reordered, DATE, per_message)
    assert [a for m in messages for a in m["alerts"]] == alerts
    assert [m["messageKey"] for m in messages] == [m["messageKey"] for m in alert_messages(alerts, DATE, per_message)]


def test_a_scored_transaction_without_details_is_an_error():
    scored, transactions = day([0.9, 0.95])
    with pytest.raises(ValueError, match="1 scored transactions are not in the day's transactions, e.g. 'T-001'"):
        high_risk_alerts(scored, transactions[transactions.transactionId != "T-001"])


def fake_alerts(n: int, urgent_every: int = 7) -> list[dict]:
    return [
        {"transactionId": f"T-{i:05d}", "fraudScore": 0.9, "alertPriority": "URGENT" if i % urgent_every == 0 else "HIGH"} for i in range(n)
    ]


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 450), st.integers(1, 100))
def test_messages_hold_at_most_100_alerts_and_every_alert_once(n, per_message):
    alerts = fake_alerts(n)
    messages = alert_messages(alerts, DATE, per_message)
    assert all(1 <= m["alertCount"] == len(m["alerts"]) <= min(100, per_message) for m in messages)
    assert [a for m in messages for a in m["alerts"]] == alerts
    assert len({m["messageKey"] for m in messages}) == len(messages)
    assert [m["part"] for m in messages] == list(range(1, len(messages) + 1))
    assert all(len(m["subject"]) <= 100 for m in messages)
    # Stable: the same alerts on the same day give the same keys; another day, other keys.
    assert [m["messageKey"] for m in alert_messages(alerts, DATE, per_message)] == [m["messageKey"] for m in messages]
    if messages:
        assert alert_messages(alerts, "2024-05-02", per_message)[0]["messageKey"] != messages[0]["messageKey"]


def sized_alerts(lengths: list[int], scores: list[float]) -> list[dict]:
    """Alerts as the day makes them, with free text of the given lengths and whatever else an alert
    may carry (e.g. per-alert reasons), highest score first."""
    order = sorted(range(len(lengths)), key=lambda i: -scores[i])
    return [
        {
            "transactionId": f"T-{i:05d}",
            "fraudScore": scores[i],
            "alertPriority": "URGENT" if scores[i] > 0.95 else "HIGH",
            "merchant": "é" * lengths[i],
            "reasons": [{"feature": f"V{j}", "contribution": 0.1} for j in range(lengths[i] % 5)],
        }
        for i in order
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 260).flatmap(
        lambda n: st.tuples(st.lists(st.integers(0, 8_000), min_size=n, max_size=n), st.lists(st.floats(0.8, 1.0), min_size=n, max_size=n))
    ),
    st.sampled_from([SNS_MAX_BYTES, 60_000]),
)
def test_messages_never_exceed_100_alerts_or_256_kib_and_keep_every_alert_once_in_order(lengths_scores, max_bytes):
    alerts = sized_alerts(*lengths_scores)
    messages = alert_messages(alerts, DATE, max_bytes=max_bytes)
    assert all(1 <= m["alertCount"] == len(m["alerts"]) <= 100 for m in messages)
    assert all(publish_size(m) <= max_bytes for m in messages)
    # Every high-risk transaction in exactly one message, in score order.
    assert [a for m in messages for a in m["alerts"]] == alerts
    assert [m["part"] for m in messages] == list(range(1, len(messages) + 1))
    assert all(m["parts"] == len(messages) for m in messages)


def test_a_day_of_long_merchant_names_is_cut_by_size_not_lost(aws, alerts_topic):
    # The day: 100 alerts with long merchant names made one 325,855-byte message and 0 were sent.
    topic_arn, received = alerts_topic
    scored, transactions = day(list(np.linspace(0.81, 0.99, 129)))
    transactions["merchant"] = "Long Merchant Name " * 160  # 3,040 characters
    alerts = high_risk_alerts(scored, transactions)
    messages = alert_messages(alerts, DATE)
    assert messages[0]["alertCount"] < 100 and all(publish_size(m) <= SNS_MAX_BYTES for m in messages)
    assert publish(aws, topic_arn, messages).sent == [m["messageKey"] for m in messages]
    delivered = [json.loads(e["Message"]) for e in received()]
    assert sorted(a["transactionId"] for m in delivered for a in m["alerts"]) == sorted(a["transactionId"] for a in alerts)


def test_absurdly_long_text_is_cut_so_one_alert_always_fits():
    scored, transactions = day([0.9])
    transactions["merchant"] = "x" * 400_000
    [alert] = high_risk_alerts(scored, transactions)
    assert len(alert["merchant"]) == MAX_DETAIL_CHARS and alert["merchant"].endswith("…")
    assert len(alert_messages([alert], DATE)) == 1
    with pytest.raises(ValueError, match="alert for 'T-000' is .* bytes"):
        alert_messages([{**alert, "merchant": "x" * 300_000}], DATE)


def test_message_priority_and_limits():
    messages = alert_messages(fake_alerts(250, urgent_every=150), DATE)
    assert [m["alertCount"] for m in messages] == [100, 100, 50]
    assert [m["maxPriority"] for m in messages] == ["URGENT", "URGENT", "HIGH"]
    with pytest.raises(ValueError, match="1..100"):
        alert_messages(fake_alerts(3), DATE, 101)


# -- publishing against moto --------------------------------------------------------------------


@pytest.fixture
def alerts_topic(aws):
    """The alerts topic with an SQS queue subscribed: the queue shows what subscribers received."""
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic_arn = sns.create_topic(Name=aws.names.alerts_topic)["TopicArn"]
    queue_url = sqs.create_queue(QueueName="alert-subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def received() -> list[dict]:
        bodies = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
            if not batch:
                return bodies
            bodies.extend(json.loads(m["Body"]) for m in batch)

    return topic_arn, received


def publish(aws, topic_arn, messages, resend=False, sns=None):
    return publish_alerts(
        sns or aws.client("sns"),
        aws.client("s3"),
        topic_arn=topic_arn,
        ledger_bucket=aws.names.workflow_bucket,
        ledger_prefix=f"alert-ledger/{DATE}",
        messages=messages,
        resend=resend,
    )


def test_publishing_twice_sends_each_message_once_and_resend_sends_again(aws, alerts_topic):
    topic_arn, received = alerts_topic
    scored, transactions = day(list(np.linspace(0.81, 0.99, 230)))
    messages = alert_messages(high_risk_alerts(scored, transactions), DATE)
    keys = [m["messageKey"] for m in messages]

    first = publish(aws, topic_arn, messages)
    assert first.sent == keys and first.skipped == []
    again = publish(aws, topic_arn, messages)
    assert again.sent == [] and again.skipped == keys
    delivered = received()
    assert len(delivered) == 3
    envelope = delivered[0]
    body = json.loads(envelope["Message"])
    assert envelope["Subject"] == f"Fraud alerts {DATE}: 100 high-risk transactions (1 of 3)"
    assert body["messageKey"] == keys[0] and len(body["alerts"]) == 100 and body["alerts"][0]["fraudScore"] == 0.99
    assert envelope["MessageAttributes"]["alertCount"] == {"Type": "Number", "Value": "100"}
    assert envelope["MessageAttributes"]["maxPriority"]["Value"] == "URGENT"
    ledger = get_json(aws.client("s3"), f"s3://{aws.names.workflow_bucket}/alert-ledger/{DATE}/{aws.names.alerts_topic}/{keys[0]}.json")
    assert ledger["messageKey"] == keys[0] and ledger["messageId"] and ledger["alertCount"] == 100

    resent = publish(aws, topic_arn, messages, resend=True)
    assert resent.sent == keys
    assert len(received()) == 3  # the queue holds 6 in all: every message twice


class CrashingSNS:
    """A real SNS client whose process 'dies' (raises) before the n-th Publish."""

    def __init__(self, client, crash_before: int):
        self.client, self.crash_before, self.calls = client, crash_before, 0

    def publish(self, **kwargs):
        self.calls += 1
        if self.calls == self.crash_before:
            raise KeyboardInterrupt("worker killed")
        return self.client.publish(**kwargs)


def test_a_retry_after_a_crash_sends_only_what_was_not_sent(aws, alerts_topic):
    topic_arn, received = alerts_topic
    messages = alert_messages(fake_alerts(420), DATE)
    with pytest.raises(KeyboardInterrupt):
        publish(aws, topic_arn, messages, sns=CrashingSNS(aws.client("sns"), crash_before=3))
    retry = publish(aws, topic_arn, messages)
    assert retry.skipped == [m["messageKey"] for m in messages[:2]]
    assert retry.sent == [m["messageKey"] for m in messages[2:]]
    assert sorted(json.loads(e["Message"])["part"] for e in received()) == [1, 2, 3, 4, 5]


def test_a_missing_topic_is_an_error_naming_it_and_creates_nothing(aws, alerts_topic):
    sns = aws.client("sns")
    topic_arn, _ = alerts_topic
    assert find_topic_arn(sns, aws.names.alerts_topic) == topic_arn
    before = sns.list_topics()["Topics"]
    with pytest.raises(MissingTopicError, match="SNS topic 'fraud-detection-alertz' does not exist"):
        find_topic_arn(sns, "fraud-detection-alertz")
    assert sns.list_topics()["Topics"] == before


def test_the_ledger_is_kept_per_topic(aws, alerts_topic):
    # Sent to another topic is not delivered to this one: a re-run with the right topic sends it all.
    topic_arn, received = alerts_topic
    other = aws.client("sns").create_topic(Name="another-alerts-topic")["TopicArn"]
    messages = alert_messages(fake_alerts(150), DATE)
    assert len(publish(aws, other, messages).sent) == 2
    assert publish(aws, topic_arn, messages).sent == [m["messageKey"] for m in messages]
    assert publish(aws, topic_arn, messages).skipped == [m["messageKey"] for m in messages]
    delivered = received()
    assert len(delivered) == 2
    ledger = get_json(
        aws.client("s3"), f"s3://{aws.names.workflow_bucket}/alert-ledger/{DATE}/{aws.names.alerts_topic}/{messages[0]['messageKey']}.json"
    )
    assert ledger["topicArn"] == topic_arn
    # The deduplication id a subscriber drops a repeat by (delivery is at-least-once).
    assert delivered[0]["MessageAttributes"]["messageKey"]["Value"] == json.loads(delivered[0]["Message"])["messageKey"]


def test_ledger_prefix_and_message_keys_are_validated(aws, alerts_topic):
    topic_arn, _ = alerts_topic
    with pytest.raises(InvalidKeyError, match="ledger prefix part"):
        publish_alerts(
            aws.client("sns"),
            aws.client("s3"),
            topic_arn=topic_arn,
            ledger_bucket=aws.names.workflow_bucket,
            ledger_prefix="alert-ledger/../other",
            messages=[],
        )
    with pytest.raises(InvalidKeyError, match="messageKey"):
        publish(aws, topic_arn, [{"messageKey": "a/b"}])


def test_a_message_claimed_by_a_live_run_is_left_to_it_and_a_dead_runs_claim_is_taken_over(aws, alerts_topic):
    import socket
    import subprocess
    import sys

    from fraud_assets.lib.aws.storage import put_json
    from fraud_assets.lib.inference.alerts import AlertsInFlight

    topic_arn, received = alerts_topic
    messages = alert_messages(fake_alerts(250), DATE)
    keys = [m["messageKey"] for m in messages]
    ledger = f"alert-ledger/{DATE}/{aws.names.alerts_topic}"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for key, pid in ((keys[0], other.pid), (keys[1], dead.pid)):
            put_json(
                aws.client("s3"),
                aws.names.workflow_bucket,
                f"{ledger}/{key}.json",
                {"status": "publishing", "host": socket.gethostname(), "pid": pid, "claimedAt": "2026-01-01T00:00:00+00:00"},
            )
        with pytest.raises(AlertsInFlight, match="1 alert messages are being published by another run") as raised:
            publish(aws, topic_arn, messages)
        assert raised.value.in_flight == keys[:1] and raised.value.sent == keys[1:]
        assert sorted(json.loads(e["Message"])["part"] for e in received()) == [2, 3]
    finally:
        other.kill()
        other.wait()
    # Once the other run is gone, a re-run sends what it never did, and nothing twice.
    assert publish(aws, topic_arn, messages).sent == keys[:1]
    assert [json.loads(e["Message"])["part"] for e in received()] == [1]


def test_a_day_capped_at_the_alert_budget_sends_its_top_alerts_once_and_counts_the_rest(aws, alerts_topic):
    topic_arn, received = alerts_topic
    # 230 alerts on a few calibrated values, so the raw score decides which make the budget.
    scored, transactions = day([0.85, 0.9, 1.0, 1.0, 0.95] * 46, raw=list(np.linspace(0.6, 0.99, 230)))

    def run(budget):
        return send_day_alerts(
            aws.client("sns"),
            aws.client("s3"),
            date=DATE,
            scores=scored,
            transactions=transactions,
            reasons=None,
            high_threshold=0.8,
            urgent_threshold=0.95,
            topic_arn=topic_arn,
            ledger_bucket=aws.names.workflow_bucket,
            budget=budget,
        )

    first = run(150)
    top = high_risk_alerts(scored, transactions, reasons={})[:150]
    assert first.alerts == top and first.held_back == 80
    delivered = [a["transactionId"] for e in received() for a in json.loads(e["Message"])["alerts"]]
    assert sorted(delivered) == sorted(a["transactionId"] for a in top)  # each of the top 150 once, none of the rest
    summary = first.summary()
    assert (summary.high_risk_count, summary.alerts_held_back, summary.alert_budget, summary.batch_count) == (230, 80, 150, 2)
    assert first.metadata() | {"urgent": None} == {
        "high_risk": 230,
        "alerted": 150,
        "alerts_held_back": 80,
        "urgent": None,
        "messages": 2,
        "messages_sent": 2,
        "messages_skipped": 0,
    }
    assert "150 of 230" in first.held_back_note() and "80 held back" in first.held_back_note()

    again = run(150)  # a retry or a repeated run: the same cut, the same messages, nothing sent twice
    assert again.published.sent == [] and again.published.skipped == first.published.sent and received() == []
    assert run(1000).held_back == 0  # a budget above the day's alerts holds nothing back
