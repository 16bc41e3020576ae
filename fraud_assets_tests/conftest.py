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

# The code location's AWS calls during the e2e tests, for test_least_privilege.py.
AWS_CALLS = Recorder()
LEAST_PRIVILEGE_MODULE = "test_least_privilege.py"


def pytest_configure(config: pytest.Config) -> None:
    # Before any test runs: no credentials, profile or endpoint from this machine may reach a
    # test, so nothing can ever touch a real AWS account (the scrub also hides ~/.aws/*).
    scrubbed = scrubbed_aws_environ()
    os.environ.clear()
    os.environ.update(scrubbed)
    # The tests' daily partitions are fixed dates of this year and of the seeded range.
    os.environ.setdefault("FRAUD_FIRST_DAY", "2024-01-01")
    AWS_CALLS.install(USER_AGENT_EXTRA)  # before any client exists


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The least-privilege comparison runs after the e2e tests of its process (stable sort)."""
    items.sort(key=lambda item: item.path.name == LEAST_PRIVILEGE_MODULE)


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
