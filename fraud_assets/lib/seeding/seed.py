"""Seeding the data bucket: the raw training CSV at `raw/creditcard.csv` and a run of daily batches
at `daily-batches/{date}.json`, either synthetic or made from a real Kaggle-schema CSV.

Everything is built and validated before the first put, so a bad CSV or a bad argument leaves the
bucket as it was."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fraud_assets.lib.config import LABEL_COLUMN, RAW_DATA_KEY, PlatformNames, daily_batch_key
from fraud_assets.lib.training.raw_data import read_raw_csv
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.seeding.synthetic import (
    DEFAULT_ROWS,
    DEFAULT_SEED,
    batch_to_json_bytes,
    daily_batches_from_frame,
    generate_daily_batch,
    generate_transactions,
    parse_iso_date,
    to_csv_bytes,
)


def seed_dates(days: int, start_date: str | None = None, today: dt.date | None = None) -> list[str]:
    """`days` consecutive dates from start_date; by default the `days` days ending yesterday (UTC),
    the most recent complete days."""
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive whole number, got {days!r}")
    if start_date is None:
        today = today or dt.datetime.now(dt.timezone.utc).date()
        first = today - dt.timedelta(days=days)
    else:
        first = parse_iso_date(start_date, "start_date")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def seed_platform(
    s3,
    names: PlatformNames,
    *,
    csv_path: str | Path | None = None,
    days: int = 7,
    start_date: str | None = None,
    rows: int = DEFAULT_ROWS,
    transactions_per_day: int = 10_000,
    drift_from: str | None = None,
    drift: float = 1.0,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Upload the raw training CSV and `days` daily batches to names.data_bucket; drift (0..1) is
    applied on dates >= drift_from. With csv_path the file is validated (RawDataError, nothing
    uploaded) and uploaded as it is, and the daily batches are sampled from its rows; without it a
    synthetic set of `rows` rows is generated. Returns a summary of what was written."""
    dates = seed_dates(days, start_date)
    if drift_from is not None:
        parse_iso_date(drift_from, "drift_from date")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    if transactions_per_day < 0:
        raise ValueError(f"transactions_per_day must be >= 0, got {transactions_per_day}")
    # ISO dates compare correctly as strings.
    drift_by_date = {d: drift for d in dates if drift_from is not None and d >= drift_from and drift > 0}

    if csv_path is None:
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        frame = generate_transactions(rows, seed=seed)
        raw = to_csv_bytes(frame)
        source = "synthetic"
        batches = {
            date: generate_daily_batch(date, transactions_per_day, seed=seed, drift=drift_by_date.get(date, 0.0))
            for date in dates
        }
    else:
        source = str(csv_path)
        raw = Path(csv_path).read_bytes()
        frame = read_raw_csv(raw, source)
        batches = daily_batches_from_frame(frame, dates, transactions_per_day, seed, drift=drift_by_date)
    batch_bodies = {date: batch_to_json_bytes(batch) for date, batch in batches.items()}

    # Batches first, the training file last: a half-finished seed never looks complete to training.
    bucket = names.data_bucket
    batch_uris = {
        date: str(put_bytes(s3, bucket, daily_batch_key(date), body, "application/json"))
        for date, body in batch_bodies.items()
    }
    raw_uri = str(put_bytes(s3, bucket, RAW_DATA_KEY, raw, "text/csv"))

    fraud_count = int(frame[LABEL_COLUMN].sum())
    return {
        "source": source,
        "raw_data_uri": raw_uri,
        "rows": len(frame),
        "fraud_count": fraud_count,
        "fraud_rate": fraud_count / len(frame),
        "ignored_columns": list(frame.attrs.get("ignored_columns", [])),
        "dates": dates,
        "transactions_per_day": transactions_per_day,
        "daily_batch_uris": batch_uris,
        "keys": [RAW_DATA_KEY, *(daily_batch_key(d) for d in dates)],
        "drift": drift,
        "drift_from": drift_from,
        "drifted_dates": sorted(drift_by_date),
    }
