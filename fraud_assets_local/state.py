"""Persistence for the local stack: snapshot the state out through the public AWS APIs into plain
files, and replay it through the same APIs into a fresh moto. No pickles: a snapshot is readable
by hand and survives moto upgrades. One exception to the public APIs: DynamoDB items are exported
and loaded through the moto process's internal route (see stack.py), as the same DynamoDB-JSON
lines a Scan gives, because Scan/BatchWriteItem take minutes at 80,000 items; table definitions
still go through DescribeTable/CreateTable.

Layout of `state_dir`:

    .fraud-assets-state       marker: this directory is the stack's. The stack deletes files in it it
                              no longer references, so it refuses a non-empty directory without the
                              marker (a user's folder) instead of deleting what it did not write
    ports.json                the ports the stack last served on, reused on restart when free
    LOCK                      held (flock) while a stack uses the directory: one stack per state_dir
    CURRENT                   name of the current generation; replaced atomically, last
    generations/<gen>/        meta.json, s3.json, dynamodb.json + dynamodb-<n>.jsonl, ssm.json,
                              sagemaker.json, sns.json, sqs.json
    objects/<sha256>          S3 object bytes, named by hash(bucket, key, ETag): a path can never be
                              derived from a key, and a changed object gets a new file

A snapshot writes a new generation into a temporary directory, renames it into place, then points
CURRENT at it (os.replace) and only then deletes older generations and unreferenced objects. A
crash at any point leaves the previous CURRENT and everything it refers to intact. Objects whose
ETag is unchanged since the last snapshot are not downloaded again, and an items file whose bytes
hash as last time is hard-linked from the previous generation instead of written. A snapshot first
asks moto how many state-changing requests it has served: the same count as at the last snapshot
means nothing changed, and nothing is read at all. Otherwise it costs listing calls plus one
export per table.

Kept: S3 buckets (location, versioning status) with their current objects (content type, user
metadata, content encoding), DynamoDB tables (definition, TTL, items as DynamoDB-JSON lines),
SSM parameters (every version in order, values included, labels), SageMaker models, endpoint
configs and endpoints (with tags), SQS queues (attributes, not messages), SNS topics and their
subscriptions. Not kept: non-current object versions, SQS messages, CloudWatch data, anything
outside the stack's region. SecureString values are stored decrypted: the directory is created
0700, and it is local development state, not a vault.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = ".fraud-assets-state"
PORTS = "ports.json"
LOCK = "LOCK"
CURRENT = "CURRENT"
GENERATIONS = "generations"
OBJECTS = "objects"
_GENERATION = re.compile(r"^g[0-9]{20}-[0-9]{1,10}$")
_OWN_GENERATION = re.compile(r"^(?:\.tmp-)?g[0-9]{20}-[0-9]{1,10}$")  # a generation, or one a crash left half-written
_OBJECT_FILE = re.compile(r"^[0-9a-f]{64}$")
_ITEMS_FILE = re.compile(r"^dynamodb-[0-9]+\.jsonl$")

ClientFactory = Callable[[str], Any]


class StateError(RuntimeError):
    pass


def last_snapshot_time(state_dir: str | Path) -> str | None:
    """When the current snapshot in `state_dir` was taken (ISO-8601 UTC), read without taking the
    directory's lock (a running stack may hold it); None without a snapshot."""
    root = Path(state_dir)
    try:
        name = (root / CURRENT).read_text().strip()
        return _read_json(root / GENERATIONS / name / "meta.json").get("created") if _GENERATION.match(name) else None
    except FileNotFoundError:
        return None


class StateStore:
    def __init__(self, state_dir: str | Path, region: str):
        self.root = Path(state_dir)
        self.region = region
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _claim(self.root)
        (self.root / GENERATIONS).mkdir(exist_ok=True, mode=0o700)
        (self.root / OBJECTS).mkdir(exist_ok=True, mode=0o700)
        self._snapshot_token: str | None = None  # the moto change counter the last snapshot saw
        self._lock_file = open(self.root / LOCK, "a+")
        try:
            # Two stacks writing one directory would garbage-collect each other's files.
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise StateError(f"{self.root} is in use by another local stack") from None

    def close(self) -> None:
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    # -- reading ----------------------------------------------------------------------------

    def current_generation(self) -> Path | None:
        try:
            name = (self.root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        if not _GENERATION.match(name):
            raise StateError(f"{self.root / CURRENT} names {name!r}, not a snapshot generation")
        path = self.root / GENERATIONS / name
        if not (path / "meta.json").is_file():
            raise StateError(f"snapshot {path} is missing or incomplete")
        return path

    def has_snapshot(self) -> bool:
        return self.current_generation() is not None

    def snapshot_time(self) -> str | None:
        """When the current snapshot was taken (ISO-8601 UTC): a crash loses what changed after it."""
        generation = self.current_generation()
        return _read_json(generation / "meta.json").get("created") if generation is not None else None

    def recorded_ports(self) -> dict[str, int]:
        try:
            ports = _read_json(self.root / PORTS)
        except (FileNotFoundError, ValueError):
            return {}
        return {name: port for name, port in ports.items() if isinstance(port, int) and 0 < port < 65536}

    def record_ports(self, ports: dict[str, int]) -> None:
        _atomic_write(self.root / PORTS, json.dumps(ports, sort_keys=True).encode())

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self, client: ClientFactory) -> Path:
        """Write the stack's state as a new generation and make it current. Returns its path (the
        current one, unchanged, when nothing changed since the last snapshot)."""
        previous = self.current_generation()
        # Read before anything else: a change made while this snapshot runs moves the counter on.
        token = _change_token(client("dynamodb"))
        if previous is not None and token is not None and token == self._snapshot_token:
            return previous  # no request that may change state since the last snapshot
        name = f"g{time.time_ns():020d}-{os.getpid()}"
        tmp = self.root / GENERATIONS / f".tmp-{name}"
        tmp.mkdir(mode=0o700)
        try:
            writer = _GenerationWriter(tmp)
            previous_objects = _object_index(previous)
            writer.json("s3.json", _snapshot_s3(client("s3"), self.root / OBJECTS, previous_objects))
            _snapshot_dynamodb(client("dynamodb"), writer, previous)
            writer.json("ssm.json", _snapshot_ssm(client("ssm")))
            writer.json("sagemaker.json", _snapshot_sagemaker(client("sagemaker")))
            writer.json("sqs.json", _snapshot_sqs(client("sqs")))
            writer.json("sns.json", _snapshot_sns(client("sns")))
            digest = writer.digest()
            if previous is not None and _read_json(previous / "meta.json").get("digest") == digest:
                shutil.rmtree(tmp)
                self._collect_garbage(previous)  # still sweep debris an earlier crash left
                self._snapshot_token = token
                return previous
            writer.json(
                "meta.json",
                {
                    "format": FORMAT_VERSION,
                    "region": self.region,
                    "created": dt.datetime.now(dt.timezone.utc).isoformat(),
                    "digest": digest,
                },
            )
            _fsync_dir(tmp)
            final = self.root / GENERATIONS / name
            os.rename(tmp, final)
            _atomic_write(self.root / CURRENT, (name + "\n").encode())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._collect_garbage(final)
        self._snapshot_token = token
        return final

    def _collect_garbage(self, current: Path) -> None:
        # Only after CURRENT points at the new generation: until then the old one must stay whole.
        # Only names the stack gives its own files are ever deleted.
        for path in (self.root / GENERATIONS).iterdir():
            if path != current and _OWN_GENERATION.match(path.name):
                shutil.rmtree(path, ignore_errors=True)
        referenced = {entry["file"] for entry in _object_index(current).values()}
        for path in (self.root / OBJECTS).iterdir():
            if path.name not in referenced and _OBJECT_FILE.match(path.name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # -- restore ----------------------------------------------------------------------------

    def restore(self, client: ClientFactory) -> None:
        """Replay the current snapshot into an (empty) stack through the AWS APIs."""
        generation = self.current_generation()
        if generation is None:
            return
        meta = _read_json(generation / "meta.json")
        if meta.get("format") != FORMAT_VERSION:
            raise StateError(f"snapshot {generation} has format {meta.get('format')}, expected {FORMAT_VERSION}")
        if meta.get("region") != self.region:
            log.warning("snapshot %s was taken in %s; restoring into %s", generation, meta.get("region"), self.region)
        started = time.monotonic()
        _restore_s3(client("s3"), _read_json(generation / "s3.json"), self.root / OBJECTS, self.region)
        _restore_dynamodb(client("dynamodb"), generation)
        _restore_ssm(client("ssm"), _read_json(generation / "ssm.json"))
        _restore_sqs(client("sqs"), _read_json(generation / "sqs.json"))
        _restore_sns(client("sns"), _read_json(generation / "sns.json"))
        _restore_sagemaker(client("sagemaker"), _read_json(generation / "sagemaker.json"))
        log.info("restored local stack state from %s in %.1fs", generation, time.monotonic() - started)


def _claim(root: Path) -> None:
    """Make sure `root` is the stack's own directory before anything in it is written or deleted:
    an empty directory gets the marker; a non-empty one needs it, or (state written before the
    marker existed) must hold nothing but files the stack writes."""
    marker = root / MARKER
    if marker.is_file():
        return
    entries = list(root.iterdir())
    if entries and not all(_is_own(path) for path in entries):
        foreign = sorted(p.name for p in entries if not _is_own(p))[:5]
        raise StateError(
            f"{root} is not empty and was not written by the local stack (no {MARKER} marker; it holds e.g. "
            f"{', '.join(foreign)}). The stack deletes files it does not reference in its state directory, so it "
            "refuses to use this one: choose an empty or new directory for --state-dir."
        )
    _atomic_write(marker, b"fraud_assets local stack state; files here are deleted when no snapshot refers to them\n")


def _is_own(path: Path) -> bool:
    if path.name in {f".{name}.tmp" for name in (CURRENT, PORTS, MARKER)}:  # an atomic write a crash cut short
        return path.is_file()
    if path.name in (LOCK, CURRENT, PORTS):
        return path.is_file()
    if path.name == GENERATIONS:
        return path.is_dir() and all(_OWN_GENERATION.match(p.name) for p in path.iterdir())
    if path.name == OBJECTS:
        return path.is_dir() and all(_OBJECT_FILE.match(p.name) for p in path.iterdir())
    return False


# --------------------------------------------------------------------------------------------
# Files


class _GenerationWriter:
    """Writes a generation's files and a digest over them (to skip snapshots that change nothing)."""

    def __init__(self, root: Path):
        self.root = root
        self._hash = hashlib.sha256()

    def json(self, name: str, value: Any) -> None:
        self.write(name, [json.dumps(value, indent=1, sort_keys=True, default=_json_default).encode()])

    def hashed(self, name: str, sha256: str) -> None:
        """Count in a file written (or linked) by the caller, by its own hash."""
        self._hash.update(name.encode() + b"\0" + sha256.encode())

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        self._hash.update(name.encode() + b"\0")
        with open(self.root / name, "wb") as f:
            for chunk in chunks:
                self._hash.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())

    def digest(self) -> str:
        return self._hash.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot snapshot a {type(value).__name__}")


def _paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, [])


_NOT_FOUND = {
    "NoSuchBucket",
    "NoSuchKey",
    "404",
    "ResourceNotFoundException",
    "ParameterNotFound",
    "ValidationException",
    "NotFound",
    "NotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}


def _unless_gone(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a read; None if the resource vanished since it was listed. Snapshots run while the
    pipelines work, so deletes in between are normal, not an error."""
    from botocore.exceptions import ClientError

    try:
        return call(*args, **kwargs)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code", "") in _NOT_FOUND:
            return None
        raise


def _input_args(client: Any, operation: str, described: dict[str, Any]) -> dict[str, Any]:
    """Keep what the Create call accepts from a Describe answer (drops ARNs, times, statuses),
    and drop empty values, which moto reports but botocore's validation refuses."""
    members = client.meta.service_model.operation_model(operation).input_shape.members
    return {k: v for k, v in described.items() if k in members and v not in (None, {}, [], "")}


# --------------------------------------------------------------------------------------------
# S3


def object_file_name(bucket: str, key: str, etag: str) -> str:
    """The snapshot file of an object version: a hash, so no key can name a path."""
    return hashlib.sha256(f"{bucket}\0{key}\0{etag}".encode()).hexdigest()


def _object_index(generation: Path | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(bucket, key, ETag) -> manifest entry, for the objects a generation holds."""
    if generation is None or not (generation / "s3.json").is_file():
        return {}
    return {
        (bucket["name"], obj["key"], obj["etag"]): obj
        for bucket in _read_json(generation / "s3.json")["buckets"]
        for obj in bucket["objects"]
    }


def _snapshot_s3(s3: Any, objects_dir: Path, previous: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    buckets = []
    for bucket in s3.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        location = _unless_gone(s3.get_bucket_location, Bucket=name)
        versioning = _unless_gone(s3.get_bucket_versioning, Bucket=name)
        listing = _unless_gone(lambda: list(_paginate(s3, "list_objects_v2", "Contents", Bucket=name)))
        if location is None or versioning is None or listing is None:
            continue  # bucket deleted meanwhile
        entries = []
        for obj in listing:
            known = previous.get((name, obj["Key"], obj["ETag"]))
            if known is not None and (objects_dir / known["file"]).is_file():
                entries.append(known)  # same ETag as last time: bytes already on disk
            else:
                entry = _unless_gone(_download, s3, name, obj["Key"], objects_dir)
                if entry is not None:
                    entries.append(entry)
        buckets.append(
            {"name": name, "location": location.get("LocationConstraint"), "versioning": versioning.get("Status"), "objects": entries}
        )
    return {"buckets": buckets}


def _download(s3: Any, bucket: str, key: str, objects_dir: Path) -> dict[str, Any]:
    got = s3.get_object(Bucket=bucket, Key=key)
    file_name = object_file_name(bucket, key, got["ETag"])
    path = objects_dir / file_name
    tmp = objects_dir / f".tmp-{file_name}"
    with open(tmp, "wb") as f:
        for chunk in got["Body"].iter_chunks(1024 * 1024):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return _entry(key, got, file_name)


def _entry(key: str, response: dict[str, Any], file_name: str) -> dict[str, Any]:
    return {
        "key": key,
        "etag": response["ETag"],
        "file": file_name,
        "size": response.get("ContentLength"),
        "content_type": response.get("ContentType"),
        "content_encoding": response.get("ContentEncoding"),
        "metadata": response.get("Metadata") or {},
    }


def _restore_s3(s3: Any, manifest: dict[str, Any], objects_dir: Path, region: str) -> None:
    from fraud_assets.lib.aws.storage import SSE

    for bucket in manifest["buckets"]:
        name = bucket["name"]
        kwargs: dict[str, Any] = {"Bucket": name}
        if bucket.get("location"):
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": bucket["location"]}
        try:
            s3.create_bucket(**kwargs)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        if bucket.get("versioning"):
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": bucket["versioning"]})
        for obj in bucket["objects"]:
            if not _OBJECT_FILE.match(obj["file"]):
                raise StateError(f"manifest names object file {obj['file']!r}: not a snapshot file")
            path = objects_dir / obj["file"]
            if not path.is_file():
                raise StateError(f"snapshot is missing the bytes of s3://{name}/{obj['key']} ({path})")
            extra: dict[str, Any] = {"Metadata": obj.get("metadata") or {}}
            if obj.get("content_type"):
                extra["ContentType"] = obj["content_type"]
            if obj.get("content_encoding"):
                extra["ContentEncoding"] = obj["content_encoding"]
            with open(path, "rb") as body:
                # Encrypted at rest like every other put in the project.
                s3.put_object(Bucket=name, Key=obj["key"], Body=body, ServerSideEncryption=SSE, **extra)


# --------------------------------------------------------------------------------------------
# DynamoDB


def _snapshot_dynamodb(ddb: Any, writer: _GenerationWriter, previous: Path | None) -> None:
    # Table definitions through the API; items through the moto process's export route (Scan
    # costs ~3 s per 6,000 items in moto and 500s under concurrent writes).
    known = {}
    if previous is not None and (previous / "dynamodb.json").is_file():
        known = {t["definition"]["TableName"]: t for t in _read_json(previous / "dynamodb.json")["tables"]}
    tables = []
    for n, name in enumerate(_paginate(ddb, "list_tables", "TableNames")):
        described = _unless_gone(ddb.describe_table, TableName=name)
        ttl_answer = _unless_gone(ddb.describe_time_to_live, TableName=name)
        exported = _export_items(ddb, name) if described is not None and ttl_answer is not None else None
        if exported is None:
            continue  # table deleted meanwhile
        data, count = exported
        desc, ttl = described["Table"], ttl_answer.get("TimeToLiveDescription", {})
        items_file = f"dynamodb-{n}.jsonl"
        sha = hashlib.sha256(data).hexdigest()
        before = known.get(name)
        unchanged = (
            previous is not None
            and before is not None
            and before.get("items_sha256") == sha
            and _ITEMS_FILE.match(str(before.get("items_file"))) is not None
        )
        if not (unchanged and _link(previous / before["items_file"], writer.root / items_file)):
            writer.write(items_file, [data])
        writer.hashed(items_file, sha)
        tables.append(
            {
                "definition": _table_definition(desc),
                "ttl_attribute": ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") else None,
                "items_file": items_file,
                "items_sha256": sha,
                "items_count": count,
            }
        )
    writer.json("dynamodb.json", {"tables": tables})


def _link(existing: Path, new: Path) -> bool:
    """Reuse an unchanged items file of the previous generation (files are never modified once
    written, so both generations may share it)."""
    try:
        os.link(existing, new)
        return True
    except OSError:  # gone, or a filesystem without hard links: write it again
        return False


def _local_stack_address(ddb: Any) -> tuple[str, int]:
    """Host and port of the moto process behind this client. Only ever the local stack: the
    internal routes exist nowhere else."""
    url = urlsplit(ddb.meta.endpoint_url)
    if url.hostname not in ("127.0.0.1", "localhost") or url.port is None:
        raise StateError(f"the DynamoDB client points at {ddb.meta.endpoint_url}, not the local stack")
    return "127.0.0.1", url.port


def _internal_request(
    ddb: Any, method: str, path: str, body: bytes | None = None, timeout: float = 300
) -> tuple[int, dict[str, str], bytes]:
    host, port = _local_stack_address(ddb)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/x-ndjson"} if body is not None else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()  # IncompleteRead if cut short
    finally:
        conn.close()


def _items_path(ddb: Any, table: str) -> str:
    return f"/_fraud_assets/dynamodb/{quote(ddb.meta.region_name, safe='')}/{quote(table, safe='')}/items"


def _route_error(status: int, body: bytes) -> str:
    try:
        answer = json.loads(body)
        return f"{status} {answer.get('__type')}: {answer.get('message', '')}"
    except ValueError:
        return f"{status}: {body[:200]!r}"


def _export_items(ddb: Any, table: str) -> tuple[bytes, int] | None:
    """The table's items as DynamoDB-JSON lines and their count; None if the table is gone."""
    status, headers, body = _internal_request(ddb, "GET", _items_path(ddb, table))
    if status == 404 and b"ResourceNotFoundException" in body:
        return None
    if status != 200:
        raise StateError(f"exporting the items of DynamoDB table {table} failed: {_route_error(status, body)}")
    count, lines = int(headers.get("x-item-count", "-1")), body.count(b"\n")
    if lines != count:
        raise StateError(f"the export of {table} holds {lines} lines, announced {count}")
    return body, count


def _change_token(ddb: Any) -> str | None:
    """Moto's count of requests that may have changed state (with its instance id), or None if
    it cannot say (then the snapshot is taken in full)."""
    try:
        status, _, body = _internal_request(ddb, "GET", "/_fraud_assets/changes", timeout=30)
        answer = json.loads(body) if status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return f"{answer['instance']}:{answer['changes']}" if isinstance(answer, dict) else None


def _table_definition(desc: dict[str, Any]) -> dict[str, Any]:
    billing = (desc.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    provisioned = billing == "PROVISIONED"

    def throughput(pt: dict[str, Any] | None) -> dict[str, int]:
        pt = pt or {}
        return {"ReadCapacityUnits": max(1, pt.get("ReadCapacityUnits", 1)), "WriteCapacityUnits": max(1, pt.get("WriteCapacityUnits", 1))}

    definition: dict[str, Any] = {
        "TableName": desc["TableName"],
        "AttributeDefinitions": desc["AttributeDefinitions"],
        "KeySchema": desc["KeySchema"],
        "BillingMode": billing,
    }
    if provisioned:
        definition["ProvisionedThroughput"] = throughput(desc.get("ProvisionedThroughput"))
    gsis = []
    for gsi in desc.get("GlobalSecondaryIndexes") or []:
        index = {"IndexName": gsi["IndexName"], "KeySchema": gsi["KeySchema"], "Projection": gsi["Projection"]}
        if provisioned:
            index["ProvisionedThroughput"] = throughput(gsi.get("ProvisionedThroughput"))
        gsis.append(index)
    if gsis:
        definition["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
        for i in desc.get("LocalSecondaryIndexes") or []
    ]
    if lsis:
        definition["LocalSecondaryIndexes"] = lsis
    stream = desc.get("StreamSpecification")
    if stream and stream.get("StreamEnabled"):
        definition["StreamSpecification"] = stream
    return definition


def _restore_dynamodb(ddb: Any, generation: Path) -> None:
    for table in _read_json(generation / "dynamodb.json")["tables"]:
        definition = table["definition"]
        name = definition["TableName"]
        try:
            ddb.create_table(**definition)
            ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        except ddb.exceptions.ResourceInUseException:
            pass
        if table.get("ttl_attribute"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": table["ttl_attribute"]})
        items_file = table["items_file"]
        if not _ITEMS_FILE.match(items_file):
            raise StateError(f"bad items file name {items_file!r} in {generation}")
        data = (generation / items_file).read_bytes()
        if table.get("items_sha256") and hashlib.sha256(data).hexdigest() != table["items_sha256"]:
            raise StateError(f"{generation / items_file} does not match its recorded hash: the snapshot is damaged")
        # One request for the whole table: BatchWriteItem's 25 items a call would take a minute.
        status, _, body = _internal_request(ddb, "POST", _items_path(ddb, name), body=data)
        if status != 200:
            raise StateError(f"loading the items of DynamoDB table {name} failed: {_route_error(status, body)}")
        loaded = json.loads(body)["loaded"]
        if table.get("items_count") is not None and loaded != table["items_count"]:
            raise StateError(f"loaded {loaded} items into {name}, the snapshot holds {table['items_count']}")


# --------------------------------------------------------------------------------------------
# SSM


_SSM_FIELDS = ("Value", "Type", "Description", "AllowedPattern", "Tier", "DataType", "Labels", "Version")


def _snapshot_ssm(ssm: Any) -> dict[str, Any]:
    parameters = []
    for param in _paginate(ssm, "describe_parameters", "Parameters"):
        name = param["Name"]
        if name.lstrip("/").lower().startswith(("aws", "ssm")):
            continue  # AWS's public parameters (moto loads them on demand); nobody may put these
        history = _unless_gone(lambda: list(_paginate(ssm, "get_parameter_history", "Parameters", Name=name, WithDecryption=True)))
        if history is None:
            continue
        versions = sorted(({k: v[k] for k in _SSM_FIELDS if v.get(k) not in (None, "")} for v in history), key=lambda v: v["Version"])
        parameters.append({"name": name, "versions": versions})
    return {"parameters": parameters}


def _restore_ssm(ssm: Any, manifest: dict[str, Any]) -> None:
    for param in manifest["parameters"]:
        name = param["name"]
        try:  # the template's own parameters exist already: replay only the versions after theirs
            current = ssm.get_parameter(Name=name)["Parameter"]["Version"]
        except ssm.exceptions.ParameterNotFound:
            current = 0
        for version in param["versions"]:
            if version["Version"] <= current:
                continue
            args: dict[str, Any] = {
                "Name": name,
                "Value": version["Value"],
                "Type": version.get("Type", "String"),
                "Overwrite": current > 0,
            }
            for field in ("Description", "AllowedPattern", "Tier", "DataType"):
                if version.get(field):
                    args[field] = version[field]
            # SSM keeps a limited history: when older versions were dropped, put the oldest kept
            # value again until the counter reaches its number, so version numbers replay exactly.
            while current < version["Version"]:
                current = ssm.put_parameter(**args)["Version"]
                args["Overwrite"] = True
            if version.get("Labels"):
                ssm.label_parameter_version(Name=name, ParameterVersion=version["Version"], Labels=version["Labels"])


# --------------------------------------------------------------------------------------------
# SageMaker


def _snapshot_sagemaker(sm: Any) -> dict[str, Any]:
    def tags(arn: str) -> list[dict[str, str]]:
        return (_unless_gone(sm.list_tags, ResourceArn=arn) or {}).get("Tags", [])

    models = []
    for summary in _paginate(sm, "list_models", "Models"):
        desc = _unless_gone(sm.describe_model, ModelName=summary["ModelName"])
        if desc is not None:
            models.append({**_input_args(sm, "CreateModel", desc), "Tags": tags(desc["ModelArn"])})
    configs = []
    for summary in _paginate(sm, "list_endpoint_configs", "EndpointConfigs"):
        desc = _unless_gone(sm.describe_endpoint_config, EndpointConfigName=summary["EndpointConfigName"])
        if desc is not None:
            configs.append({**_input_args(sm, "CreateEndpointConfig", desc), "Tags": tags(desc["EndpointConfigArn"])})
    endpoints = []
    for summary in _paginate(sm, "list_endpoints", "Endpoints"):
        desc = _unless_gone(sm.describe_endpoint, EndpointName=summary["EndpointName"])
        if desc is not None:
            endpoints.append(
                {"EndpointName": desc["EndpointName"], "EndpointConfigName": desc["EndpointConfigName"], "Tags": tags(desc["EndpointArn"])}
            )
    return {"models": models, "endpoint_configs": configs, "endpoints": endpoints}


def _restore_sagemaker(sm: Any, manifest: dict[str, Any]) -> None:
    for op, key, create in (
        ("CreateModel", "models", sm.create_model),
        ("CreateEndpointConfig", "endpoint_configs", sm.create_endpoint_config),
        ("CreateEndpoint", "endpoints", sm.create_endpoint),
    ):
        for resource in manifest[key]:
            args = _input_args(sm, op, resource)
            try:
                create(**args)
            except sm.exceptions.ClientError as err:
                # AWS lets a model be deleted while a config still names it; moto then refuses to
                # recreate the config. Keep going: the rest of the state matters more.
                log.warning("could not restore SageMaker %s %s: %s", key, next(iter(args.values())), err)


# --------------------------------------------------------------------------------------------
# SQS and SNS


_SQS_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "Policy",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
)


def _snapshot_sqs(sqs: Any) -> dict[str, Any]:
    queues = []
    for url in _paginate(sqs, "list_queues", "QueueUrls"):
        answer = _unless_gone(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["All"])
        if answer is None:
            continue
        attrs = answer.get("Attributes", {})
        queues.append({"name": url.rstrip("/").rsplit("/", 1)[-1], "attributes": {k: v for k, v in attrs.items() if k in _SQS_ATTRIBUTES}})
    return {"queues": queues}


def _restore_sqs(sqs: Any, manifest: dict[str, Any]) -> None:
    redrives = []
    for queue in manifest["queues"]:
        attrs = dict(queue["attributes"])
        redrive = attrs.pop("RedrivePolicy", None)
        url = sqs.create_queue(QueueName=queue["name"], Attributes=attrs)["QueueUrl"]
        if redrive:
            redrives.append((url, redrive))
    for url, redrive in redrives:  # after all queues exist: a redrive policy names its DLQ
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": redrive})


_SNS_TOPIC_ATTRIBUTES = ("DisplayName", "DeliveryPolicy", "FifoTopic", "ContentBasedDeduplication", "KmsMasterKeyId")
_SNS_SUBSCRIPTION_ATTRIBUTES = ("RawMessageDelivery", "FilterPolicy", "FilterPolicyScope", "RedrivePolicy")


def _snapshot_sns(sns: Any) -> dict[str, Any]:
    topics = []
    for topic in _paginate(sns, "list_topics", "Topics"):
        arn = topic["TopicArn"]
        answer = _unless_gone(sns.get_topic_attributes, TopicArn=arn)
        listed = _unless_gone(lambda: list(_paginate(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=arn)))
        if answer is None or listed is None:
            continue
        attrs = answer.get("Attributes", {})
        subscriptions = []
        for sub in listed:
            sub_attrs: dict[str, str] = {}
            if sub.get("SubscriptionArn", "").startswith("arn:"):
                got = (_unless_gone(sns.get_subscription_attributes, SubscriptionArn=sub["SubscriptionArn"]) or {}).get("Attributes", {})
                sub_attrs = {k: v for k, v in got.items() if k in _SNS_SUBSCRIPTION_ATTRIBUTES and v}
            subscriptions.append({"protocol": sub["Protocol"], "endpoint": sub["Endpoint"], "attributes": sub_attrs})
        topics.append(
            {
                "name": arn.rsplit(":", 1)[-1],
                "attributes": {k: v for k, v in attrs.items() if k in _SNS_TOPIC_ATTRIBUTES and v},
                "subscriptions": subscriptions,
            }
        )
    return {"topics": topics}


def _restore_sns(sns: Any, manifest: dict[str, Any]) -> None:
    for topic in manifest["topics"]:
        arn = sns.create_topic(Name=topic["name"], Attributes=topic["attributes"])["TopicArn"]
        for sub in topic["subscriptions"]:
            sns.subscribe(
                TopicArn=arn, Protocol=sub["protocol"], Endpoint=sub["endpoint"], Attributes=sub["attributes"], ReturnSubscriptionArn=True
            )
