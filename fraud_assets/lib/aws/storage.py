"""The S3 side of the platform: the executions/<id>/<stage> layout, validated keys, encrypted puts,
and the byte formats (parquet for tables, JSON for summaries). No pickle anywhere: an object read
back from a bucket is only ever parsed, never executed."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SSE = "AES256"
SUMMARY_FILE = "output.json"

# Run ids, stage names, partition keys and file names become S3 keys: allow a conservative
# alphabet only, so nothing a user types can climb out of its prefix or smuggle in a separator.
_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class InvalidKeyError(ValueError):
    pass


def validate_key_part(value: str, what: str = "key part") -> str:
    if not isinstance(value, str) or not _KEY_PART.match(value) or ".." in value:
        raise InvalidKeyError(f"invalid {what} {value!r}: use letters, digits and . _ = + - (no '..', no '/')")
    return value


def validate_bucket(bucket: str) -> str:
    if not _BUCKET.match(bucket or ""):
        raise InvalidKeyError(f"invalid bucket name {bucket!r}")
    return bucket


def execution_prefix(run_id: str, stage: str, partition: str | None = None) -> str:
    """`executions/<run id>/<stage>/` (and `<partition>/` below it for a partitioned asset)."""
    parts = ["executions", validate_key_part(run_id, "run id"), validate_key_part(stage, "stage")]
    if partition is not None:
        parts.append(validate_key_part(partition, "partition key"))
    return "/".join(parts) + "/"


@dataclasses.dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str) -> "S3Uri":
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise InvalidKeyError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        validate_bucket(bucket)
        if not key or ".." in key.split("/") or key.startswith("/"):
            raise InvalidKeyError(f"invalid object key in {uri!r}")
        return cls(bucket, key)


def put_bytes(
    s3, bucket: str, key: str, body: bytes | IO[bytes], content_type: str = "application/octet-stream", *, if_absent: bool = False
) -> S3Uri:
    """Every put in the project goes through here, so every object is encrypted at rest. `body` is
    the bytes or a seekable file botocore streams from. `if_absent`: only create (S3 conditional
    write, If-None-Match: *); an existing object makes S3 answer PreconditionFailed."""
    conditions = {"IfNoneMatch": "*"} if if_absent else {}
    s3.put_object(Bucket=validate_bucket(bucket), Key=key, Body=body, ContentType=content_type, ServerSideEncryption=SSE, **conditions)
    return S3Uri(bucket, key)


def upload_file(s3, bucket: str, key: str, path: str | Path, content_type: str = "application/octet-stream") -> S3Uri:
    """A local file uploaded as it is read (boto3's managed transfer: multipart above 8 MiB, a few
    parts at a time), never whole in memory; encrypted at rest like every put_bytes, on every
    part's upload (CreateMultipartUpload carries ServerSideEncryption)."""
    from boto3.s3.transfer import TransferConfig

    s3.upload_file(
        str(path),
        validate_bucket(bucket),
        key,
        ExtraArgs={"ContentType": content_type, "ServerSideEncryption": SSE},
        Config=TransferConfig(multipart_chunksize=16 * 1024 * 1024, max_concurrency=4),
    )
    return S3Uri(bucket, key)


def get_bytes(s3, uri: S3Uri | str) -> bytes:
    uri = S3Uri.parse(uri) if isinstance(uri, str) else uri
    return s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()


def download_to_file(s3, uri: S3Uri | str, path: Path) -> Path:
    """The object streamed into a local file, 8 MiB at a time (never whole in memory)."""
    with open(path, "wb") as f:
        _stream_into(s3, uri, f)
    return path


def _stream_into(s3, uri: S3Uri | str, f: IO[bytes]) -> None:
    uri = S3Uri.parse(uri) if isinstance(uri, str) else uri
    body = s3.get_object(Bucket=uri.bucket, Key=uri.key)["Body"]
    shutil.copyfileobj(body, f, 8 * 1024 * 1024)


def put_json(s3, bucket: str, key: str, value: Any, *, if_absent: bool = False) -> S3Uri:
    return put_bytes(s3, bucket, key, to_json_bytes(value), "application/json", if_absent=if_absent)


def get_json(s3, uri: S3Uri | str) -> Any:
    return json.loads(get_bytes(s3, uri))


def object_exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except s3.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def to_json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=json_default).encode()


def json_default(value: Any) -> Any:
    # numpy scalars and timestamps show up in summaries; everything else is a bug worth raising.
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def table_to_parquet(df: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    write_parquet(df, sink)
    return sink.getvalue()


def write_parquet(table: pd.DataFrame | pa.Table, sink: IO[bytes]) -> None:
    # from_pandas shares the frame's numeric and arrow-backed string buffers (no copy of the data).
    table = table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)
    # One row group: read back, each column is one contiguous buffer the frame can use as it is
    # (row groups would make every column a chunked array that has to be copied to be a column).
    pq.write_table(table, sink, compression="zstd", row_group_size=max(len(table), 1))


def parquet_to_table(data: bytes | IO[bytes]) -> pd.DataFrame:
    source = pa.BufferReader(data) if isinstance(data, bytes) else data
    # split_blocks + self_destruct: each column handed over as its own block as arrow lets go
    # of it, so the table is not held twice while it becomes a frame.
    # pre_buffer off: the reader would otherwise hold the whole file's bytes while it decodes.
    return pq.read_table(source, pre_buffer=False).to_pandas(split_blocks=True, self_destruct=True)


def put_table(s3, bucket: str, key: str, df: pd.DataFrame | pa.Table) -> S3Uri:
    """A frame (or arrow table) stored as zstd parquet, through a local temporary file: the file's bytes never sit
    in memory next to the frame (a split at 2.85M rows is hundreds of MB)."""
    with tempfile.TemporaryFile() as f:
        write_parquet(df, f)
        f.seek(0)
        return put_bytes(s3, bucket, key, f, "application/vnd.apache.parquet")


def get_table(s3, uri: S3Uri | str) -> pd.DataFrame:
    """A stored parquet table as a frame, through a local temporary file (see put_table)."""
    with tempfile.TemporaryFile() as f:
        _stream_into(s3, uri, f)
        f.seek(0)
        return parquet_to_table(f)


@contextlib.contextmanager
def parquet_batches(
    s3, uri: S3Uri | str, columns: Sequence[str], batch_rows: int = 16_384
) -> Iterator[tuple[int, Iterator[pa.RecordBatch]]]:
    """(row count, record batches of `columns`) of a stored parquet table, streamed into a local
    temporary file first: only one batch of rows is decoded at a time. The file is gone when the
    context ends. A column the table lacks raises ValueError naming it."""
    with tempfile.TemporaryFile() as f:
        _stream_into(s3, uri, f)
        f.seek(0)
        # buffer_size: each column chunk read through a buffer (unbuffered, arrow reads a whole chunk at once).
        source = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
        missing = [c for c in columns if c not in source.schema_arrow.names]
        if missing:
            raise ValueError(f"{uri} lacks columns {missing}")
        yield source.metadata.num_rows, source.iter_batches(batch_size=batch_rows, columns=list(columns))


def get_table_columns(s3, uri: S3Uri | str, columns: Sequence[str]) -> pd.DataFrame:
    """Only `columns` of a stored parquet table, as a frame (the other columns are never decoded)."""
    with tempfile.TemporaryFile() as f:
        _stream_into(s3, uri, f)
        f.seek(0)
        table = pq.read_table(f, columns=list(columns), pre_buffer=False)
        return table.to_pandas(split_blocks=True, self_destruct=True)


class LazyTables(Mapping):
    """Tables read on first access (then kept): a stage that never looks at an input table does
    not pay for reading it."""

    def __init__(self, names: list[str], load: Callable[[str], pd.DataFrame]):
        self._names, self._load, self._loaded = list(names), load, {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclasses.dataclass
class StageResult:
    """What an asset hands to the IO manager: the stage summary (`output.json`), tables (written
    as `<name>.parquet`) and opaque files (e.g. `model.tar.gz`)."""

    summary: dict[str, Any]
    # Frames; an asset may hand over an arrow table (written as it is, read back as a frame).
    tables: Mapping[str, pd.DataFrame | pa.Table] = dataclasses.field(default_factory=dict)
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    # Filled when loaded back: where each table and file lives (name -> s3:// URI).
    uris: dict[str, str] = dataclasses.field(default_factory=dict)
    # Tables already stored, name -> {"uri", "rows"}: loaded back, the input's own tables; handed
    # to the IO manager, recorded in output.json as they are instead of written again (a stage
    # that passes its input through costs no copy).
    stored: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        """The one table of a single-table stage."""
        if len(self.tables) != 1:
            raise ValueError(f"stage has {len(self.tables)} tables, not one: {sorted(self.tables)}")
        return next(iter(self.tables.values()))
