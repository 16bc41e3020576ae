"""The moto child process of the local stack: moto's server plus what the platform needs of it that
moto lacks (SageMaker UpdateEndpoint, training jobs that really run: `training_jobs.py`) and
internal routes for fast DynamoDB snapshots.
Run as `python -m fraud_assets_local.moto_server` by the stack."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import threading
import time
from typing import Any, Callable

from fraud_assets_local.processes import DUMMY_CREDENTIAL, LOCAL_HOST, serve_as_child


def _install_moto_update_endpoint() -> None:
    """moto 5.2 lacks SageMaker UpdateEndpoint. Add it: repoint the endpoint at the new config
    (which must exist), as AWS does once the update completes."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.sagemaker.responses import SageMakerResponse

    if hasattr(SageMakerResponse, "update_endpoint"):
        return

    def update_endpoint(self: Any) -> Any:
        backend = self.sagemaker_backend
        name = self._get_param("EndpointName")
        config_name = self._get_param("EndpointConfigName")
        backend.describe_endpoint(name)  # ValidationError for an unknown endpoint
        config = backend.describe_endpoint_config(config_name)  # and for an unknown config
        endpoint = backend.endpoints[name]
        endpoint.endpoint_config_name = config_name
        endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        endpoint.data_capture_config = config.get("DataCaptureConfig")
        endpoint.last_modified_time = utcnow()
        return ActionResult({"EndpointArn": endpoint.arn})

    SageMakerResponse.update_endpoint = update_endpoint


def _install_moto_template_cache() -> None:
    """The local stack deploys the same template after every reset; moto parses it with PyYAML's
    pure-Python loader each time (~0.3 s of a ~0.5 s deploy). Parse each distinct text once and
    hand out copies (moto's resource map may modify what it is given)."""
    import copy
    import functools

    from moto.cloudformation.models import Stack

    if getattr(Stack.parse_template, "_fraud_assets_cached", False):
        return
    parse = functools.lru_cache(maxsize=8)(Stack.parse_template)

    def parse_template(template: str) -> dict[str, Any]:
        return copy.deepcopy(parse(template))

    parse_template._fraud_assets_cached = True  # type: ignore[attr-defined]
    Stack.parse_template = staticmethod(parse_template)  # type: ignore[method-assign]


def _install_moto_fast_symmetric_keys() -> None:
    """moto gives every KMS key an RSA-2048 private key for Sign/Verify, symmetric keys too
    (~0.25 s each), so the template's topic key made every reset's deploy that much slower. A
    symmetric key never signs (KMS refuses Sign for it), so they share one, made once."""
    import functools

    from moto.kms import models as kms_models

    original = kms_models.generate_private_key
    if getattr(original, "_fraud_assets_shared", False):
        return
    shared = functools.cache(lambda: original("SYMMETRIC_DEFAULT"))

    def generate_private_key(key_spec: str) -> Any:
        return shared() if key_spec == "SYMMETRIC_DEFAULT" else original(key_spec)

    generate_private_key._fraud_assets_shared = True  # type: ignore[attr-defined]
    kms_models.generate_private_key = generate_private_key


# DynamoDB's data-plane requests and answers are DynamoDB JSON already, and moto's handler works on
# that JSON; moto still walks every value through its generic, shape-driven parser and serializer,
# which was two thirds of the read-back of a day's scores and a third of its writes. These
# operations' requests are read, and their results written, as plain JSON instead; anything with
# a binary attribute (base64 on the wire, bytes inside moto) or that json cannot encode still takes
# moto's own path.
FAST_JSON_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "BatchWriteItem"})


def _install_moto_fast_dynamodb_results() -> None:
    import json

    from moto.dynamodb.responses import DynamoResult

    generic = DynamoResult.execute_result
    if getattr(generic, "_fraud_assets_fast_json", False):
        return

    def execute_result(self: Any, context: Any) -> Any:
        if context.operation_model.name in FAST_JSON_OPERATIONS:
            try:
                body = json.dumps(self.result, separators=(",", ":"))
            except TypeError:
                return generic(self, context)
            return 200, {"Content-Type": "application/x-amz-json-1.0"}, body
        return generic(self, context)

    execute_result._fraud_assets_fast_json = True  # type: ignore[attr-defined]
    DynamoResult.execute_result = execute_result

    from moto.dynamodb.responses import DynamoHandler

    generic_parse = DynamoHandler.parse_parameters

    def parse_parameters(self: Any, request: Any) -> None:
        body = request.data
        if self._get_action() in FAST_JSON_OPERATIONS and b'"B"' not in body and b'"BS"' not in body:
            try:
                self.params = json.loads(body)
                return
            except ValueError:
                pass  # moto's parser reports it
        generic_parse(self, request)

    DynamoHandler.parse_parameters = parse_parameters

    # A new item's 400 KB check: moto re-adds the sizes of all attributes set so far on every
    # attribute set (quadratic, a fifth of a write). One sum over the attributes, the same limit.
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key, self.range_key = hash_key, range_key
        values = {key: DynamoType(value) for key, value in attrs.items()}
        if sum(bytesize(key) + value.size() for key, value in values.items()) > 405000:  # moto's own limit
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict()
        dict.update(self.attrs, values)

    Item.__init__ = item_init


# --------------------------------------------------------------------------------------------
# Internal routes of the moto process (not AWS APIs; same 127.0.0.1 server as moto)
#
#   GET  /_fraud_assets/changes                              {"instance": ..., "changes": n}
#   GET  /_fraud_assets/dynamodb/<region>/<table>/items      the table's items, DynamoDB-JSON lines
#   POST /_fraud_assets/dynamodb/<region>/<table>/items      load such lines into the table
#
# Scan and BatchWriteItem cost seconds per 10,000 items in moto; these read and write the
# backend's items directly, as plain JSON (never pickle). They depend on moto internals
# (DynamoDBBackend.tables, Table.items, Item.to_json, Table.put_item): if those change shape the
# routes answer 500 naming what is missing, so a snapshot fails loudly instead of saving nothing.

INTERNAL_PREFIX = "/_fraud_assets/"
_ITEMS_ROUTE = re.compile(r"^/_fraud_assets/dynamodb/([a-z0-9-]{1,32})/([A-Za-z0-9_.-]{3,255})/items$")
_READ_ONLY_OPERATIONS = frozenset({"Scan", "Query", "BatchGetItem", "TransactGetItems"})
_READ_ONLY_PREFIXES = ("Get", "List", "Describe", "Head")


class MotoInternalsChanged(RuntimeError):
    pass


class _InternalRoutes:
    """WSGI middleware around moto: serves the internal routes and counts requests that may
    change state (so an unchanged stack needs no snapshot). Counted after the request is handled:
    a snapshot that reads the counter first then sees every change the counter includes."""

    def __init__(self, moto_app: Callable[..., Any], on_reset: Callable[[], None] | None = None):
        self.moto_app = moto_app
        self.on_reset = on_reset
        self.instance = os.urandom(8).hex()  # a restarted moto starts counting again
        self.changes = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(INTERNAL_PREFIX):
            return self._internal(environ, start_response, path)
        if path.startswith("/moto-api/reset") and self.on_reset is not None:
            self.on_reset()  # running training jobs end with the state they belong to
        changes = _may_change_state(environ)
        try:
            return self.moto_app(environ, start_response)
        finally:
            if changes:
                with self._lock:
                    self.changes += 1

    def _internal(self, environ: dict[str, Any], start_response: Callable[..., Any], path: str) -> list[bytes]:
        import json

        method = environ.get("REQUEST_METHOD", "GET")
        headers: list[tuple[str, str]] = []
        try:
            if path == "/_fraud_assets/changes" and method == "GET":
                with self._lock:
                    body = json.dumps({"instance": self.instance, "changes": self.changes}).encode()
                status = "200 OK"
            elif (match := _ITEMS_ROUTE.match(path)) and method in ("GET", "POST"):
                table = _moto_table(match.group(1), match.group(2))
                if table is None:
                    status, body = "404 Not Found", json.dumps({"__type": "ResourceNotFoundException"}).encode()
                elif method == "GET":
                    lines = export_table_items(table)
                    body = b"".join(lines)
                    headers.append(("X-Item-Count", str(len(lines))))
                    status = "200 OK"
                else:
                    length = int(environ.get("CONTENT_LENGTH") or 0)
                    loaded = import_table_items(table, environ["wsgi.input"].read(length))
                    with self._lock:
                        self.changes += 1
                    status, body = "200 OK", json.dumps({"loaded": loaded}).encode()
            else:
                status, body = "404 Not Found", b'{"__type": "UnknownRoute"}'
        except MotoInternalsChanged as err:
            status, body = "500 Internal Server Error", json.dumps({"__type": "MotoInternalsChanged", "message": str(err)}).encode()
        except ValueError as err:  # a bad line in an import
            status, body = "400 Bad Request", json.dumps({"__type": "ValidationError", "message": str(err)}).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers])
        return [body]


def _may_change_state(environ: dict[str, Any]) -> bool:
    """False only for requests known to be reads (S3 GET/HEAD, Get*/List*/Describe*/Scan/Query
    actions): anything else counts as a change, which at worst costs a snapshot that finds
    nothing new."""
    method = environ.get("REQUEST_METHOD", "GET")
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:  # JSON protocol: DynamoDB, SSM, SageMaker, SQS
        return not _read_only_operation(target.rsplit(".", 1)[-1])
    action = _query_protocol_action(environ)
    if action is not None:  # query protocol: SNS, CloudWatch, ...
        return not _read_only_operation(action)
    return method not in ("GET", "HEAD", "OPTIONS")  # REST: S3, moto-api


def _read_only_operation(operation: str) -> bool:
    return operation in _READ_ONLY_OPERATIONS or operation.startswith(_READ_ONLY_PREFIXES)


def _query_protocol_action(environ: dict[str, Any]) -> str | None:
    import io
    from urllib.parse import parse_qs

    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if action:
        return action[0]
    content_type = environ.get("CONTENT_TYPE", "")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if (
        environ.get("REQUEST_METHOD") != "POST"
        or not content_type.startswith("application/x-www-form-urlencoded")
        or not 0 < length <= 1024 * 1024
    ):
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    return action[0] if action else None


def _moto_table(region: str, name: str) -> Any:
    try:
        from moto.dynamodb.models import dynamodb_backends
        from moto.iam.models import get_account_id_from

        # The account moto gives our requests: MOTO_ACCOUNT_ID if set, else the access key's.
        account = os.environ.get("MOTO_ACCOUNT_ID") or get_account_id_from(DUMMY_CREDENTIAL)
        tables = dynamodb_backends[account][region].tables
    except (ImportError, AttributeError, KeyError) as err:
        raise MotoInternalsChanged(f"cannot reach moto's DynamoDB tables ({type(err).__name__}: {err})") from err
    if not isinstance(tables, dict):
        raise MotoInternalsChanged(f"moto's DynamoDBBackend.tables is a {type(tables).__name__}, not a dict")
    return tables.get(name)


def _copy_values(mapping: dict[Any, Any]) -> list[Any]:
    # list(dict.values()) runs in C without releasing the GIL, so a concurrent put cannot change
    # the dict half-way; retry anyway should some interpreter do otherwise.
    for _ in range(100):
        try:
            return list(mapping.values())
        except RuntimeError:  # dictionary changed size during iteration
            time.sleep(0.001)
    raise RuntimeError("the table kept changing while its items were copied")


def _table_items(table: Any) -> list[Any]:
    """A snapshot list of the table's Item objects: moto keeps {hash: Item} for hash-only tables
    and {hash: {range: Item}} otherwise. Puts replace whole Items, so the list stays valid while
    writers go on."""
    items = getattr(table, "items", None)
    if not isinstance(items, dict) or not hasattr(table, "range_key_attr"):
        raise MotoInternalsChanged(f"moto's DynamoDB Table has no dict `items` / `range_key_attr` (got {type(items).__name__})")
    if table.range_key_attr:
        found = []
        for by_range in _copy_values(items):
            if not isinstance(by_range, dict):
                raise MotoInternalsChanged(f"moto's Table.items holds a {type(by_range).__name__} per hash key, not a dict")
            found.extend(_copy_values(by_range))
    else:
        found = _copy_values(items)
    if found and not callable(getattr(found[0], "to_json", None)):
        raise MotoInternalsChanged(f"moto's DynamoDB items are {type(found[0]).__name__}s without to_json()")
    return found


def export_table_items(table: Any) -> list[bytes]:
    """The table's items as DynamoDB-JSON lines (moto's own Item -> JSON, as Scan answers; keys
    sorted, so unchanged items give identical bytes)."""
    import base64
    import json

    def default(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        raise TypeError(f"cannot export a {type(value).__name__}")

    lines = []
    for item in _table_items(table):
        for attempt in range(100):
            try:  # UpdateItem changes an Item's attributes in place: retry if it does meanwhile
                attrs = item.to_json()["Attributes"]
                break
            except RuntimeError:
                time.sleep(0.001)
        else:
            raise RuntimeError("an item kept changing while it was exported")
        lines.append(json.dumps(attrs, sort_keys=True, separators=(",", ":"), default=default).encode() + b"\n")
    return lines


def import_table_items(table: Any, body: bytes) -> int:
    """Load DynamoDB-JSON lines (from `export_table_items`) into the table, replacing items with
    the same key. Builds moto's Items directly, the way moto's own Item.__deepcopy__ does:
    Table.put_item re-checks the 400 KB limit per attribute (quadratic), which made a restore of
    80,000 items take ~6 s of CPU, and these items were all accepted by moto once already."""
    import json

    try:
        from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    except ImportError as err:
        raise MotoInternalsChanged(f"cannot import moto's DynamoDB item classes ({err})") from err
    items = getattr(table, "items", None)
    hash_attr, range_attr = getattr(table, "hash_key_attr", None), getattr(table, "range_key_attr", "?")
    if not isinstance(items, dict) or not isinstance(hash_attr, str) or range_attr == "?":
        raise MotoInternalsChanged("moto's DynamoDB Table has no dict `items` / `hash_key_attr` / `range_key_attr`")
    loaded = []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            attrs = json.loads(line)
            hash_key = DynamoType(attrs[hash_attr])
            range_key = DynamoType(attrs[range_attr]) if range_attr else None
            item = Item.__new__(Item)
            item.hash_key, item.range_key = hash_key, range_key
            item.attrs = LimitedSizeDict()
            dict.update(item.attrs, {name: DynamoType(value) for name, value in attrs.items()})
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"line {n}: not an item of {getattr(table, 'name', '?')}: {type(err).__name__}: {err}") from None
        if hash_key.type != getattr(table, "hash_key_type", hash_key.type) or (
            range_key is not None and range_key.type != getattr(table, "range_key_type", range_key.type)
        ):
            raise ValueError(f"line {n}: a key attribute has the wrong type for {getattr(table, 'name', '?')}")
        loaded.append(item)
    # Only once every line parsed: a bad file loads nothing.
    for item in loaded:
        if range_attr:
            items.setdefault(item.hash_key, {})[item.range_key] = item
        else:
            items[item.hash_key] = item
    return len(loaded)


# The services the platform uses, bootstrap's first. moto imports a service's backend on its first
# request, which takes up to seconds (SSM pulls in EC2); importing them while the server is already
# answering hides most of that.
_WARM_BACKENDS = ("cloudformation", "s3", "dynamodb", "sns", "sagemaker", "ssm", "sqs", "cloudwatch", "iam", "kms", "logs")


def _warm_moto_backends() -> None:
    import importlib

    for service in _WARM_BACKENDS:
        with contextlib.suppress(Exception):
            importlib.import_module(f"moto.{service}.responses")
    # Here, not before serving: importing CloudFormation's models imports every backend it knows.
    _install_moto_template_cache()
    _install_moto_fast_symmetric_keys()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_assets_local.moto_server")
    parser.add_argument("--host", default=LOCAL_HOST)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("binds 127.0.0.1 only")
    # One line per request at INFO would grow the log without bound.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from fraud_assets_local.http11 import KeepAliveMixin

    class KeepAliveMotoHandler(KeepAliveMixin, MotoRequestHandler):
        pass

    from fraud_assets_local import training_jobs

    _install_moto_update_endpoint()
    _install_moto_fast_dynamodb_results()
    jobs = training_jobs.LocalTrainingJobs(lambda: f"http://{LOCAL_HOST}:{os.environ['MOTO_PORT']}")
    training_jobs.install(jobs)
    app = _InternalRoutes(DomainDispatcherApplication(create_backend_app), on_reset=jobs.stop_all)
    # HTTP/1.1 keep-alive: werkzeug's own handler closes every connection, and a day's thousands of
    # DynamoDB calls then each paid a connect and a new thread.
    server = make_server(LOCAL_HOST, args.port, app, threaded=True, request_handler=KeepAliveMotoHandler)
    # moto builds some URLs (SQS queue URLs, ...) from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(server.server_address[1])
    threading.Thread(target=_warm_moto_backends, name="warm-backends", daemon=True).start()
    close = server.server_close

    def server_close() -> None:
        # serve_as_child closes the server on SIGTERM and then exits at once: training hosts
        # live in their own process groups, so they are stopped here, first.
        jobs.stop_all()
        close()

    server.server_close = server_close
    serve_as_child(server, args.port_file, args.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
