"""Shared wiring vocabulary: owners, groups, partitions, markdown helpers."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from typing import Iterable, Iterator, Mapping, Sequence

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetKey,
    Backoff,
    DailyPartitionsDefinition,
    Failure,
    Jitter,
    PreviewWarning,
    RetryPolicy,
)

from fraud_assets.lib.config import DEFAULT_FIRST_DAY, FIRST_DAY_VARIABLE

OWNERS = ["team:fraud-ml"]
TRAINING = "training"
INFERENCE = "inference"
EXPERIMENTATION = "experimentation"
# Each domain folder under defs/ is the group of the assets it declares (applied in definitions.py).
DOMAINS = (TRAINING, INFERENCE, EXPERIMENTATION)


def first_partition_day(environ: Mapping[str, str] | None = None) -> str:
    """The first daily partition, where the data starts: FRAUD_FIRST_DAY (YYYY-MM-DD), else
    DEFAULT_FIRST_DAY. Read once when the code location loads: partitions are part of the graph's
    shape, so Dagster needs them before any run (and a reload to change them); this is the one
    setting that cannot be resource configuration. Never computed from today: every process must
    agree on it, and a start that slid forward on each reload would drop days that have data. A
    deployment sets the variable for every process (Dockerfile, dagster_cloud.yaml)."""
    value = (os.environ if environ is None else environ).get(FIRST_DAY_VARIABLE, "").strip()
    if not value:
        return DEFAULT_FIRST_DAY
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{FIRST_DAY_VARIABLE}={value!r} is not a date (YYYY-MM-DD)") from None


# One partition per UTC day, from the first day with data to yesterday (the last complete day).
daily_partitions = DailyPartitionsDefinition(start_date=first_partition_day(), timezone="UTC")

# The daily steps call AWS (S3, DynamoDB, the endpoint, SNS, CloudWatch). Their clients retry each
# call; this retries the step once a service has been away longer (an endpoint being replaced):
# again after ~20 s, then ~60 s. Longer outages fail the run, and the daily schedule asks for the
# day again at its next tick. Bad input raises Failure(allow_retries=False): no retry mends it.
AWS_RETRY_POLICY = RetryPolicy(max_retries=2, delay=20, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def daily_check(name: str, asset: str, **kwargs) -> AssetCheckSpec:
    """A check of a daily asset, partitioned as the asset is: each result belongs to its day (the
    check's history shows one result per day, and no planned record is left behind as "Skipped")."""
    with warnings.catch_warnings():
        # A check's partitions_def is a preview parameter in Dagster 1.13: its warning would repeat
        # for every spec at every load of the code location.
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(name, asset=asset, partitions_def=daily_partitions, **kwargs)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def selected_checks(context, results: Iterable[AssetCheckResult]) -> Iterator[AssetCheckResult]:
    """The results of the checks this run selected: a run (or a test) may materialise the asset
    without some of its checks, and Dagster refuses results for checks it did not ask for. A result
    for a check the asset does not declare (missing from `check_specs`) fails the step: dropped, it
    would never be seen."""
    declared, wanted = context.assets_def.check_keys, context.selected_asset_check_keys
    for result in results:
        asset_key = AssetKey.from_coercible(result.asset_key) if result.asset_key is not None else context.asset_key
        key = AssetCheckKey(asset_key, result.check_name)
        if key not in declared:
            raise Failure(
                f"check {result.check_name!r} of {asset_key.to_user_string()} has a result but no AssetCheckSpec in the asset's check_specs",
                allow_retries=False,
            )
        if key in wanted:
            yield result
