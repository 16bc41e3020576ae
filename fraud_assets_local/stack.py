"""The embedded local AWS stack: a moto server (S3, DynamoDB, SNS, SQS, SSM, SageMaker control
plane, CloudWatch) and our SageMaker-Runtime-compatible model server, each a subprocess bound to
127.0.0.1. The project's code stays plain boto3: `LocalStack.env()` gives the standard
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME variables and dummy credentials.

Processes: every subprocess runs in its own session (process group). `stop()` sends SIGTERM to the
group, waits, then SIGKILLs whatever is left of it; an `atexit` hook does the same if the owner
forgets, and each child also exits by itself when its parent dies (it polls its parent pid), so
even a SIGKILLed test run leaves nothing behind. We only ever signal groups we started.

Supervision: a child that dies (killed, crashed) is started again on the same port, so the
exported endpoints stay valid: the model server loses nothing (it reloads the endpoint's model from
the control plane); a restarted moto is replayed from the last snapshot (with a state_dir) and
bootstrapped, so what changed since that snapshot is lost, as in a crash of the whole stack. With a
state_dir, the ports are recorded there and a restarted stack asks for the same ones when they are
free, so shells keep their exported variables.

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
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from fraud_assets.lib.config import DEFAULT_REGION, PlatformNames
from fraud_assets_local.bootstrap import bootstrap_with
from fraud_assets_local.processes import (
    DUMMY_CREDENTIAL,
    LOCAL_HOST,
    START_TIMEOUT,
    LocalStackError,
    ManagedProcess,
    container_environ,
    container_python,
    scrubbed_aws_environ,
)

log = logging.getLogger(__name__)

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
        self._moto: ManagedProcess | None = None
        self._model: ManagedProcess | None = None
        self._model_python: Path | None = None
        self._env: dict[str, str] = {}
        self._supervisor: threading.Thread | None = None
        self.restarts: dict[str, int] = {"moto": 0, "model-server": 0}
        # When the snapshot this stack was restored from was taken: what a crash before this start
        # changed after that moment is gone (None when nothing was restored).
        self.restored_snapshot_time: str | None = None
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
            self._model_python = container_python()  # before anything starts: one line naming what is missing
            self._runtime_dir = Path(tempfile.mkdtemp(prefix="fraud-assets-stack-"))
            atexit.register(self._atexit_stop)
            try:
                if self.state_dir is not None:
                    from fraud_assets_local.state import StateStore

                    self._store = StateStore(self.state_dir, self.region)  # fails fast if in use
                self._start_processes()
                # The template first (it creates the buckets, table and topics), then the saved
                # objects, items and parameters into them.
                self._bootstrap()
                if self._store is not None and self._store.has_snapshot():
                    self._store.restore(self.client)
                    self.restored_snapshot_time = self._store.snapshot_time()
                    log.warning(
                        "restored the local stack from the snapshot taken at %s: anything changed after it "
                        "(e.g. before a crash) is gone; re-run the partitions materialised since",
                        self.restored_snapshot_time,
                    )
                if self._store is not None:
                    self._store.record_ports({"moto": self._moto.port, "model": self._model.port})  # type: ignore[union-attr]
            except BaseException:
                self._stop_processes()
                raise
            self._stop_event.clear()
            self._supervisor = threading.Thread(target=self._supervise, name="local-stack-supervisor", daemon=True)
            self._supervisor.start()
            if self._store is not None and self.snapshot_interval > 0:
                self._snapshot_thread = threading.Thread(target=self._snapshot_loop, name="local-stack-snapshots", daemon=True)
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
        self._env = env
        recorded = self._store.recorded_ports() if self._store is not None else {}
        ports = {
            name: port or (recorded.get(name, 0) if _port_free(self.host, recorded.get(name, 0)) else 0)
            for name, port in self._requested_ports.items()
        }
        self._moto = self._child("moto", ports["moto"])
        self._model = self._child("model-server", ports["model"])
        self._moto.start()
        self._model.start()
        deadline = time.monotonic() + START_TIMEOUT
        self.moto_url = f"http://{self.host}:{self._moto.wait_ready('/moto-api/', deadline)}"
        self.model_url = f"http://{self.host}:{self._model.wait_ready('/ping', deadline)}"

    def _child(self, name: str, port: int) -> ManagedProcess:
        assert self._runtime_dir is not None
        if name == "moto":
            argv = [sys.executable, "-m", "fraud_assets_local.moto_server", "--host", self.host, "--port", str(port)]
        else:
            # Started alongside moto (saves a start-up's worth of imports): it reads moto's port
            # from moto's port file when it first needs the control plane. It runs in the SageMaker
            # container's environment (XGBoost 1.7), as the endpoint does on AWS.
            assert self._model_python is not None
            argv = [
                str(self._model_python),
                "-m",
                "fraud_assets_local.model_server",
                "--host",
                self.host,
                "--port",
                str(port),
                "--aws-endpoint-port-file",
                str(self._runtime_dir / "moto.port"),
                "--region",
                self.region,
            ]
            return ManagedProcess(name, argv, container_environ(self._env), self._runtime_dir)
        return ManagedProcess(name, argv, self._env, self._runtime_dir)

    def _supervise(self) -> None:
        """Start a dead child again on its port (MAX_RESTARTS times each, then give up: the CLI
        then reports the death and stops)."""
        while not self._stop_event.wait(SUPERVISE_INTERVAL):
            with self._lock:
                if self._stop_event.is_set() or not self.running:
                    return
                for attr, health in (("_moto", "/moto-api/"), ("_model", "/ping")):
                    proc: ManagedProcess | None = getattr(self, attr)
                    if proc is None or proc.alive() or self.restarts[proc.name] >= MAX_RESTARTS:
                        continue
                    self.restarts[proc.name] += 1
                    log.warning(
                        "local stack: %s (pid %s) died with code %s; restarting it on port %s (restart %d of %d)",
                        proc.name,
                        proc.pid,
                        proc.popen.returncode if proc.popen else None,
                        proc.port,
                        self.restarts[proc.name],
                        MAX_RESTARTS,
                    )
                    try:
                        self._restart(attr, proc, health)
                    except Exception:
                        log.exception("local stack: could not restart %s", proc.name)

    def _restart(self, attr: str, dead: ManagedProcess, health: str) -> None:
        port = dead.port
        dead.stop()  # reaps it; its group may hold a straggler
        with contextlib.suppress(FileNotFoundError):
            dead.port_file.unlink()
        proc = self._child(dead.name, port or 0)
        proc.start()
        try:
            proc.wait_ready(health, time.monotonic() + START_TIMEOUT)
            if proc.port != port:
                raise LocalStackError(f"{proc.name} came back on port {proc.port}, not {port}: exported endpoints are stale")
        except BaseException:
            proc.stop()
            raise
        setattr(self, attr, proc)  # only once it answers: until then the dead one stays in place
        if attr == "_moto":
            self._clients.clear()
            self._bootstrap()  # as at start: the template first, then the snapshot into it
            if self._store is not None and self._store.has_snapshot():
                self._store.restore(self.client)
                self.restored_snapshot_time = self._store.snapshot_time()
            log.warning(
                "local stack: moto restarted from %s: changes since then are gone",
                f"the snapshot of {self.restored_snapshot_time}" if self.restored_snapshot_time else "nothing",
            )

    def stop(self) -> None:
        with self._lock:
            if not self.running:
                return
            self._stop_event.set()
            threads = [t for t in (self._snapshot_thread, self._supervisor) if t is not None]
            self._snapshot_thread = self._supervisor = None
        for thread in threads:
            if thread is not threading.current_thread():
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
        bootstrap_with(self.client, self.names, self.region)


SUPERVISE_INTERVAL = 0.5
MAX_RESTARTS = 5
PORT_WAIT = 5.0


def _port_free(host: str, port: int, wait: float = PORT_WAIT) -> bool:
    """Can a server bind `port`? Waits a little: right after a crash, the dead stack's children are
    still exiting (they poll for their parent every 0.5 s) and hold the ports for a moment."""
    if not port:
        return False
    deadline = time.monotonic() + wait
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is free
            try:
                probe.bind((host, port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.1)


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
            _session = boto3.session.Session(aws_access_key_id=DUMMY_CREDENTIAL, aws_secret_access_key=DUMMY_CREDENTIAL, region_name=region)
        return _session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def _post(url: str) -> None:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


# --------------------------------------------------------------------------------------------
# CLI


def run_local_stack_cli(state_dir: str | None, moto_port: int, model_port: int, snapshot_interval: float = 30.0) -> int:
    """Start the stack, print `export` lines, serve until SIGINT/SIGTERM, stop cleanly.
    Exit code 0 after a clean stop; 1 if the stack could not start, a server died, or the final
    snapshot failed."""
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        stop_requested.set()

    # SIGHUP too: closing the terminal should also end in a clean stop and a final snapshot.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stack = LocalStack(state_dir=state_dir, moto_port=moto_port, model_port=model_port, snapshot_interval=snapshot_interval)
    code = 0
    try:
        stack.start()
        # A shell that evals these lines must not mix a real session token or profile into them.
        print("unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN")
        for var, value in stack.env().items():
            print(f"export {var}={shlex.quote(value)}")
        if stack.restored_snapshot_time:
            print(
                f"# restored from the snapshot taken at {stack.restored_snapshot_time}: anything changed after it is gone; "
                "re-run the partitions materialised since (fraud-assets run flags them)"
            )
        where = f", state in {stack.state_dir}" if stack.state_dir else " (nothing persisted)"
        print(f"# local AWS stack running{where}; stop it with Ctrl-C or `kill {os.getpid()}`", flush=True)
        while not stop_requested.wait(0.5):
            # The supervisor restarts a dead child; one that keeps dying ends the stack.
            dead = [p for p in (stack._moto, stack._model) if p is not None and not p.alive() and stack.restarts[p.name] >= MAX_RESTARTS]
            if dead:
                print(f"fraud-assets local-stack: {dead[0].name} died {MAX_RESTARTS + 1} times:\n{dead[0].log_tail()}", file=sys.stderr)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraud_assets_local.stack", description="Run the local AWS stack.")
    parser.add_argument("--state-dir", default=None)
    parser.add_argument("--moto-port", type=int, default=0)
    parser.add_argument("--model-port", type=int, default=0)
    parser.add_argument("--snapshot-interval", type=float, default=30.0, help="seconds between snapshots (0: only on stop)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_local_stack_cli(args.state_dir, args.moto_port, args.model_port, args.snapshot_interval)


if __name__ == "__main__":
    sys.exit(main())
