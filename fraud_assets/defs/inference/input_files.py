"""The files that arrive from outside Dagster, made visible: daily_batches and fraud_labels are
S3 objects no run writes, so without a record of them the partition view showed every day
"Missing" although the files were there.

input_files_sensor lists their prefixes and reports, for each day whose file is new or changed
(its ETag), a runless materialization of that day's partition with the object's ETag, size and
last modification as metadata and the ETag as its data version: an observation (what Dagster's
data versions and the asset's observation history read) and a materialization beside it, since
Dagster 1.13's partition view counts materializations, never observations."""

import json
import re
from collections.abc import Callable, Mapping

from dagster import (
    AssetMaterialization,
    AssetObservation,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.common import daily_partitions
from fraud_assets.defs.resources import FraudPlatform
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.config import DAILY_BATCH_PREFIX, LABELS_PREFIX

PREFIXES = {"daily_batches": DAILY_BATCH_PREFIX, "fraud_labels": LABELS_PREFIX}
_DAY_FILE = re.compile(r"^[^/]+/(\d{4}-\d{2}-\d{2})\.json$")
# dagster's tag for an event's data version (what ObserveResult(data_version=...) writes).
DATA_VERSION_TAG = "dagster/data_version"


def changed_files(
    listed: Mapping[str, Mapping[str, dict]], cursor: Mapping[str, Mapping[str, str]], is_partition: Callable[[str], bool]
) -> tuple[list[tuple[str, str, dict]], dict[str, dict[str, str]]]:
    """Pure decision: files now (asset -> day -> {etag, size, ...}) against the cursor (asset -> day
    -> ETag reported) -> (asset, day, file) to report, and the new cursor. A day is reported once
    per ETag; a day that is not a partition (before the first day, or today's file early) is left
    until it is one. A file that went away leaves the cursor, so its return is reported again."""
    events, new_cursor = [], {}
    for asset, files in sorted(listed.items()):
        reported = dict(cursor.get(asset, {}))
        for day in sorted(set(reported) - set(files)):
            del reported[day]
        for day, file in sorted(files.items()):
            if reported.get(day) != file["etag"] and is_partition(day):
                events.append((asset, day, file))
                reported[day] = file["etag"]
        new_cursor[asset] = reported
    return events, new_cursor


def list_day_files(client, bucket: str, prefix: str) -> dict[str, dict]:
    """day -> the object's ETag, size, key and last modification, for `<prefix>/<YYYY-MM-DD>.json`."""
    files: dict[str, dict] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            if match := _DAY_FILE.match(obj["Key"]):
                files[match.group(1)] = {
                    "etag": obj["ETag"].strip('"'),
                    "size": obj["Size"],
                    "key": obj["Key"],
                    "last_modified": obj["LastModified"].isoformat(),
                }
    return files


@sensor(
    name="input_files_sensor",
    minimum_interval_seconds=120,
    default_status=DefaultSensorStatus.RUNNING,
    description="Lists s3://<data bucket>/daily-batches/ and labels/ and records each day's file on daily_batches "
    "and fraud_labels (ETag, size; the ETag as data version) when it appears or changes, so their partitions show "
    "which days have files.",
)
def input_files_sensor(context: SensorEvaluationContext, s3: S3Resource, platform: FraudPlatform):
    cursor = json.loads(context.cursor) if context.cursor else {}
    client = s3_client(s3)
    listed = {asset: list_day_files(client, platform.data_bucket, prefix) for asset, prefix in PREFIXES.items()}
    keys = set(daily_partitions.get_partition_keys())
    events, new_cursor = changed_files(listed, cursor, keys.__contains__)
    if not events:
        context.update_cursor(json.dumps(new_cursor, sort_keys=True))
        counts = ", ".join(f"{len(files)} {asset}" for asset, files in listed.items())
        return SkipReason(f"no new or changed file ({counts} files listed)")
    return SensorResult(
        asset_events=[
            event_type(
                asset_key=asset,
                partition=day,
                description=f"s3://{platform.data_bucket}/{file['key']} exists (recorded by input_files_sensor)",
                metadata={
                    "uri": MetadataValue.path(f"s3://{platform.data_bucket}/{file['key']}"),
                    "etag": file["etag"],
                    "size_bytes": MetadataValue.int(file["size"]),
                    "last_modified": file["last_modified"],
                },
                tags={DATA_VERSION_TAG: file["etag"]},
            )
            for asset, day, file in events
            for event_type in (AssetObservation, AssetMaterialization)
        ],
        cursor=json.dumps(new_cursor, sort_keys=True),
    )
