"""Shared wiring vocabulary: owners, groups, partitions, markdown helpers."""

from __future__ import annotations

import datetime as dt
import os
from typing import Iterable, Iterator, Mapping, Sequence

from dagster import AssetCheckKey, AssetCheckResult, AssetKey, DailyPartitionsDefinition, HookContext, success_hook

from fraud_assets.lib.config import DEFAULT_FIRST_DAY, FIRST_DAY_VARIABLE
from fraud_assets.lib.memory import release_freed_memory

OWNERS = ["team:fraud-ml"]
TRAINING = "training"
INFERENCE = "inference"
EXPERIMENTATION = "experimentation"


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


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    def cell(v) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def selected_checks(context, results: Iterable[AssetCheckResult]) -> Iterator[AssetCheckResult]:
    """The results of the checks this run selected: a run (or a test) may materialise the asset
    without some of its checks, and Dagster refuses results for checks it did not ask for."""
    wanted = context.selected_asset_check_keys
    for result in results:
        asset_key = AssetKey.from_coercible(result.asset_key) if result.asset_key is not None else context.asset_key
        if AssetCheckKey(asset_key, result.check_name) in wanted:
            yield result


@success_hook(name="release_freed_memory")
def release_freed_memory_hook(context: HookContext) -> None:
    # After each step: a job's steps share one process (the in-process executor), and without
    # this what a step freed (its inputs, the IO manager's parquet buffers) stays in RSS while the
    # next step maps its own data-sized arrays anew.
    release_freed_memory()
