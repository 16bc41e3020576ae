"""Shared wiring vocabulary: owners, groups, partitions, markdown helpers."""

from __future__ import annotations

from typing import Iterable, Sequence

from dagster import DailyPartitionsDefinition

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
