"""The one place the code location's boto3 clients are made.

A client honours every setting of the resource it comes from (region, profile, explicit
credentials, endpoint, TLS verification, retries); what a setting leaves unset, boto3 resolves the
standard way (AWS_ENDPOINT_URL[_<SERVICE>], AWS_DEFAULT_REGION, AWS_PROFILE, the instance or task
role), so the same code runs against the local stack and an AWS account.

Retries are botocore's, one policy per call: `standard` mode by default (exponential backoff with
jitter on throttling, 5xx and connection errors, up to `max_attempts` attempts in all). What
botocore does not retry (a batch's UnprocessedItems and UnprocessedKeys) lib/aws/dynamodb_batches.py sends again.

Every client carries `USER_AGENT_EXTRA` in its User-Agent: CloudTrail shows which calls the
platform made, and the least-privilege test tells them from the tests' own calls.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from typing import Any, Literal

from fraud_assets.lib.config import DEFAULT_REGION

USER_AGENT_EXTRA = "fraud-assets"
RetryMode = Literal["standard", "adaptive", "legacy"]


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    """What a dagster-aws resource (S3Resource, ResourceWithBoto3Configuration) configures."""

    region_name: str | None = None
    profile_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = dataclasses.field(default=None, repr=False)
    aws_session_token: str | None = dataclasses.field(default=None, repr=False)
    endpoint_url: str | None = None
    use_ssl: bool = True
    verify: bool | str | None = None
    max_attempts: int = 5
    retry_mode: RetryMode = "standard"
    use_unsigned_session: bool = False  # S3 only: anonymous requests (public buckets)

    @classmethod
    def from_resource(cls, resource: Any, **overrides: Any) -> "ClientSettings":
        """The settings of any object with (some of) these fields, e.g. a dagster-aws resource."""
        values = {f.name: getattr(resource, f.name) for f in dataclasses.fields(cls) if hasattr(resource, f.name)}
        return cls(**{**values, **overrides})


def make_client(service: str, settings: ClientSettings = ClientSettings()) -> Any:
    """A boto3 client for `service`, cached per settings (building one costs ~50 ms). The
    environment's endpoint variables are part of the cache key: a client made before the local
    stack (re)started must not be handed out afterwards."""
    env = (
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}"),
        os.environ.get("AWS_PROFILE"),
    )
    return _cached_client(service, settings, env)


_lock = threading.Lock()  # boto3 sessions are not thread-safe to create clients from


@functools.lru_cache(maxsize=128)
def _cached_client(service: str, settings: ClientSettings, _env: tuple) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        retries={"mode": settings.retry_mode, "total_max_attempts": max(1, settings.max_attempts)},
        max_pool_connections=16,
        user_agent_extra=USER_AGENT_EXTRA,
        **({"signature_version": UNSIGNED} if settings.use_unsigned_session and service == "s3" else {}),
    )
    with _lock:
        session = boto3.session.Session(profile_name=settings.profile_name)
        return session.client(
            service,
            region_name=settings.region_name or session.region_name or DEFAULT_REGION,
            endpoint_url=settings.endpoint_url,
            use_ssl=settings.use_ssl,
            verify=settings.verify,
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=settings.aws_secret_access_key,
            aws_session_token=settings.aws_session_token,
            config=config,
        )


def s3_client(resource: Any) -> Any:
    """The S3 client of a dagster-aws S3Resource (or any object with its fields), every field
    honoured: S3Resource.get_client would build a new client, in legacy retry mode, on every call."""
    return make_client("s3", ClientSettings.from_resource(resource))
