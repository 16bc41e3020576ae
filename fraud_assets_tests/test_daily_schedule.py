"""The daily schedule skips with its reason when the day's batch has not landed, runs it once it
has, and catches up days whose batch landed late."""

from __future__ import annotations

import datetime as dt

import boto3
from dagster import RunRequest, SkipReason, build_schedule_context, instance_for_test
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.inference.jobs import daily_inference_schedule, days_to_run
from fraud_assets.defs.resources import FraudPlatform
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import PlatformNames, daily_batch_key

NAMES = PlatformNames()


def tick(instance, when: dt.datetime):
    with build_schedule_context(
        instance=instance, scheduled_execution_time=when, resources={"s3": S3Resource(), "platform": FraudPlatform()}
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
    assert [(r.partition_key, r.run_key) for r in requests] == [("2026-03-10", "2026-03-10"), ("2026-03-08", "2026-03-08")]
    assert all(isinstance(r, RunRequest) for r in requests)


def test_processed_days_and_days_before_the_first_partition_are_not_requested() -> None:
    yesterday = dt.date(2026, 3, 10)
    run, waiting = days_to_run(yesterday, dt.date(2026, 3, 7), landed=lambda d: d != "2026-03-09", processed=lambda d: d == "2026-03-08")
    assert run == ["2026-03-10", "2026-03-07"]
    assert waiting == ["2026-03-09"]
