"""The daily steps retry themselves when AWS fails them (a RetryPolicy with backoff), and bad input
fails at once with the one line that names it: no retry mends a malformed batch."""

from __future__ import annotations

import boto3
from dagster import AssetKey, DagsterEventType, instance_for_test

from fraud_assets.definitions import location_defs
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import PlatformNames, daily_batch_key

NAMES = PlatformNames()
# What inference_job materialises for a day.
INFERENCE_ASSETS = [
    "daily_transactions",
    "daily_scores",
    "stored_scores",
    "fraud_alerts",
    "drift_metrics",
    "daily_report",
    "labelled_scores",
    "model_performance",
    "feature_aggregates",
    "terminal_risk_aggregates",
]


def test_every_step_of_the_inference_job_retries_with_backoff() -> None:
    job = location_defs().resolve_job_def("inference_job")
    policies = {node.name: node.definition.retry_policy for node in job.graph.nodes}
    assert sorted(policies) == sorted(INFERENCE_ASSETS)
    assert all(p is not None and p.max_retries >= 1 and p.backoff is not None for p in policies.values()), policies


def test_bad_input_fails_at_once_naming_what_is_wrong_without_step_retries(aws) -> None:
    day = "2026-03-05"
    put_bytes(boto3.client("s3"), NAMES.data_bucket, daily_batch_key(day), b'[{"id": "T-1", ')  # cut short
    job = location_defs().resolve_job_def("inference_job")
    with instance_for_test() as instance:
        for selection, step, says in [
            ("daily_transactions", "daily_transactions", f"s3://{NAMES.data_bucket}/{daily_batch_key(day)}"),
            ("daily_scores", "daily_scores", f"no materialization of daily_transactions partition {day} is recorded"),
        ]:
            result = job.execute_in_process(
                instance=instance, partition_key=day, asset_selection=[AssetKey(selection)], raise_on_error=False
            )
            assert not result.success
            assert not [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY], step
            [failure] = result.get_step_failure_events()
            assert failure.step_key == step and says in failure.event_specific_data.error.message, failure.event_specific_data.error.message
