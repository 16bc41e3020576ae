"""The executions/<run id>/<stage>/ IO manager.

Each asset output is written to `s3://<workflow bucket>/executions/<run id>/<asset>/[<partition>/]`
as its data files (`<table>.parquet`, `model.tar.gz`, ...) and then `output.json` (the stage
summary plus the URIs of its files) — output.json last, so its presence means the stage finished.
A table the asset passes through unchanged (`StageResult.stored`) is not written again:
output.json points at the upstream's parquet. Input tables are read when the asset first uses them.
The URI of output.json goes into the materialization's metadata, and a downstream loads its input
through the URI recorded on the upstream materialization it depends on (for a partition, that
partition's), never by looking for the newest file: replay, single-asset debugging and backfills
all read exactly what Dagster says was materialised.
"""

import json

from dagster import (
    AssetRecordsFilter,
    ConfigurableIOManager,
    Failure,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
)
from dagster_aws.s3 import S3Resource

from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.storage import (
    SUMMARY_FILE,
    LazyTables,
    S3Uri,
    StageResult,
    execution_prefix,
    get_bytes,
    get_table,
    put_bytes,
    put_json,
    put_table,
    validate_key_part,
)
from fraud_assets.lib.memory import release_freed_memory


class ExecutionsIOManager(ConfigurableIOManager):
    s3: ResourceDependency[S3Resource]
    bucket: str

    def handle_output(self, context: OutputContext, obj: StageResult) -> None:
        if not isinstance(obj, StageResult):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; assets on this IO manager return StageResult"
            )
        client = s3_client(self.s3)
        partition = context.partition_key if context.has_partition_key else None
        prefix = execution_prefix(context.run_id, context.asset_key.path[-1], partition)
        tables, files, metadata = {}, {}, {}
        for name, frame in obj.tables.items():
            uri = put_table(client, self.bucket, prefix + validate_key_part(name, "table name") + ".parquet", frame)
            tables[name] = {"uri": str(uri), "rows": len(frame)}
            metadata[keys.artifact_uri_key(name)] = MetadataValue.path(str(uri))
        for name, entry in obj.stored.items():  # passed through: the upstream's own parquet
            uri = str(S3Uri.parse(entry["uri"]))
            tables[validate_key_part(name, "table name")] = {"uri": uri, "rows": int(entry["rows"])}
            metadata[keys.artifact_uri_key(name)] = MetadataValue.path(uri)
        for name, data in obj.files.items():
            uri = put_bytes(client, self.bucket, prefix + validate_key_part(name, "file name"), data)
            files[name] = {"uri": str(uri), "bytes": len(data)}
            metadata[keys.artifact_uri_key(name)] = MetadataValue.path(str(uri))
        document = {**obj.summary, "artifacts": {"tables": tables, "files": files}}
        summary_uri = put_json(client, self.bucket, prefix + SUMMARY_FILE, document)
        context.add_output_metadata({keys.OUTPUT_URI: MetadataValue.path(str(summary_uri)), **metadata})

    def load_input(self, context: InputContext) -> StageResult:
        # Before this step holds anything: what the earlier steps of the run freed (much of it in
        # reference cycles with Dagster's step objects) is collected and handed back to the system,
        # so this step's arrays do not come on top of it (the in-process executor: one process).
        release_freed_memory(collect_cycles=True)
        uri, source_run_id = self._recorded_uri(context)
        # The loaded-input event names what was read, so the run's log shows the lineage by URI.
        context.add_input_metadata({"uri": MetadataValue.path(uri), "source_run_id": source_run_id})
        client = s3_client(self.s3)

        def read(object_uri: str, get=get_bytes):
            try:
                return get(client, object_uri)
            except client.exceptions.NoSuchKey as err:
                # Dagster records the materialisation but storage lost it (e.g. a local stack
                # restored from a snapshot older than the run): say so, and how to recover.
                where = context.upstream_output.asset_key.to_user_string() if context.upstream_output else uri
                raise Failure(
                    f"{where}: {object_uri}, of the materialisation recorded by run {source_run_id}, is gone from storage; "
                    "storage and Dagster disagree. Re-run the partition (materialise it again) to restore it.",
                    metadata={"uri": MetadataValue.path(object_uri), "source_run_id": source_run_id},
                    allow_retries=False,  # a step retry cannot bring it back
                ) from err

        document = json.loads(read(uri))
        artifacts = document.pop("artifacts", {"tables": {}, "files": {}})
        stored = {name: {"uri": t["uri"], "rows": t["rows"]} for name, t in artifacts["tables"].items()}
        return StageResult(
            summary=document,
            # Read when the asset first touches a table: one that passes them through reads none.
            tables=LazyTables(list(stored), lambda name: read(stored[name]["uri"], get_table)),
            files={name: read(f["uri"]) for name, f in artifacts["files"].items()},
            uris={name: a["uri"] for kind in ("tables", "files") for name, a in artifacts[kind].items()},
            stored=stored,
        )

    def _recorded_uri(self, context: InputContext) -> tuple[str, str]:
        asset_key = context.asset_key
        partitions = [context.asset_partition_key] if context.has_asset_partitions else None
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions), limit=1
        ).records
        where = asset_key.to_user_string() + (f" partition {partitions[0]}" if partitions else "")
        if not records:
            # Failures no step retry mends (the steps' RetryPolicy is for AWS being away): at once.
            raise Failure(f"no materialization of {where} is recorded: materialise it first", allow_retries=False)
        materialization = records[0].asset_materialization
        entry = materialization.metadata.get(keys.OUTPUT_URI) if materialization else None
        if entry is None:
            raise Failure(f"the latest materialization of {where} records no {keys.OUTPUT_URI}", allow_retries=False)
        return entry.value, records[0].run_id
