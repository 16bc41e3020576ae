"""A SageMaker-Runtime-compatible model server for the local stack.

`POST /endpoints/<name>/invocations` is what boto3's `sagemaker-runtime` client calls when
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME points here; `GET /ping` is the container health check.
The request/response contract is the SageMaker built-in XGBoost container's: `text/csv` rows
without a header, features in model order; scores back as `text/csv` (one per line),
`application/json` (`{"predictions": [{"score": ...}]}`) or `application/jsonlines`.

What an endpoint serves comes from the control plane (moto), exactly as on AWS:
DescribeEndpoint -> endpoint config -> ProductionVariants[0].ModelName -> DescribeModel ->
ModelDataUrl -> model.tar.gz holding `xgboost-model` (an xgboost JSON/UBJSON model, loaded with
`Booster.load_model`; pickled models are refused, since loading a pickle runs code).
DescribeEndpoint is asked on every request (one local call, made while the CSV is parsed with the
model served last time) so an UpdateEndpoint or DeleteEndpoint shows at once; the rest of the
chain and the artifact's ETag are re-checked at most every `--resolve-interval` seconds. Boosters
are cached by (ModelDataUrl, ETag), so an update to a model already seen costs no download.

Speed: pyarrow's multi-threaded CSV reader into float32, `inplace_predict` (one thread per request
by default: parallel requests fill the cores), and scores printed by pyarrow (shortest text that
round-trips float32). A `Server-Timing` header says where the time
went. Served by werkzeug's threaded server, so concurrent requests overlap, with HTTP/1.1
keep-alive (local/http11.py), so a client's pooled connections are reused.

Errors are shaped for botocore's rest-json parser (`x-amzn-ErrorType` header plus a JSON body),
so callers get a readable ClientError: `ValidationError` for what SageMaker Runtime itself
rejects (unknown endpoint 400, body over 6 MiB 413) and `ModelError` for what the container
rejects (415 unsupported content type, 406 unsupported Accept, 400 malformed rows), with the
container's status kept as the HTTP status and in `OriginalStatusCode`. An endpoint whose model
cannot be loaded (missing artifact, no `xgboost-model`, not xgboost JSON) answers ModelError 424,
AWS's status for it, which botocore does not retry.

The stack runs this server in the SageMaker XGBoost container's environment (.venv-container:
XGBoost 1.7.6 with NumPy 1.x, requirements-container.lock), not in the project's: the endpoint
then loads and scores an artifact with the version AWS would, while the Dagster process trains
and explains with 3.x, so a format difference between the two shows locally. So this module
imports nothing of the package beyond `local.http11`, `local.processes` and `lib.config` (no
pandas there). `GET /_local/info` reports the versions it serves with.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import io
import json
import logging
import os
import re
import sys
import tarfile
import threading
import time
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from werkzeug.serving import make_server
from werkzeug.wrappers import Request

from fraud_assets_local.http11 import KeepAliveRequestHandler

log = logging.getLogger("fraud_assets.model_server")

MAX_BODY = 6 * 1024 * 1024  # SageMaker Runtime's InvokeEndpoint payload limit
MODEL_FILE = "xgboost-model"
MAX_MODEL_BYTES = 512 * 1024 * 1024  # refuse tar bombs: no real model of ours is near this
MODEL_CACHE_SIZE = 8
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ACCOUNT_ID = "123456789012"  # moto's default account, used in AWS-shaped messages only
CSV_TYPES = ("text/csv",)
ACCEPT_TYPES = ("text/csv", "application/json", "application/jsonlines")


class InvocationError(Exception):
    def __init__(self, status: int, code: str, message: str, original_status: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.original_status = original_status or status

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"__type": self.code, "message": self.message, "Message": self.message}
        if self.code == "ModelError":
            body.update(OriginalStatusCode=self.original_status, OriginalMessage=self.message)
        return body


def _model_error(status: int, message: str) -> InvocationError:
    return InvocationError(status, "ModelError", message)


def _artifact_error(message: str) -> InvocationError:
    # The endpoint's model cannot be loaded: AWS's ModelError status (424), and 424 as the original
    # status too, not a 5xx, so no client retries what no retry can fix.
    return InvocationError(424, "ModelError", message)


def _validation_error(message: str, status: int = 400) -> InvocationError:
    return InvocationError(status, "ValidationError", message)


# --------------------------------------------------------------------------------------------
# Resolving an endpoint to a loaded booster


@dataclasses.dataclass
class LoadedModel:
    booster: Any  # xgboost.Booster
    num_features: int
    model_data_url: str
    etag: str
    column_names: list[str] = dataclasses.field(default_factory=list)
    convert_options: Any = None


@dataclasses.dataclass
class EndpointState:
    key: tuple[str, str]  # (EndpointConfigName, LastModifiedTime) as DescribeEndpoint reports them
    model_name: str
    variant_name: str
    model: LoadedModel
    validated_at: float


class EndpointResolver:
    def __init__(self, clients: "_LazyClients", resolve_interval: float = 1.0, predict_threads: int = 1):
        self._clients = clients
        self._interval = resolve_interval
        self._predict_threads = predict_threads
        self._endpoints: dict[str, EndpointState] = {}
        self._models: collections.OrderedDict[tuple[str, str], LoadedModel] = collections.OrderedDict()
        self._lock = threading.Lock()  # slow path only: one resolve/download at a time

    @property
    def _sm(self) -> Any:
        return self._clients.get("sagemaker")

    @property
    def _s3(self) -> Any:
        return self._clients.get("s3")

    def clear(self) -> None:
        with self._lock:
            self._endpoints.clear()
            self._models.clear()

    def cached(self, name: str) -> EndpointState | None:
        return self._endpoints.get(name)

    def resolve(self, name: str) -> EndpointState:
        desc = self._describe_endpoint(name)
        key = (desc["EndpointConfigName"], str(desc.get("LastModifiedTime")))
        state = self._endpoints.get(name)
        if state is not None and state.key == key and time.monotonic() - state.validated_at < self._interval:
            return state
        with self._lock:
            state = self._endpoints.get(name)
            if state is not None and state.key == key and time.monotonic() - state.validated_at < self._interval:
                return state
            state = self._resolve_slow(name, key)
            self._endpoints[name] = state
            return state

    def _describe_endpoint(self, name: str) -> dict[str, Any]:
        try:
            desc = self._sm.describe_endpoint(EndpointName=name)
        except self._sm.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("ValidationException", "ValidationError"):
                self._endpoints.pop(name, None)
                raise _validation_error(f"Endpoint {name} of account {ACCOUNT_ID} not found.") from None
            raise
        status = desc.get("EndpointStatus")
        if status not in ("InService", "Updating", "SystemUpdating"):  # AWS serves while updating
            raise _validation_error(f"Endpoint {name} of account {ACCOUNT_ID} is not in service (status {status}).")
        return desc

    def _resolve_slow(self, name: str, key: tuple[str, str]) -> EndpointState:
        try:
            # AWS lets a config or model be deleted while an endpoint still runs it; here that
            # leaves nothing to serve, so say which link of the chain is missing.
            config = self._sm.describe_endpoint_config(EndpointConfigName=key[0])
            variants = config.get("ProductionVariants") or []
            if not variants:
                raise _validation_error(f"Endpoint {name}: endpoint config {key[0]} has no production variant.")
            variant = variants[0]
            model = self._sm.describe_model(ModelName=variant["ModelName"])
        except self._sm.exceptions.ClientError as err:
            raise _artifact_error(f"Endpoint {name}: cannot find what it runs: {err}") from None
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        url = container.get("ModelDataUrl")
        if not url:
            raise _artifact_error(f"Model {variant['ModelName']} has no ModelDataUrl; nothing to serve.")
        return EndpointState(
            key=key,
            model_name=variant["ModelName"],
            variant_name=variant.get("VariantName", "AllTraffic"),
            model=self._model_for(url),
            validated_at=time.monotonic(),
        )

    def _model_for(self, url: str) -> LoadedModel:
        bucket, key = model_location(url)
        try:
            etag = self._s3.head_object(Bucket=bucket, Key=key)["ETag"]
        except self._s3.exceptions.ClientError as err:
            raise _artifact_error(f"Could not read the model artifact {url}: {err}") from None
        cached = self._models.get((url, etag))
        if cached is not None:
            self._models.move_to_end((url, etag))
            return cached
        obj = self._s3.get_object(Bucket=bucket, Key=key)
        loaded = load_model_archive(obj["Body"].read(), url, obj["ETag"], self._predict_threads)
        self._models[(url, obj["ETag"])] = loaded
        while len(self._models) > MODEL_CACHE_SIZE:
            self._models.popitem(last=False)
        return loaded


def model_location(url: str) -> tuple[str, str]:
    """ModelDataUrl -> (bucket, key), checked as lib/aws/storage.S3Uri.parse checks it (not imported:
    it needs pandas, which the container's environment does not have)."""
    bucket, _, key = url[len("s3://") :].partition("/") if url.startswith("s3://") else ("", "", "")
    if not BUCKET_NAME.match(bucket) or not key or key.startswith("/") or ".." in key.split("/"):
        raise _artifact_error(f"ModelDataUrl {url!r} is not usable: not an s3://<bucket>/<key> URI")
    return bucket, key


def load_model_archive(data: bytes, url: str = "", etag: str = "", predict_threads: int = 0) -> LoadedModel:
    """`model.tar.gz` -> booster, reading `xgboost-model` from the archive in memory (nothing is
    extracted to disk, so member names cannot write anywhere)."""
    import xgboost as xgb

    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.rsplit("/", 1)[-1] == MODEL_FILE]
            if not members:
                raise _artifact_error(f"{url}: the archive has no {MODEL_FILE!r} file")
            if members[0].size > MAX_MODEL_BYTES:
                raise _artifact_error(f"{url}: {MODEL_FILE} is {members[0].size} bytes, over the limit")
            raw = tar.extractfile(members[0]).read()  # type: ignore[union-attr]
    except tarfile.TarError as err:
        raise _artifact_error(f"{url}: not a readable model.tar.gz: {err}") from None
    if raw[:1] not in (b"{", b"["):
        # JSON starts with '{', UBJSON with '{' too; anything else (a pickle, say) is refused.
        raise _artifact_error(f"{url}: {MODEL_FILE} is not an xgboost JSON/UBJSON model (pickles are refused)")
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError as err:
        raise _artifact_error(f"{url}: xgboost could not load {MODEL_FILE}: {err}") from None
    if predict_threads:
        booster.set_param({"nthread": predict_threads})
    n = booster.num_features()
    names = [f"f{i}" for i in range(n)]
    convert = pacsv.ConvertOptions(column_types={c: pa.float32() for c in names})
    return LoadedModel(booster, n, url, etag, names, convert)


# --------------------------------------------------------------------------------------------
# CSV in, scores out


def parse_csv(body: bytes | bytearray, model: LoadedModel) -> np.ndarray:
    """Rows of floats (no header) -> float32 matrix; 400 naming the first bad row otherwise."""
    bad_rows: list[Any] = []

    def on_invalid_row(row: Any) -> str:
        bad_rows.append(row)
        return "skip"  # keep parsing; we report the first bad row after

    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=model.column_names),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid_row),
            convert_options=model.convert_options,
        )
    except pa.ArrowInvalid as err:
        raise _model_error(400, _describe_bad_value(body, model.num_features) or f"Loading csv data failed: {err}") from None
    if bad_rows:
        number, count = _first_bad_row(body, model.num_features) or (bad_rows[0].text[:60], bad_rows[0].actual_columns)
        raise _model_error(
            400,
            f"Loading csv data failed: row {number} has {count} columns, expected "
            f"{model.num_features} (the model's features, no header, no label).",
        )
    if table.num_rows == 0:
        raise _model_error(400, "Loading csv data failed: the request has no rows.")
    # Row-major: xgboost walks the trees a row at a time, and reads rows far faster this way.
    matrix = np.empty((table.num_rows, model.num_features), dtype=np.float32, order="C")
    for j, column in enumerate(table.columns):
        matrix[:, j] = column.to_numpy()  # nulls (empty fields) become NaN: xgboost's missing value
    return matrix


def _first_bad_row(body: bytes | bytearray, expected: int) -> tuple[int, int] | None:
    """(1-based line, column count) of the first row without `expected` columns. Error path only:
    pyarrow reports bad rows without their line, and in no particular order when parsing in
    parallel."""
    for number, line in enumerate(bytes(body).split(b"\n"), start=1):
        if line.strip():
            count = line.count(b",") + 1
            if count != expected:
                return number, count
    return None


def _describe_bad_value(body: bytes | bytearray, expected: int) -> str | None:
    # Error path only: find the first field that is not a number, as pyarrow does not say where.
    for number, line in enumerate(body.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        for col, value in enumerate(fields, start=1):
            if value.strip() == "":
                continue
            try:
                float(value.strip().strip('"'))
            except ValueError:
                return (
                    f"Loading csv data failed: row {number}, column {col}: {value[:40]!r} is not a number "
                    f"(send {expected} numeric features per row, no header)."
                )
    return None


def format_scores(scores: np.ndarray, accept: str) -> bytes:
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim == 1 and np.isfinite(scores).all():
        # pyarrow prints float32 with the shortest text that round-trips (<= 9 digits), fast.
        sink = pa.BufferOutputStream()
        pacsv.write_csv(pa.table({"s": scores}), sink, pacsv.WriteOptions(include_header=False))
        lines = sink.getvalue().to_pybytes().rstrip(b"\n")
        if accept == "text/csv":
            return lines + b"\n"
        if accept == "application/jsonlines":
            return b'{"score":' + lines.replace(b"\n", b'}\n{"score":') + b"}\n"
        return b'{"predictions":[{"score":' + lines.replace(b"\n", b'},{"score":') + b"}]}"
    return _format_generic(scores, accept)


def _format_generic(scores: np.ndarray, accept: str) -> bytes:
    # Multi-output models (one row of scores per record) and non-finite scores: rare, so plain Python.
    rows = [_json_value(v) for v in scores.tolist()]
    if accept == "text/csv":
        return "".join(",".join(_csv_value(x) for x in (r if isinstance(r, list) else [r])) + "\n" for r in rows).encode()
    if accept == "application/jsonlines":
        return "".join(json.dumps({"score": r}) + "\n" for r in rows).encode()
    return json.dumps({"predictions": [{"score": r} for r in rows]}).encode()


def _json_value(v: Any) -> Any:
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return float(np.float32(v)) if np.isfinite(v) else None


def _csv_value(v: Any) -> str:
    return "nan" if v is None else repr(float(np.float32(v)))


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _choose_accept(header: str | None) -> str:
    if not header:
        return "text/csv"  # the container's default for CSV input
    for part in header.split(","):
        media = _media_type(part)
        if media in ACCEPT_TYPES:
            return media
        if media in ("*/*", "text/*"):
            return "text/csv"
        if media == "application/*":
            return "application/json"
    raise _model_error(406, f"Accept {header!r} is not supported; use one of {', '.join(ACCEPT_TYPES)}.")


# --------------------------------------------------------------------------------------------
# The WSGI app


class ModelServerApp:
    def __init__(self, resolver: EndpointResolver):
        self.resolver = resolver
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="resolve")

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            status, headers, body = self._route(request)
        except InvocationError as err:
            status, body = err.status, json.dumps(err.body()).encode()
            headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", err.code)]
        except Exception as err:  # a bug or moto down: say so, keep serving
            log.exception("invocation failed")
            error = InvocationError(500, "InternalFailure", f"internal error in the local model server: {err}")
            status, body = 500, json.dumps(error.body()).encode()
            headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error.code)]
        headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]

    def _resolve_and_parse(self, endpoint: str, body: bytes | bytearray, timings: dict[str, float]) -> tuple[EndpointState, np.ndarray]:
        t0 = time.perf_counter()
        cached = self.resolver.cached(endpoint)
        if cached is None:
            state = self.resolver.resolve(endpoint)
            t1 = time.perf_counter()
            matrix = parse_csv(body, state.model)
            timings.update(resolve=t1 - t0, parse=time.perf_counter() - t1)
            return state, matrix
        # Ask the control plane while parsing with the model served last time: the answer almost
        # always confirms it, and this hides the round trip behind the parse.
        pending = self._pool.submit(self.resolver.resolve, endpoint)
        matrix: np.ndarray | None = None
        parse_error: InvocationError | None = None
        try:
            matrix = parse_csv(body, cached.model)
        except InvocationError as err:
            parse_error = err
        t1 = time.perf_counter()
        state = pending.result()  # an unknown endpoint is reported before any row error, as on AWS
        timings.update(parse=t1 - t0, resolve=time.perf_counter() - t1)  # resolve: the wait left over
        if state.model is not cached.model:
            return state, parse_csv(body, state.model)
        if parse_error is not None:
            raise parse_error
        assert matrix is not None
        return state, matrix

    def _route(self, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        path = request.path
        if path == "/ping" and request.method == "GET":
            return 200, [("Content-Type", "text/plain")], b""
        if path == "/_local/info" and request.method == "GET":
            return 200, [("Content-Type", "application/json")], json.dumps(serving_versions()).encode()
        if path == "/_local/reset" and request.method == "POST":
            self.resolver.clear()
            return 200, [("Content-Type", "application/json")], b'{"status":"ok"}'
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "endpoints" and parts[2] == "invocations":
            if request.method != "POST":
                raise _validation_error("InvokeEndpoint takes POST.", status=405)
            return self._invoke(request, parts[1])
        raise _validation_error(f"Unknown path {path!r}; this server implements InvokeEndpoint only.", status=404)

    def _invoke(self, request: Request, endpoint: str) -> tuple[int, list[tuple[str, str]], bytes]:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        body = _read_body(request)
        timings["read"] = time.perf_counter() - t0
        if not ENDPOINT_NAME.match(endpoint):
            raise _validation_error(f"Invalid endpoint name {endpoint!r}.")
        content_type = _media_type(request.headers.get("Content-Type"))
        if content_type not in CSV_TYPES:
            raise _model_error(
                415,
                f"Content type {request.headers.get('Content-Type')!r} is not supported by this XGBoost "
                f"endpoint; send text/csv rows (no header).",
            )
        accept = _choose_accept(request.headers.get("Accept"))
        state, matrix = self._resolve_and_parse(endpoint, body, timings)
        target = request.headers.get("X-Amzn-SageMaker-Target-Variant")
        if target and target != state.variant_name:
            raise _validation_error(f"Variant {target} not found for endpoint {endpoint}.")
        t0 = time.perf_counter()
        scores = state.model.booster.inplace_predict(matrix, validate_features=False)
        t1 = time.perf_counter()
        payload = format_scores(scores, accept)
        timings.update(predict=t1 - t0, format=time.perf_counter() - t1)
        # Where the time went, for benchmarks (the standard Server-Timing header, milliseconds).
        timing = ", ".join(f"{name};dur={1000 * d:.1f}" for name, d in timings.items())
        headers = [("Content-Type", accept), ("x-Amzn-Invoked-Production-Variant", state.variant_name), ("Server-Timing", timing)]
        return 200, headers, payload


def _read_body(request: Request) -> bytearray:
    length = request.content_length
    stream = request.stream
    if length is not None and length > MAX_BODY:
        _drain(stream)
        raise _validation_error(
            f"Request body is {length} bytes; InvokeEndpoint accepts at most {MAX_BODY} bytes (6 MiB). "
            f"Split the rows over several requests.",
            status=413,
        )
    if length is not None:
        # Straight into one buffer: a 5 MiB body is read without intermediate copies.
        body = bytearray(length)
        view, got = memoryview(body), 0
        while got < length:
            n = stream.readinto(view[got:])  # may return less than asked: loop
            if not n:
                raise _validation_error(f"Request body ended after {got} of {length} bytes.")
            got += n
        return body
    body = bytearray()
    while chunk := stream.read(1024 * 1024):  # chunked upload without a length
        body += chunk
        if len(body) > MAX_BODY:
            _drain(stream)
            raise _validation_error(f"Request body exceeds {MAX_BODY} bytes (6 MiB).", status=413)
    return body


def _drain(stream: Any) -> None:
    # Read (and drop) the body before answering, or the client sees a reset connection instead of
    # our error while it is still sending.
    while stream.read(1024 * 1024):
        pass


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    424: "Failed Dependency",
    500: "Internal Server Error",
}


def make_app(
    aws_endpoint: str | None,
    region: str,
    resolve_interval: float = 1.0,
    aws_endpoint_port_file: str | None = None,
    predict_threads: int = 1,
) -> ModelServerApp:
    clients = _LazyClients(aws_endpoint, region, aws_endpoint_port_file)
    return ModelServerApp(EndpointResolver(clients, resolve_interval, predict_threads))


class _LazyClients:
    """boto3 clients built on first use. With a port file, the control plane's port is read from it
    then: the stack starts us alongside moto, before moto has picked its port."""

    def __init__(self, endpoint: str | None, region: str, port_file: str | None, wait: float = 90.0):
        self._endpoint, self._region, self._port_file, self._wait = endpoint, region, port_file, wait
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            with self._lock:
                if service not in self._clients:
                    self._clients[service] = self._make(service)
                client = self._clients[service]
        return client

    def _make(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        if self._endpoint is None and self._port_file:
            deadline = time.monotonic() + self._wait
            while not os.path.exists(self._port_file):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the control plane never wrote its port to {self._port_file}")
                time.sleep(0.05)
            with open(self._port_file) as f:
                self._endpoint = f"http://127.0.0.1:{int(f.read().strip())}"
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=32)
        return boto3.session.Session(region_name=self._region).client(service, endpoint_url=self._endpoint, config=config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_assets_local.model_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--aws-endpoint", default=None, help="the control plane and S3 (moto); default: boto3's")
    parser.add_argument("--aws-endpoint-port-file", default=None, help=argparse.SUPPRESS)  # used by LocalStack
    parser.add_argument("--region", default=None)
    parser.add_argument("--resolve-interval", type=float, default=1.0)
    parser.add_argument(
        "--predict-threads",
        type=int,
        default=1,
        help="xgboost threads per request (0: all cores). One, because clients send requests in "
        "parallel (the scoring code keeps two in flight): requests then fill the cores without "
        "OpenMP teams fighting over them, and single rows answer in ~0.1 ms instead of ~3 ms.",
    )
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--parent-pid", type=int, help="exit when this process is no longer our parent")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("the model server binds 127.0.0.1 only")
    # Before xgboost loads libgomp: idle OpenMP threads sleep instead of spinning. On a small shared
    # machine the spinning threads steal the cores the working ones need; measured on 2 busy
    # cores, a 16k-row predict went from ~40 ms to ~14 ms.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    from fraud_assets.lib.config import DEFAULT_REGION
    from fraud_assets_local.processes import serve_as_child

    app = make_app(
        args.aws_endpoint, args.region or DEFAULT_REGION, args.resolve_interval, args.aws_endpoint_port_file, args.predict_threads
    )
    # xgboost (and through it sklearn/pandas) takes seconds to import: do it behind /ping so the
    # server is up at once and warm by the first invocation.
    threading.Thread(target=_warm_imports, name="warm-imports", daemon=True).start()
    server = make_server("127.0.0.1", args.port, app, threaded=True, request_handler=KeepAliveRequestHandler)
    serve_as_child(server, args.port_file, args.parent_pid)
    return 0


def serving_versions() -> dict[str, str]:
    """What this process scores with (the stack runs it in the container's environment)."""
    import xgboost

    return {"xgboost": xgboost.__version__, "numpy": np.__version__, "python": sys.version.split()[0], "executable": sys.executable}


def _warm_imports() -> None:
    log.info("scoring with %s", serving_versions())  # imports xgboost


if __name__ == "__main__":
    sys.exit(main())
