"""Shared fixtures: one embedded local AWS stack per test session (per xdist worker), reset
between tests that ask for `aws`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from iam_check import Recorder

from fraud_assets.lib.aws.clients import USER_AGENT_EXTRA
from fraud_assets_local.processes import scrubbed_aws_environ
from fraud_assets_local.stack import LocalStack

# The code location's AWS calls during the e2e tests, for test_least_privilege.py: this process's,
# or, in the xdist controller, every worker's (sent back through xdist's workeroutput).
AWS_CALLS = Recorder()
LEAST_PRIVILEGE_MODULE = "test_least_privilege.py"
WORKER_OUTPUT_KEY = "fraud_assets_aws_calls"
# Every e2e test of the suite as collected, before -m/-k deselect any: the calls to compare come from all of them.
COLLECTED_E2E: set[str] = set()


def pytest_addoption(parser: pytest.Parser) -> None:
    # `make test` runs the suite on xdist workers, then the least-privilege comparison in a process of
    # its own: the first run writes every worker's e2e calls to a file, the second compares that file.
    group = parser.getgroup("fraud_assets")
    group.addoption(
        "--aws-calls-out",
        metavar="PATH",
        help="at the end, write the AWS calls the e2e tests made (every worker's) to PATH (give it with =)",
    )
    group.addoption(
        "--aws-calls-in",
        metavar="PATH",
        help="test_least_privilege compares the calls an earlier --aws-calls-out run wrote to PATH (give it with =)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Before any test runs: no credentials, profile or endpoint from this machine may reach a
    # test, so nothing can ever touch a real AWS account (the scrub also hides ~/.aws/*).
    scrubbed = scrubbed_aws_environ()
    os.environ.clear()
    os.environ.update(scrubbed)
    # The tests' daily partitions are fixed dates of this year and of the seeded range.
    os.environ.setdefault("FRAUD_FIRST_DAY", "2024-01-01")
    AWS_CALLS.install(USER_AGENT_EXTRA)  # before any client exists


@pytest.hookimpl(tryfirst=True)  # before -m and -k deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The least-privilege comparison runs after the e2e tests of its process (stable sort)."""
    COLLECTED_E2E.update(item.nodeid for item in items if item.get_closest_marker("e2e"))
    items.sort(key=lambda item: item.path.name == LEAST_PRIVILEGE_MODULE)


def pytest_sessionstart(session: pytest.Session) -> None:
    out = session.config.getoption("aws_calls_out")
    if out and not hasattr(session.config, "workerinput") and os.path.exists(out):
        os.remove(out)  # a run that dies before its end leaves no earlier run's calls behind to compare


def pytest_collection_finish(session: pytest.Session) -> None:
    AWS_CALLS.selected.update(item.nodeid for item in session.items if item.get_closest_marker("e2e"))


@pytest.hookimpl(optionalhook=True)  # an xdist hook: the controller receives each worker's record
def pytest_testnodedown(node: object, error: object) -> None:
    record = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
    if record:
        AWS_CALLS.merge(record)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the record to the controller
        workeroutput[WORKER_OUTPUT_KEY] = AWS_CALLS.dumps()
        return
    out = session.config.getoption("aws_calls_out")
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(AWS_CALLS.dumps())


@pytest.fixture(autouse=True)
def _record_e2e_aws_calls(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("e2e") is None:
        yield
        return
    AWS_CALLS.active = request.node.nodeid
    try:
        yield
    finally:
        AWS_CALLS.active = None
        AWS_CALLS.tests.append(request.node.nodeid)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """A running LocalStack for the session, its env() in os.environ so plain boto3 uses it."""
    import boto3

    saved = dict(os.environ)
    stack = LocalStack().start()
    try:
        os.environ.update(stack.env())
        boto3.DEFAULT_SESSION = None  # a session made before now must not keep other settings
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        boto3.DEFAULT_SESSION = None


@pytest.fixture
def aws(local_stack: LocalStack) -> LocalStack:
    """The session's stack, wiped and bootstrapped again: each test starts from the platform's
    empty buckets, table and topics."""
    local_stack.reset()
    return local_stack
