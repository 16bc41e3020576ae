"""Child servers of the local stack: started in their own session (process group), stopped by
signalling that group only, and exiting by themselves when their parent dies, so even a SIGKILLed
owner leaves nothing behind. We only ever signal groups we started."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

DUMMY_CREDENTIAL = "testing"
# The project's checkout: the model server imports this package from it in another interpreter.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The SageMaker XGBoost container's scoring environment (XGBoost 1.7.6 with NumPy 1.x,
# requirements-container.lock), which `make install` builds beside .venv: the local endpoint scores
# with the container's XGBoost, not the project's 3.x, so it shows what AWS would serve.
CONTAINER_VENV = PROJECT_ROOT / ".venv-container"
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


def container_python() -> Path:
    """The interpreter of the container's environment (`FRAUD_CONTAINER_VENV` overrides where it is)."""
    venv = Path(os.environ.get("FRAUD_CONTAINER_VENV") or CONTAINER_VENV)
    python = venv / "bin" / "python"
    if not python.exists():
        raise LocalStackError(
            f"{venv} is missing: the local model server scores with the SageMaker container's XGBoost 1.7 from it; run `make install`"
        )
    return python


def container_environ(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child in the container's environment: this checkout's package importable there (it
    is installed in .venv only) and nothing else added to its path, which holds NumPy 1.x."""
    env = dict(env)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.pop("VIRTUAL_ENV", None)
    return env


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


class ManagedProcess:
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
                raise LocalStackError(f"{self.name} exited with code {self.popen.returncode} during start-up:\n{self.log_tail()}")
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
