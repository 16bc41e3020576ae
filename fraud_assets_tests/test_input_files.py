"""daily_batches and fraud_labels show which days have files: input_files_sensor, against the local
stack's S3, records each day's file (ETag, size) once per version, the way the daemon stores what a
sensor returns, and the partition view counts it. Before, both showed every day "Missing"."""

import boto3
from dagster import AssetKey, AssetObservation, DagsterInstance, SensorResult, SkipReason, build_sensor_context
from dagster_aws.s3 import S3Resource

from fraud_assets.definitions import location_defs
from fraud_assets.defs.resources import FraudPlatform
from fraud_assets.lib.config import PlatformNames, daily_batch_key, label_file_key

NAMES = PlatformNames()
DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]


def test_changed_files_reports_each_day_once_per_etag():
    from fraud_assets.defs.inference.input_files import changed_files

    def files(**etags):
        return {day.replace("_", "-"): {"etag": etag, "size": 1} for day, etag in etags.items()}

    partitions = {"2026-03-01", "2026-03-02"}.__contains__
    listed = {"daily_batches": files(**{"2026_03_01": "a", "2026_03_02": "b", "2099_01_01": "z"})}
    events, cursor = changed_files(listed, {}, partitions)
    assert [(a, d) for a, d, _ in events] == [("daily_batches", "2026-03-01"), ("daily_batches", "2026-03-02")]
    assert changed_files(listed, cursor, partitions)[0] == []  # nothing new: nothing reported
    listed["daily_batches"]["2026-03-02"]["etag"] = "b2"  # replaced
    del listed["daily_batches"]["2026-03-01"]  # gone: forgotten, so its return counts again
    events, cursor = changed_files(listed, cursor, partitions)
    assert [(d, f["etag"]) for _, d, f in events] == [("2026-03-02", "b2")] and "2026-03-01" not in cursor["daily_batches"]


def test_the_partition_view_shows_the_days_that_have_files(aws):
    s3 = boto3.client("s3")
    for day in DAYS:
        s3.put_object(Bucket=NAMES.data_bucket, Key=daily_batch_key(day), Body=b"[]")
    s3.put_object(Bucket=NAMES.data_bucket, Key=label_file_key(DAYS[0]), Body=b'[{"transactionId": "t"}]')
    s3.put_object(Bucket=NAMES.data_bucket, Key="daily-batches/notes.json", Body=b"{}")  # not a day's file
    s3.put_object(Bucket=NAMES.data_bucket, Key=daily_batch_key("2023-12-31"), Body=b"[]")  # before the first day

    defs = location_defs()
    sensor = defs.resolve_sensor_def("input_files_sensor")
    instance = DagsterInstance.ephemeral()
    cursor = None

    def tick():
        nonlocal cursor
        context = build_sensor_context(
            instance=instance, definitions=defs, cursor=cursor, resources={"s3": S3Resource(), "platform": FraudPlatform()}
        )
        result = sensor(context)
        if isinstance(result, SensorResult):
            for event in result.asset_events:  # what the sensor daemon does with them
                instance.report_runless_asset_event(event)
            cursor = result.cursor
            # One observation and one materialization per file; the observation comes first.
            observed = [e for e in result.asset_events if isinstance(e, AssetObservation)]
            materialized = [e for e in result.asset_events if not isinstance(e, AssetObservation)]
            assert [(e.asset_key, e.partition, e.metadata) for e in observed] == [
                (e.asset_key, e.partition, e.metadata) for e in materialized
            ]
            return materialized
        assert isinstance(result, SkipReason)
        cursor = context.cursor
        return []

    def present(asset: str) -> list[str]:
        # The partition view's "materialized" subset (Dagster's partition status, without its cache).
        return sorted(instance.get_materialized_partitions(AssetKey(asset)))

    assert present("daily_batches") == [] and present("fraud_labels") == []
    first = tick()
    assert present("daily_batches") == DAYS and present("fraud_labels") == DAYS[:1]
    head = s3.head_object(Bucket=NAMES.data_bucket, Key=label_file_key(DAYS[0]))
    [labels] = [e for e in first if e.asset_key == AssetKey("fraud_labels")]
    assert labels.metadata["etag"].value == head["ETag"].strip('"') == labels.tags["dagster/data_version"]
    assert labels.metadata["size_bytes"].value == head["ContentLength"]
    assert labels.metadata["uri"].value == f"s3://{NAMES.data_bucket}/{label_file_key(DAYS[0])}"
    [observation] = instance.fetch_observations(AssetKey("fraud_labels"), limit=10).records
    assert observation.asset_observation.metadata["etag"].value == labels.metadata["etag"].value

    assert tick() == []  # unchanged files are not recorded again
    s3.put_object(Bucket=NAMES.data_bucket, Key=daily_batch_key(DAYS[1]), Body=b'[{"id": 1}]')
    [replaced] = tick()
    assert (replaced.asset_key, replaced.partition) == (AssetKey("daily_batches"), DAYS[1])
    assert replaced.metadata["size_bytes"].value == len(b'[{"id": 1}]')

    # Why a materialization: Dagster 1.13's partition view counts no observation.
    instance.report_runless_asset_event(AssetObservation("fraud_labels", partition=DAYS[2], metadata={"etag": "x"}))
    assert present("fraud_labels") == DAYS[:1]
