"""Seeding the data bucket: the raw training CSV at `raw/creditcard.csv`, a run of daily batches at
`daily-batches/{date}.json` and their label files at `labels/{date}.json`: synthetic in the Kaggle
schema, made from a real Kaggle-schema CSV, or a simulated world of customers and terminals whose
training history ends the day before the first daily batch (the same timeline continues).

Labels come late: the seeded days end "yesterday", and a day gets its label file only when it is
at least `label_delay_days` days before "today" (the day after the last seeded day). With the
default delay of 1 every seeded day is labelled; with 3 the last two days are not yet. The
generator's truth labels synthetic days (new-pattern fraud included); with a CSV the sampled rows'
`Class` does.

Everything is built and validated before the first put, so a bad CSV or a bad argument leaves the
bucket as it was."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import (
    DEFAULT_HISTORY_DAYS,
    DEFAULT_SEED_DATA,
    LABEL_COLUMN,
    RAW_DATA_KEY,
    SEED_DATA,
    PlatformNames,
    daily_batch_key,
    label_file_key,
)
from fraud_assets.lib.seeding.synthetic import (
    DEFAULT_DRIFT_KIND,
    DEFAULT_ROWS,
    DEFAULT_SEED,
    LabelledBatch,
    batch_to_json_bytes,
    generate_labelled_daily_batch,
    generate_transactions,
    labelled_batches_from_frame,
    parse_iso_date,
    to_csv_bytes,
)
from fraud_assets.lib.seeding.world import WORLD_HISTORY_COLUMNS, world_history, world_labelled_daily_batch
from fraud_assets.lib.training.raw_data import read_raw_csv


def seed_dates(days: int, start_date: str | None = None, today: dt.date | None = None) -> list[str]:
    """`days` consecutive dates from start_date; by default the `days` days ending yesterday (UTC),
    the most recent complete days. 0 days: none (a training-only run)."""
    first = first_seed_day(days, start_date, today)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]


def first_seed_day(days: int, start_date: str | None = None, today: dt.date | None = None) -> dt.date:
    """The first of seed_dates' days (the day it would start on when days is 0)."""
    if not isinstance(days, int) or days < 0:
        raise ValueError(f"days must be a whole number >= 0, got {days!r}")
    if start_date is not None:
        return parse_iso_date(start_date, "start_date")
    return (today or dt.datetime.now(dt.timezone.utc).date()) - dt.timedelta(days=days)


DEFAULT_LABEL_DELAY_DAYS = 1


def labels_due(dates: list[str], today: dt.date, delay_days: int) -> list[str]:
    """The dates whose labels have arrived by `today`: at least `delay_days` days before it."""
    if not isinstance(delay_days, int) or delay_days < 0:
        raise ValueError(f"label delay must be a whole number of days >= 0, got {delay_days!r}")
    return [d for d in dates if (today - dt.date.fromisoformat(d)).days >= delay_days]


def label_records(date: str, batch: LabelledBatch, delay_days: int) -> list[dict[str, Any]]:
    """The day's label file: every transaction's outcome, labelled `delay_days` after the day
    (fraud confirmed by chargeback, legitimate spending by an analyst's review)."""
    labelled_at = f"{dt.date.fromisoformat(date) + dt.timedelta(days=max(delay_days, 0))}T12:00:00Z"
    return [
        {"transactionId": record["id"], "isFraud": bool(fraud), "labelledAt": labelled_at, "source": "chargeback" if fraud else "analyst"}
        for record, fraud in zip(batch.records, batch.is_fraud.tolist())
    ]


def put_label_file(s3, names: PlatformNames, date: str, body: bytes) -> str:
    return str(put_bytes(s3, names.data_bucket, label_file_key(date), body, "application/json"))


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
    drift_kind: str = DEFAULT_DRIFT_KIND,
    seed: int = DEFAULT_SEED,
    label_delay_days: int = DEFAULT_LABEL_DELAY_DAYS,
    pending_labels: dict[str, bytes] | None = None,
    labels_as_of: dt.date | None = None,
    data: str = DEFAULT_SEED_DATA,
    history_days: int = DEFAULT_HISTORY_DAYS,
) -> dict[str, Any]:
    """Upload the raw training CSV, `days` daily batches and the label files that are due (see the
    module's docstring) to names.data_bucket; drift (0..1) of `drift_kind` is applied on dates >=
    drift_from. With csv_path the file is validated (RawDataError, nothing uploaded) and uploaded as
    it is, and the daily batches are sampled from its rows; without it a synthetic set of `rows`
    rows is generated. With data "world" the training file is `history_days` days of the simulated
    world (`rows` unused) ending the day before the first daily batch, with its transaction,
    customer and merchant columns but no truth beyond Class, and the daily batches continue that
    world. The label files not yet due go into `pending_labels` (date -> body) when
    given, for a caller that lets time pass (`put_label_file` publishes one); `labels_as_of` moves
    "today" (e.g. to the first day, for a caller that simulates the days one by one). Returns a
    summary of what was written."""
    dates = seed_dates(days, start_date)
    if labels_as_of is None and dates:
        labels_as_of = dt.date.fromisoformat(dates[-1]) + dt.timedelta(days=1)
    labelled = labels_due(dates, labels_as_of, label_delay_days) if dates else []
    if drift_from is not None:
        parse_iso_date(drift_from, "drift_from date")
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    if transactions_per_day < 0:
        raise ValueError(f"transactions_per_day must be >= 0, got {transactions_per_day}")
    # ISO dates compare correctly as strings.
    drift_by_date = {d: drift for d in dates if drift_from is not None and d >= drift_from and drift > 0}

    if data not in SEED_DATA:
        raise ValueError(f"data must be one of {', '.join(SEED_DATA)}, got {data!r}")
    if data == "world":
        if csv_path is not None:
            raise ValueError("a CSV is Kaggle-schema data: it cannot seed the simulated world")
        if not isinstance(history_days, int) or history_days < 1:
            raise ValueError(f"history_days must be a whole number >= 1, got {history_days!r}")
        if transactions_per_day < 1:
            raise ValueError(f"the world needs transactions_per_day >= 1, got {transactions_per_day}")
        history_start = first_seed_day(days, start_date) - dt.timedelta(days=history_days)
        frame = world_history(history_start.isoformat(), history_days, transactions_per_day, seed)
        raw = to_csv_bytes(frame, WORLD_HISTORY_COLUMNS)  # the scenario column is truth: never trained on
        source = "world"
        batches = {
            date: world_labelled_daily_batch(date, transactions_per_day, seed, drift=drift_by_date.get(date, 0.0), drift_kind=drift_kind)
            for date in dates
        }
    elif csv_path is None:
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        frame = generate_transactions(rows, seed=seed)
        raw = to_csv_bytes(frame)
        source = "synthetic"
        batches = {
            date: generate_labelled_daily_batch(
                date, transactions_per_day, seed=seed, drift=drift_by_date.get(date, 0.0), drift_kind=drift_kind
            )
            for date in dates
        }
    else:
        source = str(csv_path)
        raw = Path(csv_path).read_bytes()
        frame = read_raw_csv(raw, source)
        batches = labelled_batches_from_frame(frame, dates, transactions_per_day, seed, drift=drift_by_date, drift_kind=drift_kind)
    batch_bodies = {date: batch_to_json_bytes(batch.records) for date, batch in batches.items()}
    label_bodies = {date: batch_to_json_bytes(label_records(date, batches[date], label_delay_days)) for date in dates}

    # Batches first, the training file last: a half-finished seed never looks complete to training.
    bucket = names.data_bucket
    batch_uris = {date: str(put_bytes(s3, bucket, daily_batch_key(date), body, "application/json")) for date, body in batch_bodies.items()}
    label_uris = {date: put_label_file(s3, names, date, label_bodies[date]) for date in labelled}
    if pending_labels is not None:
        pending_labels.update({date: body for date, body in label_bodies.items() if date not in label_uris})
    raw_uri = str(put_bytes(s3, bucket, RAW_DATA_KEY, raw, "text/csv"))

    fraud_count = int(frame[LABEL_COLUMN].sum())
    return {
        "data": data,
        "source": source,
        "raw_data_uri": raw_uri,
        "rows": len(frame),
        "fraud_count": fraud_count,
        "fraud_rate": fraud_count / len(frame),
        "ignored_columns": list(frame.attrs.get("ignored_columns", [])),
        "dates": dates,
        "transactions_per_day": transactions_per_day,
        "daily_batch_uris": batch_uris,
        "keys": [RAW_DATA_KEY, *(daily_batch_key(d) for d in dates), *(label_file_key(d) for d in labelled)],
        "drift": drift,
        "drift_kind": drift_kind,
        "drift_from": drift_from,
        "drifted_dates": sorted(drift_by_date),
        "label_delay_days": label_delay_days,
        "label_uris": label_uris,
        "unlabelled_dates": [d for d in dates if d not in label_uris],
        "daily_fraud": {date: int(batch.is_fraud.sum()) for date, batch in batches.items()},
    }
