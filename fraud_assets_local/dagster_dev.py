"""`fraud-assets dev`: `dagster dev` that stops when asked.

`dagster dev` runs the webserver and the daemon as children; started under make, a SIGTERM to make
or a Ctrl-C that reaches only part of the tree could leave them running. Here it runs in its own
process group, and SIGINT, SIGTERM, SIGHUP or the death of our parent (make killed) stops that
whole group: SIGTERM first, SIGKILL for whatever is left after a grace period."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 15.0


def run_dagster_dev(argv: list[str], env: dict[str, str]) -> int:
    parent = os.getppid()
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while proc.poll() is None and not stop.is_set():
            if os.getppid() != parent:  # reparented: whoever started us (make) is gone
                stop.set()
            stop.wait(0.5)
        if proc.poll() is None:
            _stop_group(proc)
        return proc.returncode if proc.returncode is not None and proc.returncode >= 0 else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group leader is ours until reaped below
    proc.wait()
    print("fraud-assets dev: stopped", file=sys.stderr)
