"""Shared wiring vocabulary: owners, groups, partitions, markdown helpers."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from dagster import AssetCheckKey, AssetCheckResult, AssetKey, DailyPartitionsDefinition

OWNERS = ["team:fraud-ml"]
TRAINING = "training"
INFERENCE = "inference"
EXPERIMENTATION = "experimentation"

daily_partitions = DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")


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
