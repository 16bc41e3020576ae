"""The embedded local AWS stack: a moto server (S3, DynamoDB, SNS, SQS, SSM, SageMaker control
plane, CloudWatch) and our SageMaker-Runtime-compatible model server, each a subprocess bound to
127.0.0.1. The project's code stays plain boto3: `LocalStack.env()` gives the standard
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME variables and dummy credentials.

Processes: every subprocess runs in its own session (process group). `stop()` sends SIGTERM to the
group, waits, then SIGKILLs whatever is left of it; an `atexit` hook does the same if the owner
forgets, and each child also exits by itself when its parent dies (it polls its parent pid), so
even a SIGKILLed test run leaves nothing behind. We only ever signal groups we started.

Persistence (`state_dir`, see `state.py`): moto keeps everything in memory and its internals are
not ours to pickle, so the state is copied out into plain files (object bytes, JSON manifests,
DynamoDB-JSON lines) and replayed on start. Everything goes through the public AWS APIs except
DynamoDB items: Scan and BatchWriteItem are far too slow in moto (~100 s / ~60 s for 80,000
items), so the moto child serves an internal route (`/_fraud_assets/dynamodb/...`, plain
DynamoDB-JSON, same 127.0.0.1 server) that exports and loads a table's items straight from its
backend, in ~1-2 s. The child also counts requests that may change state, so a periodic snapshot
when nothing changed is a single request.
A snapshot is taken every `snapshot_interval` seconds by a background thread and on `stop()`.
Each snapshot is written to a new directory and made current by an atomic rename of a pointer
file, so a crash during a snapshot leaves the previous one intact.
**What a crash loses**: everything changed since the last completed snapshot (at most
`snapshot_interval` seconds of work), plus what snapshots never hold: non-current S3 object
versions, SQS messages, CloudWatch metrics, and resources in other regions.

Moto gaps worked around here: moto 5.2 has no SageMaker UpdateEndpoint, so the moto child adds it
(it repoints the endpoint at the new config and bumps LastModifiedTime, which is all our model
server needs to serve the new model at once). Moto creates and updates endpoints directly
InService, so `endpoint_in_service` waiters return at once; the model server loads an endpoint's
artifact on its first invocation, so a broken artifact shows up there (a ModelError) rather than
as a Failed endpoint the way AWS would report it.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import http.client
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from fraud_assets.lib.config import DEFAULT_REGION, PlatformNames

log = logging.getLogger(__name__)

DUMMY_CREDENTIAL = "testing"
LOCAL_HOST = "127.0.0.1"
START_TIMEOUT = 90.0  # generous: a 2-core box shared by several test runs can be very slow
STOP_TIMEOUT = 10.0

# Variables that would make boto3 (in us or in a child) reach a real account or ignore our endpoints.
_AWS_LEAKY_VARS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


class LocalStackError(RuntimeError):
    pass


def scrubbed_aws_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment without credentials, profiles or endpoint overrides, with the
    machine's AWS config files hidden, so nothing can reach a real account by accident."""
    env = dict(os.environ if environ is None else environ)
    for var in list(env):
        if var in _AWS_LEAKY_VARS or var.startswith("AWS_ENDPOINT_URL"):
            del env[var]
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


# --------------------------------------------------------------------------------------------
# Subprocess management


class _ManagedProcess:
    """One child server: started in its own session, reports its bound port through a file
    (so port 0 works without a bind race), stopped by signalling its process group only."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], runtime_dir: Path):
        self.name = name
        self.port_file = runtime_dir / f"{name}.port"
        self.log_path = runtime_dir / f"{name}.log"
        self.argv = [*argv, "--port-file", str(self.port_file), "--parent-pid", str(os.getpid())]
        self.env = env
        self.popen: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        with open(self.log_path, "ab") as log_file:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals exactly this group
                close_fds=True,
            )

    def wait_ready(self, health_path: str, deadline: float) -> int:
        assert self.popen is not None
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise LocalStackError(
                    f"{self.name} exited with code {self.popen.returncode} during start-up:\n{self.log_tail()}"
                )
            if self.port is None and self.port_file.exists():
                self.port = int(self.port_file.read_text().strip())
            if self.port is not None and _http_answers(LOCAL_HOST, self.port, health_path):
                return self.port
            time.sleep(0.05)
        raise LocalStackError(f"{self.name} did not answer within the start timeout:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        popen, self.popen = self.popen, None
        if popen is None:
            return
        pgid = popen.pid  # start_new_session: the child leads its own group
        if popen.poll() is not None:
            # It exited and is reaped: its group id may already belong to someone else.
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        # Wait for the leader to exit but do not reap it yet: while it is a zombie its pid (and so
        # the group id) cannot be reused, so the SIGKILL below can only hit our own stragglers.
        deadline = time.monotonic() + timeout
        while not _exited_unreaped(popen.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        popen.wait()


def _exited_unreaped(pid: int) -> bool:
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True  # already reaped
    return info is not None


def _http_answers(host: str, port: int, path: str) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status < 500
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# The stack


class LocalStack:
    def __init__(
        self,
        state_dir: str | Path | None = None,
        host: str = LOCAL_HOST,
        moto_port: int = 0,
        model_port: int = 0,
        region: str = DEFAULT_REGION,
        names: PlatformNames | None = None,
        snapshot_interval: float = 30.0,
    ):
        if host not in ("127.0.0.1", "localhost"):
            # The servers take any credentials: never expose them beyond this machine.
            raise ValueError(f"the local stack binds 127.0.0.1 only, not {host!r}")
        self.host = LOCAL_HOST
        self.state_dir = Path(state_dir).resolve() if state_dir is not None else None
        self.region = region
        self.names = names or PlatformNames()
        self.snapshot_interval = snapshot_interval
        self._requested_ports = {"moto": moto_port, "model": model_port}
        self._moto: _ManagedProcess | None = None
        self._model: _ManagedProcess | None = None
        self._runtime_dir: Path | None = None
        self._store = None  # state.StateStore when state_dir is set
        self._lock = threading.RLock()  # snapshot / reset / stop never interleave
        self._stop_event = threading.Event()
        self._snapshot_thread: threading.Thread | None = None
        self._clients: dict[str, Any] = {}
        self.moto_url: str | None = None
        self.model_url: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._moto is not None

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the child servers (for tests and diagnostics)."""
        return {p.name: p.pid for p in (self._moto, self._model) if p is not None and p.pid is not None}

    def start(self) -> "LocalStack":
        with self._lock:
            if self.running:
                return self
            self._runtime_dir = Path(tempfile.mkdtemp(prefix="fraud-assets-stack-"))
            atexit.register(self._atexit_stop)
            try:
                if self.state_dir is not None:
                    from fraud_assets.local.state import StateStore

                    self._store = StateStore(self.state_dir, self.region)  # fails fast if in use
                self._start_processes()
                if self._store is not None and self._store.has_snapshot():
                    self._store.restore(self.client)
                self._bootstrap()
            except BaseException:
                self._stop_processes()
                raise
            if self._store is not None and self.snapshot_interval > 0:
                self._stop_event.clear()
                self._snapshot_thread = threading.Thread(
                    target=self._snapshot_loop, name="local-stack-snapshots", daemon=True
                )
                self._snapshot_thread.start()
            return self

    def _start_processes(self) -> None:
        assert self._runtime_dir is not None
        env = scrubbed_aws_environ()
        env.update(
            AWS_ACCESS_KEY_ID=DUMMY_CREDENTIAL,
            AWS_SECRET_ACCESS_KEY=DUMMY_CREDENTIAL,
            AWS_DEFAULT_REGION=self.region,
            AWS_REGION=self.region,
            PYTHONUNBUFFERED="1",
        )
        self._moto = _ManagedProcess(
            "moto",
            [sys.executable, "-m", "fraud_assets.local.stack", "_moto-server", "--host", self.host,
             "--port", str(self._requested_ports["moto"])],
            env,
            self._runtime_dir,
        )
        self._model = _ManagedProcess(
            "model-server",
            # Started alongside moto (saves a start-up's worth of imports): it reads moto's port
            # from moto's port file when it first needs the control plane.
            [sys.executable, "-m", "fraud_assets.local.model_server", "--host", self.host,
             "--port", str(self._requested_ports["model"]), "--aws-endpoint-port-file", str(self._moto.port_file),
             "--region", self.region],
            env,
            self._runtime_dir,
        )
        self._moto.start()
        self._model.start()
        deadline = time.monotonic() + START_TIMEOUT
        self.moto_url = f"http://{self.host}:{self._moto.wait_ready('/moto-api/', deadline)}"
        self.model_url = f"http://{self.host}:{self._model.wait_ready('/ping', deadline)}"

    def stop(self) -> None:
        with self._lock:
            if not self.running:
                return
            self._stop_event.set()
            thread, self._snapshot_thread = self._snapshot_thread, None
        if thread is not None:
            thread.join()
        with self._lock:
            snapshot_error: BaseException | None = None
            if self._store is not None and self._moto is not None and self._moto.alive():
                try:
                    self._store.snapshot(self.client)
                except Exception as err:  # still stop the processes; report after
                    snapshot_error = err
                    log.exception("final snapshot of the local stack failed")
            self._stop_processes()
            if snapshot_error is not None:
                raise LocalStackError(f"final snapshot to {self.state_dir} failed: {snapshot_error}") from snapshot_error

    def _stop_processes(self) -> None:
        for proc in (self._model, self._moto):
            if proc is not None:
                proc.stop()
        self._model = self._moto = None
        self._clients.clear()
        self.moto_url = self.model_url = None
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None
        if self._store is not None:
            self._store.close()
            self._store = None
        atexit.unregister(self._atexit_stop)

    def _atexit_stop(self) -> None:
        # At interpreter exit: no final snapshot heroics if moto is already gone, but never leave
        # a process behind.
        try:
            self.stop()
        except Exception:
            self._stop_processes()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- use ------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        if not self.running:
            raise LocalStackError("the local stack is not running; call start() first")
        return {
            "AWS_ENDPOINT_URL": str(self.moto_url),
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": str(self.model_url),
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIAL,
        }

    def client(self, service: str):
        """A boto3 client for this stack that ignores the caller's environment (the stack's own
        bookkeeping must not depend on what os.environ points at)."""
        if not self.running:
            raise LocalStackError("the local stack is not running")
        client = self._clients.get(service)
        if client is None:
            client = _stack_client(service, self.region, self.model_url if service == "sagemaker-runtime" else self.moto_url)
            self._clients[service] = client
        return client

    def reset(self) -> None:
        with self._lock:
            if not self.running:
                raise LocalStackError("the local stack is not running")
            _post(f"{self.moto_url}/moto-api/reset")
            _post(f"{self.model_url}/_local/reset")
            self._bootstrap()

    def snapshot(self) -> None:
        with self._lock:
            if self._store is None or not self.running:
                raise LocalStackError("snapshot() needs a running stack with a state_dir")
            self._store.snapshot(self.client)

    def _snapshot_loop(self) -> None:
        while not self._stop_event.wait(self.snapshot_interval):
            try:
                with self._lock:
                    if self._stop_event.is_set() or self._store is None or not self.running:
                        return
                    self._store.snapshot(self.client)
            except Exception:
                log.exception("periodic snapshot of the local stack failed; will retry")

    def _bootstrap(self) -> None:
        _bootstrap_with(self.client, self.names, self.region)


_session_lock = threading.Lock()
_session: Any = None


def _stack_client(service: str, region: str, endpoint_url: str | None):
    # One shared session: botocore caches the parsed service models per session, and loading
    # them again for every stack costs seconds. Session methods are not thread-safe, hence the lock.
    global _session
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=120)
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session(
                aws_access_key_id=DUMMY_CREDENTIAL, aws_secret_access_key=DUMMY_CREDENTIAL, region_name=region
            )
        return _session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def _post(url: str) -> None:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


# --------------------------------------------------------------------------------------------
# Bootstrap: the platform's resources, created idempotently


def bootstrap(names: PlatformNames, region: str = DEFAULT_REGION) -> None:
    """Create the platform's buckets, scores table and topics wherever the default boto3
    configuration points (AWS_ENDPOINT_URL for the local stack). Safe to run again."""
    import boto3

    _bootstrap_with(lambda service: boto3.client(service, region_name=region), names, region)


def _bootstrap_with(client: Callable[[str], Any], names: PlatformNames, region: str) -> None:
    s3 = client("s3")
    for bucket in names.buckets:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    ddb = client("dynamodb")
    try:
        ddb.create_table(**scores_table_definition(names))
    except ddb.exceptions.ResourceInUseException:
        pass
    sns = client("sns")
    for topic in names.topics:
        sns.create_topic(Name=topic)  # CreateTopic is idempotent by name


def scores_table_definition(names: PlatformNames) -> dict[str, Any]:
    return {
        "TableName": names.scores_table,
        "AttributeDefinitions": [
            {"AttributeName": "transactionId", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "S"},
            {"AttributeName": "batchDate", "AttributeType": "S"},
            {"AttributeName": "fraudScore", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "transactionId", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": names.scores_gsi,
                "KeySchema": [
                    {"AttributeName": "batchDate", "KeyType": "HASH"},
                    {"AttributeName": "fraudScore", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


# --------------------------------------------------------------------------------------------
# CLI


def run_local_stack_cli(state_dir: str | None, moto_port: int, model_port: int) -> int:
    """Start the stack, print `export` lines, serve until SIGINT/SIGTERM, stop cleanly.
    Exit code 0 after a clean stop; 1 if the stack could not start, a server died, or the final
    snapshot failed."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop_requested.set()

    # SIGHUP too: closing the terminal should also end in a clean stop and a final snapshot.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stack = LocalStack(state_dir=state_dir, moto_port=moto_port, model_port=model_port)
    code = 0
    try:
        stack.start()
        # A shell that evals these lines must not mix a real session token or profile into them.
        print("unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN")
        for var, value in stack.env().items():
            print(f"export {var}={shlex.quote(value)}")
        where = f", state in {stack.state_dir}" if stack.state_dir else " (nothing persisted)"
        print(f"# local AWS stack running{where}; stop it with Ctrl-C or `kill {os.getpid()}`", flush=True)
        while not stop_requested.wait(0.5):
            dead = [p for p in (stack._moto, stack._model) if p is not None and not p.alive()]
            if dead:
                print(f"fraud-assets local-stack: {dead[0].name} died:\n{dead[0].log_tail()}", file=sys.stderr)
                code = 1
                break
    except Exception as err:  # start-up failed: say why, in one place
        print(f"fraud-assets local-stack: could not start: {err}", file=sys.stderr)
        code = 1
    finally:
        try:
            stack.stop()
        except Exception as err:
            print(f"fraud-assets local-stack: {err}", file=sys.stderr)
            code = 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


# --------------------------------------------------------------------------------------------
# Child-process side (shared with the model server)


def serve_as_child(server: Any, port_file: str | None, parent_pid: int | None) -> None:
    """Run a bound werkzeug server until SIGTERM/SIGINT or until our parent goes away."""

    class _Stop(Exception):
        pass

    def on_signal(signum: int, frame: Any) -> None:
        raise _Stop

    # Explicit handlers: whatever the parent had ignored or caught, the child stops on signal.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if parent_pid:
        def watch_parent() -> None:
            while True:
                time.sleep(0.5)
                if os.getppid() != parent_pid:  # reparented: the owner died without stopping us
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

        threading.Thread(target=watch_parent, name="parent-watch", daemon=True).start()

    if port_file:
        tmp = f"{port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(str(server.server_address[1]))
        os.replace(tmp, port_file)  # the parent never reads a half-written port
    try:
        server.serve_forever(poll_interval=0.2)
    except _Stop:
        server.server_close()
        sys.stdout.flush()
        sys.stderr.flush()
        # Nothing to save in here (the stack snapshots through the API before stopping us), so skip
        # the interpreter's teardown of a large heap, which takes most of a second for moto.
        os._exit(0)
    finally:
        server.server_close()


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

    def __init__(self, moto_app: Callable[..., Any]):
        self.moto_app = moto_app
        self.instance = os.urandom(8).hex()  # a restarted moto starts counting again
        self.changes = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(INTERNAL_PREFIX):
            return self._internal(environ, start_response, path)
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
    if environ.get("REQUEST_METHOD") != "POST" or not content_type.startswith("application/x-www-form-urlencoded") \
            or not 0 < length <= 1024 * 1024:
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
        raise MotoInternalsChanged(
            f"moto's DynamoDB Table has no dict `items` / `range_key_attr` (got {type(items).__name__})")
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
                range_key is not None and range_key.type != getattr(table, "range_key_type", range_key.type)):
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
_WARM_BACKENDS = ("s3", "dynamodb", "sns", "sagemaker", "ssm", "sqs", "cloudwatch")


def _warm_moto_backends() -> None:
    import importlib

    for service in _WARM_BACKENDS:
        with contextlib.suppress(Exception):
            importlib.import_module(f"moto.{service}.responses")


def _moto_server_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fraud_assets.local.stack _moto-server")
    parser.add_argument("--host", default=LOCAL_HOST)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--parent-pid", type=int)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("binds 127.0.0.1 only")
    # One line per request at INFO would grow the log without bound.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    _install_moto_update_endpoint()
    app = _InternalRoutes(DomainDispatcherApplication(create_backend_app))
    server = make_server(LOCAL_HOST, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    # moto builds some URLs (SQS queue URLs, ...) from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(server.server_address[1])
    threading.Thread(target=_warm_moto_backends, name="warm-backends", daemon=True).start()
    serve_as_child(server, args.port_file, args.parent_pid)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_moto-server"]:
        return _moto_server_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m fraud_assets.local.stack", description="Run the local AWS stack.")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--moto-port", type=int, default=0)
    parser.add_argument("--model-port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_local_stack_cli(args.state_dir, args.moto_port, args.model_port)


if __name__ == "__main__":
    sys.exit(main())
