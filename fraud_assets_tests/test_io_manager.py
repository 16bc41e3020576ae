"""The executions/<run id>/<stage>/ IO manager against the local stack's S3 (real HTTP)."""

import boto3
import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DailyPartitionsDefinition,
    asset,
    materialize,
)
from dagster import AssetKey as dg_key
from dagster_aws.s3 import S3Resource
from hypothesis import given
from hypothesis import strategies as st

from fraud_assets.defs.io_manager import ExecutionsIOManager
from fraud_assets.lib.aws.storage import (
    InvalidKeyError,
    S3Uri,
    StageResult,
    execution_prefix,
    put_json,
    validate_key_part,
)
from fraud_assets.lib.config import PlatformNames
from fraud_assets.lib.metadata_keys import OUTPUT_URI

BUCKET = PlatformNames().workflow_bucket
VALUE = {"n": 1}


@asset
def upstream_stage() -> StageResult:
    return StageResult(
        summary={"recordCount": VALUE["n"]},
        tables={"rows": pd.DataFrame({"transactionId": ["a", "b"], "score": [0.1, VALUE["n"] / 10]})},
        files={"blob.bin": f"payload-{VALUE['n']}".encode()},
    )


@asset
def downstream_stage(upstream_stage: StageResult) -> StageResult:
    return StageResult(summary={"seen": upstream_stage.summary["recordCount"], "blob": upstream_stage.files["blob.bin"].decode()})


days = DailyPartitionsDefinition(start_date="2026-01-01")


@asset(partitions_def=days)
def daily_stage(context) -> StageResult:
    return StageResult(summary={"day": context.partition_key}, tables={"t": pd.DataFrame({"day": [context.partition_key]})})


@asset(partitions_def=days)
def daily_downstream(daily_stage: StageResult) -> StageResult:
    return StageResult(summary={"from": daily_stage.summary["day"], "rows": len(daily_stage.table)})


def resources():
    return {"io_manager": ExecutionsIOManager(s3=S3Resource(), bucket=BUCKET)}


def summary_of(instance, key: str, partition: str | None = None) -> dict:
    import json

    from dagster._core.event_api import AssetRecordsFilter

    record = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(key), asset_partitions=[partition] if partition else None), limit=1
    ).records[0]
    uri = S3Uri.parse(record.asset_materialization.metadata[OUTPUT_URI].value)
    return json.loads(boto3.client("s3").get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read())


def test_round_trip_writes_the_layout_with_sse(aws):
    instance = DagsterInstance.ephemeral()
    VALUE["n"] = 3
    result = materialize([upstream_stage, downstream_stage], resources=resources(), instance=instance)
    run = result.run_id
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"executions/{run}/")["Contents"]}
    assert keys == {
        f"executions/{run}/upstream_stage/output.json",
        f"executions/{run}/upstream_stage/rows.parquet",
        f"executions/{run}/upstream_stage/blob.bin",
        f"executions/{run}/downstream_stage/output.json",
    }
    for key in keys:
        assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"
    uri = result.asset_materializations_for_node("upstream_stage")[0].metadata[OUTPUT_URI].value
    assert uri == f"s3://{BUCKET}/executions/{run}/upstream_stage/output.json"
    assert summary_of(instance, "downstream_stage") == {"seen": 3, "blob": "payload-3", "artifacts": {"tables": {}, "files": {}}}


def test_downstream_loads_what_the_recorded_materialization_points_at(aws):
    instance = DagsterInstance.ephemeral()
    VALUE["n"] = 1
    first = materialize([upstream_stage], resources=resources(), instance=instance)
    VALUE["n"] = 2
    materialize([upstream_stage], resources=resources(), instance=instance)
    # A newer stray output in another execution folder must not be picked up: only the recorded URI counts.
    put_json(
        boto3.client("s3"),
        BUCKET,
        execution_prefix("zzzz-stray-run", "upstream_stage") + "output.json",
        {"recordCount": 99, "artifacts": {"tables": {}, "files": {}}},
    )
    second_run = instance.fetch_materializations(dg_key("upstream_stage"), limit=1).records[0].run_id
    loaded = materialize([upstream_stage, downstream_stage], selection=[downstream_stage], resources=resources(), instance=instance)
    assert summary_of(instance, "downstream_stage")["seen"] == 2
    assert first.success
    # The run's log names what it read: the URI and the run that wrote it.
    [event] = [e for e in loaded.all_events if e.event_type_value == "LOADED_INPUT"]
    metadata = event.event_specific_data.metadata
    assert metadata["uri"].value == f"s3://{BUCKET}/executions/{second_run}/upstream_stage/output.json"
    assert metadata["source_run_id"].value == second_run


def test_partitions_have_their_own_folders_and_load_their_own_partition(aws):
    instance = DagsterInstance.ephemeral()
    for day in ("2026-03-01", "2026-03-02"):
        result = materialize([daily_stage], partition_key=day, resources=resources(), instance=instance)
        uri = result.asset_materializations_for_node("daily_stage")[0].metadata[OUTPUT_URI].value
        assert uri == f"s3://{BUCKET}/executions/{result.run_id}/daily_stage/{day}/output.json"
    materialize(
        [daily_stage, daily_downstream], selection=[daily_downstream], partition_key="2026-03-01", resources=resources(), instance=instance
    )
    assert summary_of(instance, "daily_downstream", "2026-03-01")["from"] == "2026-03-01"


def test_missing_upstream_materialization_is_a_clear_error(aws):
    result = materialize(
        [upstream_stage, downstream_stage],
        selection=[downstream_stage],
        resources=resources(),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    assert "no materialization of upstream_stage is recorded" in error.message


@given(st.text(min_size=1, max_size=40))
def test_key_parts_never_escape_their_prefix(text):
    try:
        part = validate_key_part(text)
    except InvalidKeyError:
        return
    assert "/" not in part and ".." not in part and not part.startswith(".")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 300, "run id"])
def test_bad_key_parts_are_refused(bad):
    with pytest.raises(InvalidKeyError):
        execution_prefix(bad, "stage")


@asset
def passing_through(upstream_stage: StageResult) -> StageResult:
    # Never touches the table: it is neither read nor written again.
    assert not upstream_stage.tables._loaded  # type: ignore[attr-defined]
    return StageResult(summary={"passed": True}, stored=dict(upstream_stage.stored))


@asset
def reads_through(passing_through: StageResult) -> StageResult:
    return StageResult(summary={"rows": len(passing_through.tables["rows"]), "n": float(passing_through.tables["rows"]["score"][1])})


def test_a_passed_through_table_points_at_the_upstream_parquet(aws):
    instance = DagsterInstance.ephemeral()
    VALUE["n"] = 4
    result = materialize([upstream_stage, passing_through, reads_through], resources=resources(), instance=instance)
    run = result.run_id
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"executions/{run}/passing_through/")["Contents"]}
    assert keys == {f"executions/{run}/passing_through/output.json"}  # no parquet of its own
    assert summary_of(instance, "passing_through")["artifacts"]["tables"] == {
        "rows": {"uri": f"s3://{BUCKET}/executions/{run}/upstream_stage/rows.parquet", "rows": 2}
    }
    assert summary_of(instance, "reads_through") == {"rows": 2, "n": 0.4, "artifacts": {"tables": {}, "files": {}}}
