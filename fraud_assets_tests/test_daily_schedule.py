"""The daily schedule skips with its reason when the day's batch has not landed, runs it once it
has, catches up days whose batch landed late, and asks again for a day whose run failed (what it
lacks only, a new run key per attempt, a bounded number of attempts) until every inference asset
of the day has materialised. Schedules run from the first deployment."""

from __future__ import annotations

import collections
import datetime as dt
import math
import socket

import boto3
import pytest
from dagster import (
    AssetMaterialization,
    DefaultScheduleStatus,
    RunRequest,
    SkipReason,
    build_schedule_context,
    execute_job,
    instance_for_test,
    reconstructable,
)
from dagster_aws.s3 import S3Resource
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.definitions import location_defs
from fraud_assets.defs.inference.jobs import CATCH_UP_DAYS, MAX_ATTEMPTS, daily_inference_schedule, days_to_run
from fraud_assets.defs.resources import AwsClients, FraudPlatform, QualityGates
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key
from fraud_assets.lib.inference.score_store import count_items_for_date
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch, generate_transactions, to_csv_bytes
from fraud_assets_tests.test_inference_e2e import drain, subscribe_queue
from fraud_assets_tests.test_step_retries import INFERENCE_ASSETS

NAMES = PlatformNames()


def tick(instance, when: dt.datetime, defs=None):
    with build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"s3": S3Resource(), "platform": FraudPlatform()},
        repository_def=(defs or location_defs()).get_repository_def(),
    ) as context:
        return daily_inference_schedule(context)


def test_a_day_without_its_batch_is_skipped_with_the_reason_then_run_once_it_lands(aws) -> None:
    with instance_for_test() as instance:  # a schedule context needs a persistent instance
        _skip_then_run(instance)


def _skip_then_run(instance) -> None:
    when = dt.datetime(2026, 3, 11, 1, 0, tzinfo=dt.timezone.utc)
    skipped = tick(instance, when)
    assert isinstance(skipped, SkipReason)
    assert f"s3://{NAMES.data_bucket}/daily-batches/2026-03-10.json" in skipped.skip_message

    s3 = boto3.client("s3")
    put_bytes(s3, NAMES.data_bucket, daily_batch_key("2026-03-10"), b"[]")
    put_bytes(s3, NAMES.data_bucket, daily_batch_key("2026-03-08"), b"[]")  # landed late
    requests = tick(instance, when)
    assert [(r.partition_key, r.run_key, r.asset_selection) for r in requests] == [
        ("2026-03-10", "2026-03-10:attempt-1", None),
        ("2026-03-08", "2026-03-08:attempt-1", None),
    ]
    assert all(isinstance(r, RunRequest) for r in requests)


def test_a_tick_with_every_day_scored_says_so(aws) -> None:
    when = dt.datetime(2026, 3, 11, 1, 0, tzinfo=dt.timezone.utc)
    days = [(dt.date(2026, 3, 10) - dt.timedelta(days=back)).isoformat() for back in range(CATCH_UP_DAYS + 1)]
    with instance_for_test() as instance:
        for day in days:
            for name in INFERENCE_ASSETS:
                instance.report_runless_asset_event(AssetMaterialization(name, partition=day))
        skipped = tick(instance, when)
    assert isinstance(skipped, SkipReason)
    assert skipped.skip_message == f"nothing to score: every day from {days[-1]} to {days[0]} is scored"


def test_a_day_is_done_only_when_every_inference_asset_of_it_materialised(aws) -> None:
    when = dt.datetime(2026, 3, 11, 1, 0, tzinfo=dt.timezone.utc)
    put_bytes(boto3.client("s3"), NAMES.data_bucket, daily_batch_key("2026-03-10"), b"[]")
    with instance_for_test() as instance:
        for name in INFERENCE_ASSETS[:2]:  # parsed and scored; storing failed
            instance.report_runless_asset_event(AssetMaterialization(name, partition="2026-03-10"))
        [request] = tick(instance, when)
    assert request.partition_key == "2026-03-10"
    assert sorted(k.to_user_string() for k in request.asset_selection) == sorted(INFERENCE_ASSETS[2:])


def test_processed_days_and_days_before_the_first_partition_are_not_requested() -> None:
    plan = days_to_run(
        dt.date(2026, 3, 10),
        dt.date(2026, 3, 6),
        landed=lambda d: d != "2026-03-09",
        done=lambda d: d == "2026-03-08",
        attempts={"2026-03-07": MAX_ATTEMPTS, "2026-03-10": 1}.get,
        running=lambda d: d == "2026-03-06",
    )
    assert plan.run == [("2026-03-10", 2)]
    assert plan.waiting == ["2026-03-09"]
    assert plan.done == ["2026-03-08"]
    assert plan.given_up == ["2026-03-07"]
    assert plan.running == ["2026-03-06"]


DAY_STATES = st.fixed_dictionaries(
    {"landed": st.booleans(), "done": st.booleans(), "running": st.booleans(), "attempts": st.integers(0, MAX_ATTEMPTS + 2)}
)


@settings(max_examples=200, deadline=None)
@given(
    states=st.lists(DAY_STATES, min_size=CATCH_UP_DAYS + 1, max_size=CATCH_UP_DAYS + 1),
    first_back=st.integers(-1, CATCH_UP_DAYS + 2),
)
def test_every_day_of_the_window_lands_in_exactly_one_place(states, first_back) -> None:
    yesterday = dt.date(2026, 3, 10)
    window = [(yesterday - dt.timedelta(days=b)).isoformat() for b in range(CATCH_UP_DAYS + 1)]
    state = dict(zip(window, states))
    first_day = yesterday - dt.timedelta(days=first_back)
    plan = days_to_run(
        yesterday,
        first_day,
        landed=lambda d: state[d]["landed"],
        done=lambda d: state[d]["done"],
        attempts=lambda d: state[d]["attempts"],
        running=lambda d: state[d]["running"],
    )
    placed = [d for d, _ in plan.run] + plan.waiting + plan.running + plan.given_up + plan.done
    assert sorted(placed) == sorted(d for d in window if dt.date.fromisoformat(d) >= first_day)
    for day, attempt in plan.run:
        s = state[day]
        assert s["landed"] and not s["done"] and not s["running"]
        assert attempt == s["attempts"] + 1 <= MAX_ATTEMPTS
    assert [d for d, _ in plan.run] == sorted((d for d, _ in plan.run), reverse=True)  # newest first


@settings(max_examples=100, deadline=None)
@given(failing=st.sets(st.integers(0, CATCH_UP_DAYS)), ticks=st.integers(1, 3 * MAX_ATTEMPTS))
def test_a_day_that_keeps_failing_is_requested_at_most_max_attempts_times_each_with_a_new_key(failing, ticks) -> None:
    yesterday = dt.date(2026, 3, 10)
    fails = {(yesterday - dt.timedelta(days=b)).isoformat() for b in failing}
    attempts: collections.Counter[str] = collections.Counter()
    done: set[str] = set()
    keys: list[str] = []
    for _ in range(ticks):  # the same window each tick: the failing days stay in it
        plan = days_to_run(yesterday, dt.date(2026, 1, 1), landed=lambda d: True, done=done.__contains__, attempts=attempts.__getitem__)
        for day, attempt in plan.run:
            keys.append(f"{day}:attempt-{attempt}")
            attempts[day] += 1
            if day not in fails:
                done.add(day)
    assert len(keys) == len(set(keys))
    assert all(attempts[d] <= MAX_ATTEMPTS for d in attempts)
    assert all(attempts[d] == 1 for d in attempts if d not in fails)  # a day that succeeds is run once


def test_schedules_run_from_the_first_deployment() -> None:
    defs = location_defs()
    assert {s.name: s.default_status for s in defs.schedules} == {
        "daily_inference_schedule": DefaultScheduleStatus.RUNNING,
        "weekly_training_schedule": DefaultScheduleStatus.RUNNING,
    }


def _inference_job_one_attempt_per_call():
    # Module level so that execute_job can rebuild it (reconstructable): the only way to run the job
    # in process with its step retries off, as when every retry of an outage has failed.
    return location_defs(aws=AwsClients(max_attempts=1)).resolve_job_def("inference_job")


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.e2e
def test_a_day_whose_endpoint_was_down_is_scored_once_at_the_next_tick(aws, monkeypatch) -> None:
    day, per_day = "2026-03-10", 1_000
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=20_000, fraud_rate=0.03, seed=5)))
    put_bytes(
        s3, NAMES.data_bucket, daily_batch_key(day), batch_to_json_bytes(generate_daily_batch(day, per_day, seed=21, fraud_rate=0.05))
    )
    alerts_queue = subscribe_queue(NAMES.alerts_topic, "schedule-retry-alerts")
    defs = location_defs(quality_gates=QualityGates(pr_auc_floor=0.2, high_risk_precision_floor=0.0), aws=AwsClients(max_attempts=1))
    first_tick = dt.datetime(2026, 3, 11, 1, 0, tzinfo=dt.timezone.utc)
    with instance_for_test() as instance:
        assert defs.resolve_job_def("training_job").execute_in_process(instance=instance).success

        [first] = tick(instance, first_tick, defs)
        assert first.partition_key == day
        endpoint = aws.env()["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", _closed_port_url())  # the endpoint is down
        with execute_job(
            reconstructable(_inference_job_one_attempt_per_call),
            instance=instance,
            run_config={"execution": {"config": {"retries": {"disabled": {}}}}},
            tags={**first.tags, "dagster/partition": day},
        ) as failed:
            assert not failed.success
            assert [e.step_key for e in failed.get_step_failure_events()] == ["daily_scores"]
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint)  # and up again

        # The next day's tick: that day has no batch yet, the failed one is asked for again.
        requests = tick(instance, first_tick + dt.timedelta(days=1), defs)
        [second] = [r for r in requests if r.partition_key == day]
        assert (first.run_key, second.run_key) == (f"{day}:attempt-1", f"{day}:attempt-2")
        assert "daily_transactions" not in {k.to_user_string() for k in second.asset_selection}
        result = defs.resolve_job_def("inference_job").execute_in_process(
            instance=instance, partition_key=day, tags=second.tags, asset_selection=second.asset_selection
        )
        assert result.success
        scored = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
        assert "daily_transactions" not in scored  # parsed once, by the first run
        high_risk = scored["daily_scores"]["high_risk"].value
        assert high_risk > 0

        # Done now: the next tick leaves the day alone.
        skipped = tick(instance, first_tick + dt.timedelta(days=1), defs)
        assert isinstance(skipped, SkipReason) and day not in skipped.skip_message

    # Scored once: one item per transaction, every high-risk transaction alerted once.
    assert count_items_for_date(dynamodb, NAMES.scores_table, NAMES.scores_gsi, day) == scored["daily_scores"]["scored"].value == per_day
    messages = [m for m in drain(alerts_queue) if m["batchDate"] == day]
    alerted = collections.Counter(a["transactionId"] for m in messages for a in m["alerts"])
    assert len(messages) == math.ceil(high_risk / 100)
    assert len(alerted) == high_risk and set(alerted.values()) == {1}
