"""Faults against the real local stack, each ending in the same accounting: the day's FraudScores
items equal its scored count, and the alert messages a subscribed SQS queue received hold every
high-risk transaction exactly once (0 lost, 0 duplicated), or, in the documented at-least-once case,
repeat whole messages with their `messageKey` deduplication id.

The stack runs as `python -m fraud_assets_local.stack` with a state directory (as `make stack` runs
it), so it can be SIGKILLed and restarted; the runs that get killed are subprocesses executing the
job on a shared DAGSTER_HOME, killed by pid once the step named starts. Runs: `-m faults`.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from dagster import DagsterEventType, DagsterInstance

from fraud_assets.lib.aws.storage import get_json, put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key
from fraud_assets.lib.inference.score_store import count_items_for_date
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch, generate_transactions, to_csv_bytes
from fraud_assets.main_job import flag_lost_in_restore
from fraud_assets_local.state import last_snapshot_time

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.xdist_group("faults")]
NAMES = PlatformNames()
PER_DAY = 400
FIRST_DAY = "2026-06-01"
DAYS = [f"2026-06-{d:02d}" for d in range(1, 11)]
FIGURES: dict[str, dict] = {}  # printed at the end of the module: the fault figures of the closing note
RUNNER = """
import sys
from dagster import DagsterInstance
from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import FraudPlatform
platform = FraudPlatform(alerts_topic=sys.argv[2]) if len(sys.argv) > 2 else FraudPlatform()
defs = location_defs(platform=platform)
result = defs.resolve_job_def("inference_job").execute_in_process(
    instance=DagsterInstance.get(), partition_key=sys.argv[1], raise_on_error=False,
    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
sys.exit(0 if result.success else 1)
"""


class StackProcess:
    """`python -m fraud_assets_local.stack --state-dir ...` as a user runs it."""

    def __init__(self, state: Path):
        self.state = state
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.notes: list[str] = []

    def start(self) -> "StackProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fraud_assets_local.stack", "--state-dir", str(self.state), "--snapshot-interval", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.env, self.notes = {}, []
        for line in self.proc.stdout:  # type: ignore[union-attr]
            if line.startswith("export "):
                var, _, value = line[len("export ") :].strip().partition("=")
                self.env[var] = value
            elif line.startswith("#"):
                self.notes.append(line.strip())
                if "running" in line:
                    break
        assert "AWS_ENDPOINT_URL" in self.env, "the stack did not start"
        return self

    def child(self, module: str) -> int:
        assert self.proc is not None
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            for pid in Path(f"/proc/{self.proc.pid}/task/{task}/children").read_text().split():
                if module in Path(f"/proc/{pid}/cmdline").read_text():
                    return int(pid)
        raise LookupError(module)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """A stack with a state directory, a trained and deployed model, the days' batches and an SQS
    queue on the alerts topic; os.environ points at it for the module."""
    root = tmp_path_factory.mktemp("faults")
    saved = dict(os.environ)
    stack = StackProcess(root / "state").start()
    os.environ.update(stack.env, DAGSTER_HOME=str(root / "home"), FRAUD_FIRST_DAY=FIRST_DAY)
    (root / "home").mkdir()
    (root / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    boto3.DEFAULT_SESSION = None
    try:
        s3 = boto3.client("s3")
        put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=20_000, seed=5)))
        for i, date in enumerate(DAYS):
            put_bytes(
                s3,
                NAMES.data_bucket,
                daily_batch_key(date),
                batch_to_json_bytes(generate_daily_batch(date, n_transactions=PER_DAY, seed=300 + i, drift=0.6)),
            )
        from fraud_assets.definitions import location_defs
        from fraud_assets.defs.resources import QualityGates

        defs = location_defs(quality_gates=QualityGates(accuracy_floor=0.0, pr_auc_floor=0.0, high_risk_precision_floor=0.0))
        assert defs.resolve_job_def("training_job").execute_in_process(instance=DagsterInstance.get()).success
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="fault-alerts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns = boto3.client("sns")
        topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":" + NAMES.alerts_topic))
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        yield {"stack": stack, "queue": queue, "root": root}
    finally:
        print("\nfault figures:", json.dumps(FIGURES, indent=1))
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None


def run_in_subprocess(date: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, date, *extra], env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def kill_when_step_starts(proc: subprocess.Popen, step: str, kill, timeout: float = 240) -> bool:
    """Call kill() as soon as the newest run's `step` has started; False if the run ended first."""
    instance = DagsterInstance.get()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        runs = instance.get_runs(limit=1)
        if runs and any(e.step_key == step for e in instance.all_logs(runs[0].run_id, of_type=DagsterEventType.STEP_START)):
            kill()
            return True
        time.sleep(0.05)
    return False


def materialise(date: str, alerts_topic: str = NAMES.alerts_topic) -> bool:
    """The partition materialised again in this process (no fault to inject: no start-up to pay)."""
    from fraud_assets.definitions import location_defs
    from fraud_assets.defs.resources import FraudPlatform

    defs = location_defs(platform=FraudPlatform(alerts_topic=alerts_topic))
    return (
        defs.resolve_job_def("inference_job")
        .execute_in_process(
            instance=DagsterInstance.get(),
            partition_key=date,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        .success
    )


def received(queue: str) -> list[dict]:
    sqs, bodies = boto3.client("sqs"), []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []):
        bodies += [json.loads(json.loads(m["Body"])["Message"]) for m in batch]
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
    return bodies


def high_risk_ids(date: str) -> list[str]:
    """Ground truth from the table, not from the job: the day's items with fraudScore >= 0.8."""
    paginator = boto3.client("dynamodb").get_paginator("query")
    return [
        item["transactionId"]["S"]
        for page in paginator.paginate(
            TableName=NAMES.scores_table,
            IndexName=NAMES.scores_gsi,
            KeyConditionExpression="batchDate = :d AND fraudScore >= :t",
            ExpressionAttributeValues={":d": {"S": date}, ":t": {"N": "0.8"}},
        )
        for item in page["Items"]
    ]


def account(date: str, messages: list[dict]) -> dict:
    """lost / duplicated alerts of the day, and messages repeated whole (same messageKey)."""
    mine = [m for m in messages if m["batchDate"] == date]
    delivered = collections.Counter(a["transactionId"] for m in mine for a in m["alerts"])
    expected = set(high_risk_ids(date))
    keys = collections.Counter(m["messageKey"] for m in mine)
    return {
        "items": count_items_for_date(boto3.client("dynamodb"), NAMES.scores_table, NAMES.scores_gsi, date),
        "high_risk": len(expected),
        "lost": len(expected - set(delivered)),
        "unexpected": len(set(delivered) - expected),
        "duplicated": sum(n - 1 for n in delivered.values()),
        "repeated_messages": sum(n - 1 for n in keys.values()),
    }


def assert_exact(date: str, messages: list[dict], at_least_once: bool = False) -> dict:
    figures = account(date, messages)
    assert figures["items"] == PER_DAY, figures  # items = scored: the synthetic days quarantine nothing
    assert figures["high_risk"] > 0 and figures["lost"] == 0 and figures["unexpected"] == 0, figures
    if at_least_once:
        assert figures["repeated_messages"] <= 1 and figures["duplicated"] <= 100, figures
    else:
        assert figures["duplicated"] == 0 and figures["repeated_messages"] == 0, figures
    return figures


def test_model_server_killed_during_daily_scores(platform):
    stack = platform["stack"]
    proc = run_in_subprocess(DAYS[0])
    assert kill_when_step_starts(proc, "daily_scores", lambda: os.kill(stack.child("model_server"), signal.SIGKILL))
    proc.communicate(timeout=600)
    # The stack restarted the model server on its port; scoring retried through the gap.
    assert proc.returncode == 0 or materialise(DAYS[0])
    FIGURES["model server killed during daily_scores"] = assert_exact(DAYS[0], received(platform["queue"]))


@pytest.mark.parametrize("step, day", [("stored_scores", DAYS[1]), ("fraud_alerts", DAYS[2])])
def test_a_run_sigkilled_mid_step_then_rematerialised(platform, step, day):
    proc = run_in_subprocess(day)
    kill_when_step_starts(proc, step, lambda: proc.send_signal(signal.SIGKILL))
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert materialise(day)
    # A SIGKILL between Publish and the ledger write re-sends that one message: at-least-once.
    FIGURES[f"run SIGKILLed during {step}"] = assert_exact(day, received(platform["queue"]), at_least_once=step == "fraud_alerts")


def test_two_materialisations_of_one_partition_at_once(platform):
    first, second = run_in_subprocess(DAYS[3]), run_in_subprocess(DAYS[3])
    codes = [first.wait(timeout=600), second.wait(timeout=600)]
    if codes != [0, 0]:
        assert materialise(DAYS[3])
    # Each message is claimed in the ledger before it is published: one run sends it, never both.
    FIGURES["two materialisations at once"] = {**assert_exact(DAYS[3], received(platform["queue"])), "run_exit_codes": codes}


def test_a_mistyped_topic_fails_naming_it_and_the_right_one_sends_everything(platform):
    sns = boto3.client("sns")
    topics = sns.list_topics()["Topics"]
    assert not materialise(DAYS[4], alerts_topic="fraud-detection-alertz")
    assert sns.list_topics()["Topics"] == topics  # nothing created
    failure = _step_failure("fraud_alerts")
    assert "SNS topic 'fraud-detection-alertz' does not exist" in failure
    assert received(platform["queue"]) == []
    assert materialise(DAYS[4])
    FIGURES["mistyped topic, then the right one"] = assert_exact(DAYS[4], received(platform["queue"]))


def test_the_stack_sigkilled_and_restarted_from_its_state_dir(platform):
    stack = platform["stack"]
    assert materialise(DAYS[5])
    before = assert_exact(DAYS[5], received(platform["queue"]))
    urls = dict(stack.env)
    stack.stop()  # a clean stop snapshots everything
    stack.start()
    assert stack.env == urls  # the recorded ports were free: exported variables still hold
    assert account(DAYS[5], [])["items"] == PER_DAY
    assert materialise(DAYS[6])  # then a day after the last snapshot, and a crash
    first_delivery = account(DAYS[6], received(platform["queue"]))
    stack.stop(signal.SIGKILL)
    stack.start()
    assert stack.env == urls
    snapshot_time = last_snapshot_time(stack.state)
    assert any(f"restored from the snapshot taken at {snapshot_time}" in note for note in stack.notes)
    # The crash lost the day's items, ledger and outputs while Dagster still shows them materialised:
    # the restore flags exactly what came after the snapshot, and re-running the partition restores it.
    assert account(DAYS[6], [])["items"] == 0
    lost = flag_lost_in_restore(DagsterInstance.get(), snapshot_time, announce=lambda _: None)
    assert {partition for _, partition in lost} == {DAYS[6]}
    # A step that relies on the lost output says so instead of working on nothing.
    from dagster import AssetKey

    from fraud_assets.definitions import location_defs

    alone = (
        location_defs()
        .resolve_job_def("inference_job")
        .execute_in_process(
            instance=DagsterInstance.get(), partition_key=DAYS[6], asset_selection=[AssetKey("stored_scores")], raise_on_error=False
        )
    )
    assert not alone.success and "is gone from storage; storage and Dagster disagree. Re-run the partition" in _step_failure(
        "stored_scores"
    )
    assert materialise(DAYS[6])
    # Its alerts went out again (the ledger was lost with the rest): at-least-once across a stack crash.
    again = assert_exact(DAYS[6], received(platform["queue"]))
    FIGURES["stack SIGKILLed and restarted"] = {**again, "alerts_redelivered_after_restore": first_delivery["high_risk"]}
    assert account(DAYS[5], [])["items"] == before["items"] == PER_DAY


def test_reused_ids_and_empty_days(platform):
    s3 = boto3.client("s3")
    assert account(DAYS[0], [])["items"] == PER_DAY or materialise(DAYS[0])
    earlier = json.loads(s3.get_object(Bucket=NAMES.data_bucket, Key=daily_batch_key(DAYS[0]))["Body"].read())
    later = json.loads(s3.get_object(Bucket=NAMES.data_bucket, Key=daily_batch_key(DAYS[7]))["Body"].read())
    put_bytes(s3, NAMES.data_bucket, daily_batch_key(DAYS[7]), batch_to_json_bytes(earlier[:50] + later[50:]))
    put_bytes(s3, NAMES.data_bucket, daily_batch_key(DAYS[8]), b"[]")
    put_bytes(s3, NAMES.data_bucket, daily_batch_key(DAYS[9]), json.dumps([{"id": "X-1"}]).encode())
    for day in DAYS[7:]:
        assert materialise(day), day
    dynamodb = boto3.client("dynamodb")
    # The earlier day keeps its items: the replayed 50 are quarantined on the later day.
    assert count_items_for_date(dynamodb, NAMES.scores_table, NAMES.scores_gsi, DAYS[0]) == PER_DAY
    assert count_items_for_date(dynamodb, NAMES.scores_table, NAMES.scores_gsi, DAYS[7]) == PER_DAY - 50
    for day in DAYS[8:]:
        record = get_json(s3, f"s3://{NAMES.metrics_bucket}/metrics/{day}.json")
        assert record["count"] == 0 and record["driftDetected"] is False and "no scores" in record["reason"]
    received(platform["queue"])


def _step_failure(step: str) -> str:
    instance = DagsterInstance.get()
    run = instance.get_runs(limit=1)[0]
    failures = [e for e in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE) if e.step_key == step]
    assert failures, f"{step} did not fail"
    error = failures[0].dagster_event.step_failure_data.error
    text = []
    while error is not None:
        text.append(error.message)
        error = error.cause
    return "\n".join(text)
