"""The original design's Data Extraction stage: the training data set is the historical CSV plus the labelled
daily transactions of the last N days, deduplicated by transactionId, with each row's provenance.

- Raw rows keep the ids data prep has always given them (`txn-<position>`), daily rows keep their
  own transactionId, so the split of a transaction never depends on what else is in the data set
  (the split is a hash of the id) and no id can land in two splits.
- Unlabelled daily rows are left out: a transaction without a confirmed outcome teaches nothing.
- A transaction seen twice (raw first, then daily days in date order) is kept once, the first time.
- Optional down-sampling of legitimate rows to about a cap keeps every fraud. It is a hash of the
  id as well (`pmod(xxhash64("sample:<seed>:<id>"), 1e6) < rate * 1e6`, as Spark computes it), so
  every engine keeps the same rows; the rate goes into the stage summary, since precision measured
  on sampled data is higher than on the population.
- The most recent labelled days are held out of training: the out-of-time window on which
  evaluation compares the challenger with the model in production.

The pandas engine is `extract_with_pandas`; the Spark twin is glue_scripts/fraud_data_prep.py's
`extract_training_dataset_spark`. Both return an arrow table sorted by transactionId (DATASET_COLUMNS).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from fraud_assets.lib.config import CUSTOMER_FIELDS, FEATURE_COLUMNS, LABEL_COLUMN, RAW_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.inference.daily import format_timestamps
from fraud_assets.lib.training.splits import ID_PREFIX, XXHASH_SEED, transaction_ids

SOURCE_COLUMN = "source"
_RAW_ID = re.compile(re.escape(ID_PREFIX) + r"([0-9]{9,})")
RAW_SOURCE = "raw"
DAILY_SOURCE_PREFIX = "daily:"
DATASET_COLUMNS: tuple[str, ...] = (TRANSACTION_ID, *RAW_COLUMNS, SOURCE_COLUMN)
DATASET_SCHEMA = pa.schema(
    [(TRANSACTION_ID, pa.string()), *((c, pa.float64()) for c in FEATURE_COLUMNS), (LABEL_COLUMN, pa.int64()), (SOURCE_COLUMN, pa.string())]
)
SAMPLE_BUCKETS = 1_000_000
DEFAULT_HISTORY_DAYS = 180
DEFAULT_RECENT_WINDOW_DAYS = 7


def daily_source(date: str) -> str:
    return f"{DAILY_SOURCE_PREFIX}{date}"


def labelled_daily_rows(transactions: pd.DataFrame, labels: pd.DataFrame, date: str) -> pd.DataFrame:
    """A day's accepted transactions joined with its accepted labels (inner: unlabelled rows are
    left out), as DATASET_COLUMNS with Class from isFraud and source `daily:<date>`, plus the
    CUSTOMER_FIELDS the history features need (timestamp as fixed-width ISO-8601 text)."""
    customer = [c for c in CUSTOMER_FIELDS if c in transactions.columns]
    joined = transactions.loc[:, [TRANSACTION_ID, *FEATURE_COLUMNS, *customer]].merge(
        labels.loc[:, [TRANSACTION_ID, "isFraud"]], on=TRANSACTION_ID, how="inner", validate="one_to_one"
    )
    joined[LABEL_COLUMN] = joined.pop("isFraud").astype(np.int64)
    joined[SOURCE_COLUMN] = daily_source(date)
    if "timestamp" in customer:
        joined["timestamp"] = format_timestamps(joined["timestamp"])
    return normalise(joined)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """DATASET_COLUMNS with the engines' dtypes (str ids and sources, float64 features, int64
    Class), and the CUSTOMER_FIELDS the frame has, as they are."""
    out = frame.loc[:, [*DATASET_COLUMNS, *(c for c in CUSTOMER_FIELDS if c in frame.columns)]].copy()
    out[TRANSACTION_ID] = out[TRANSACTION_ID].astype(str)
    out[SOURCE_COLUMN] = out[SOURCE_COLUMN].astype(str)
    out[list(FEATURE_COLUMNS)] = out[list(FEATURE_COLUMNS)].astype("float64")
    out[LABEL_COLUMN] = out[LABEL_COLUMN].astype("int64")
    return out.reset_index(drop=True)


def empty_daily_rows() -> pd.DataFrame:
    return normalise(pd.DataFrame({c: pd.Series(dtype="float64") for c in DATASET_COLUMNS}))


@dataclasses.dataclass(frozen=True)
class LabelledWindow:
    """Which labelled days train and which are held out (both in date order)."""

    training_dates: list[str]
    recent_dates: list[str]
    outside_history: list[str]


def split_labelled_dates(labelled: Sequence[str], history_days: int, recent_days: int, as_of: str | None = None) -> LabelledWindow:
    """The labelled days within `history_days` of `as_of` (default: the latest labelled day); the
    last `recent_days` of them are the held-out recent window, the others train."""
    if history_days < 1 or recent_days < 0:
        raise ValueError(f"history_days must be >= 1 and recent_days >= 0, got {history_days} and {recent_days}")
    dates = sorted(set(labelled))
    if not dates:
        return LabelledWindow([], [], [])
    end = dt.date.fromisoformat(as_of or dates[-1])
    start = end - dt.timedelta(days=history_days - 1)
    inside = [d for d in dates if start <= dt.date.fromisoformat(d) <= end]
    cut = len(inside) - recent_days if recent_days else len(inside)
    return LabelledWindow(inside[: max(cut, 0)], inside[max(cut, 0) :], [d for d in dates if d not in inside])


def sample_buckets(ids: Sequence[str], seed: int) -> np.ndarray:
    """pmod(signed xxhash64("sample:<seed>:<id>", 42), 1e6) per id, as Spark computes it."""
    prefix = f"sample:{int(seed)}:"
    digest = xxhash.xxh64_intdigest
    unsigned = np.fromiter((digest((prefix + i).encode(), XXHASH_SEED) for i in ids), dtype=np.uint64, count=len(ids))
    return np.mod(unsigned.view(np.int64), SAMPLE_BUCKETS)


def sampling_threshold(legit_rows: int, cap: int | None) -> tuple[float, int]:
    """(rate, bucket threshold) that keeps about `cap` of `legit_rows` legitimate rows; everything
    when there is no cap or the rows fit under it."""
    if cap is None or legit_rows <= cap:
        return 1.0, SAMPLE_BUCKETS
    if cap < 1:
        raise ValueError(f"legitimate-row cap must be >= 1, got {cap}")
    rate = cap / legit_rows
    return rate, round(rate * SAMPLE_BUCKETS)


def combine(raw: pa.Table | pd.DataFrame, daily: pd.DataFrame, seed: int, legit_cap: int | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """The data set from the validated raw rows (RAW_COLUMNS in file order: raw_data.read_raw_table's
    table, or a frame) and labelled daily rows (DATASET_COLUMNS): ids, provenance, dedupe (first
    occurrence: raw, then days in date order), sampling, sorted by transactionId. Returns the
    data set as an arrow table (DATASET_COLUMNS: string ids and sources, float64 features, int64
    Class) and the extraction's counts.

    Memory: the raw rows are held once. Rows are chosen (dedupe, sampling, order) as one array of
    positions, then the table is built a column at a time, each raw column let go once taken; with
    no daily rows and no sampling nothing moves and the raw columns are the data set's (2.85M raw
    rows are ~0.7 GB of float64: a copy of the whole would double the peak)."""
    table = raw if isinstance(raw, pa.Table) else pa.Table.from_pandas(raw.loc[:, list(RAW_COLUMNS)], preserve_index=False)
    del raw  # a table handed over (no other reference) is freed a column at a time below
    raw_rows = table.num_rows
    # Days in date order, each day's rows in their own order: which copy of an id is "first".
    daily = daily.sort_values(SOURCE_COLUMN, kind="stable").loc[:, list(DATASET_COLUMNS)]
    daily_id_list = daily[TRANSACTION_ID].astype(str).tolist()
    # Raw ids are distinct by construction (file positions): a duplicate is a daily row whose id
    # came before, on an earlier day or in the raw history, i.e. it is the id of a position in
    # the file (checked by parsing the daily ids, not by hashing millions of raw ones).
    daily_repeat = ~first_occurrences(daily_id_list, raw_rows)
    keep = np.concatenate([np.ones(raw_rows, dtype=bool), ~daily_repeat])
    duplicates = int(daily_repeat.sum())
    label = np.concatenate([table.column(LABEL_COLUMN).to_numpy(), daily[LABEL_COLUMN].to_numpy(dtype=np.float64)])
    legit = keep & (label == 0)
    legit_before = int(legit.sum())
    rate, threshold = sampling_threshold(legit_before, legit_cap)
    ids = pa.chunked_array([*_raw_id_array(raw_rows).chunks, pa.array(daily_id_list, pa.string())], pa.string())
    if threshold < SAMPLE_BUCKETS:
        legit_positions = np.flatnonzero(legit)
        keep[legit_positions] = sample_buckets(ids.take(pa.array(legit_positions)).to_pylist(), seed) < threshold
    kept = np.flatnonzero(keep)
    # Raw ids are zero-padded positions, already in order: only daily rows need sorting in.
    positions = kept[pc.sort_indices(ids.take(pa.array(kept))).to_numpy()] if len(daily) else kept
    identity = not len(daily) and len(kept) == raw_rows  # every raw row kept, in file order
    take = None if identity else pa.array(positions)
    columns: dict[str, pa.ChunkedArray] = {TRANSACTION_ID: ids if identity else ids.take(take)}
    del ids
    for name in RAW_COLUMNS:
        column = table.column(name)
        table = table.drop_columns([name])
        if len(daily):
            column = pa.chunked_array([*column.chunks, pa.array(daily[name].to_numpy()).cast(column.type)])
        column = column if identity else column.take(take)
        columns[name] = column.cast(pa.int64()) if name == LABEL_COLUMN else column
        del column
    sources = pa.DictionaryArray.from_arrays(
        pa.array(np.concatenate([np.zeros(raw_rows, dtype=np.int32), _day_codes(daily)])[positions]),
        pa.array([RAW_SOURCE, *_days_in_order(daily)], pa.string()),
    )
    columns[SOURCE_COLUMN] = pa.chunked_array([sources.cast(pa.string())])
    dataset = pa.table(columns)
    return dataset, extraction_summary(dataset, raw_rows, len(daily), duplicates, legit_before, rate, legit_cap)


def first_occurrences(ids: list[str], raw_rows: int) -> np.ndarray:
    """Per daily row id (days in date order), whether it is the id's first appearance: neither an
    earlier daily row's id nor the positional id of one of the first `raw_rows` raw rows."""
    return ~(pd.Index(ids).duplicated(keep="first") | _raw_id_positions(ids, raw_rows))


def _raw_id_array(n_rows: int) -> pa.ChunkedArray:
    """transaction_ids(n_rows) as arrow strings, built a chunk at a time: as Python strings all
    at once they would cost ~70 bytes each."""
    chunk = 262_144
    return pa.chunked_array(
        [pa.array(transaction_ids(min(chunk, n_rows - start), start), pa.string()) for start in range(0, n_rows, chunk)], pa.string()
    )


def _raw_id_positions(ids: list[str], raw_rows: int) -> np.ndarray:
    """Per id, whether it is transaction_ids' id of a row among the first `raw_rows`."""
    found = np.zeros(len(ids), dtype=bool)
    for i, value in enumerate(ids):
        match = _RAW_ID.fullmatch(value)
        found[i] = match is not None and int(match.group(1)) < raw_rows and value == transaction_ids(1, int(match.group(1)))[0]
    return found


def _days_in_order(daily: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(daily[SOURCE_COLUMN].astype(str).tolist()))


def _day_codes(daily: pd.DataFrame) -> np.ndarray:
    """Per daily row, 1 + the index of its source in _days_in_order (0 is the raw source)."""
    days = {day: i + 1 for i, day in enumerate(_days_in_order(daily))}
    return daily[SOURCE_COLUMN].astype(str).map(days).to_numpy(dtype=np.int32)


def extraction_summary(
    dataset: pa.Table, raw_rows: int, daily_rows: int, duplicates: int, legit_before: int, rate: float, cap: int | None
) -> dict[str, Any]:
    by_source = {item["values"]: item["counts"] for item in pc.value_counts(dataset.column(SOURCE_COLUMN)).to_pylist()}
    label = dataset.column(LABEL_COLUMN)
    fraud = int(pc.sum(label).as_py() or 0)
    records = dataset.num_rows
    return {
        "recordCount": records,
        "fraudCount": fraud,
        "fraudRate": fraud / records if records else 0.0,
        "rawRowsRead": raw_rows,
        "dailyRowsRead": daily_rows,
        "duplicatesDropped": duplicates,
        "rowsFromRaw": by_source.get(RAW_SOURCE, 0),
        "rowsFromDaily": records - by_source.get(RAW_SOURCE, 0),
        "rowsBySource": dict(sorted(by_source.items())),
        "sampling": {
            "legitimateCap": cap,
            "legitimateRowsBefore": legit_before,
            "legitimateRowsKept": int(pc.sum(pc.equal(label, 0)).as_py() or 0),
            "legitimateRate": rate,
        },
    }


def extract_with_pandas(
    csv_bytes: bytes | Path, source: str, daily: pd.DataFrame, seed: int, legit_cap: int | None = None
) -> tuple[pa.Table, dict[str, Any]]:
    from fraud_assets.lib.training.raw_data import read_raw_table

    return combine(read_raw_table(csv_bytes, source), daily, seed, legit_cap)


def list_label_dates(s3, bucket: str) -> list[str]:
    """The dates that have a label file (`labels/YYYY-MM-DD.json`), in order."""
    from fraud_assets.lib.config import LABELS_PREFIX, label_file_key

    dates = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{LABELS_PREFIX}/"):
        for obj in page.get("Contents", []):
            date = obj["Key"][len(LABELS_PREFIX) + 1 :].removesuffix(".json")
            try:
                if label_file_key(date) == obj["Key"]:
                    dates.append(date)
            except ValueError:
                continue  # not a day's label file (a stray object under the prefix)
    return sorted(dates)


def load_labelled_day(s3, bucket: str, date: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A day's batch joined with its labels, parsed with the inference side's own parsers (bad rows
    and bad labels quarantined there, counted here). No batch: no rows, and the reason."""
    from fraud_assets.lib.aws.storage import S3Uri, get_bytes, object_exists
    from fraud_assets.lib.config import daily_batch_key, label_file_key
    from fraud_assets.lib.inference.daily import parse_daily_batch
    from fraud_assets.lib.inference.labels import parse_label_file

    batch_key = daily_batch_key(date)
    if not object_exists(s3, bucket, batch_key):
        return empty_daily_rows(), {"date": date, "rows": 0, "skipped": f"no daily batch at s3://{bucket}/{batch_key}"}
    batch_uri, labels_uri = str(S3Uri(bucket, batch_key)), str(S3Uri(bucket, label_file_key(date)))
    batch = parse_daily_batch(get_bytes(s3, batch_uri), batch_uri)
    labels = parse_label_file(get_bytes(s3, labels_uri), labels_uri, known_ids=set(batch.accepted[TRANSACTION_ID].tolist()))
    rows = labelled_daily_rows(batch.accepted, labels.accepted, date)
    return rows, {
        "date": date,
        "rows": len(rows),
        "fraud": int(rows[LABEL_COLUMN].sum()),
        "transactions": len(batch.accepted),
        "labels_received": labels.received,
        "labels_quarantined": len(labels.quarantined),
    }


@dataclasses.dataclass(frozen=True)
class LabelledDays:
    """The labelled daily rows of data_extraction's window: the training days' rows (joined into
    the data set) and the recent days' rows (held out), with each day's counts."""

    window: LabelledWindow
    days: list[dict[str, Any]]  # load_labelled_day's counts, training days then recent days
    daily: pd.DataFrame  # the training days' rows (DATASET_COLUMNS)
    recent: pd.DataFrame  # the recent window's rows (DATASET_COLUMNS)
    recent_dates: list[str]  # the recent days that have rows

    def day_rows(self) -> list[tuple]:
        """(date, labelled rows, fraud, note) per day, for a table."""
        return [
            (d["date"], d["rows"], d.get("fraud", 0), "recent window" if d["date"] in self.window.recent_dates else d.get("skipped", ""))
            for d in self.days
        ]


def load_labelled_days(s3, bucket: str, history_days: int, recent_days: int) -> LabelledDays:
    """Every labelled day within `history_days` of the latest, loaded, the last `recent_days` held out."""
    window = split_labelled_dates(list_label_dates(s3, bucket), history_days, recent_days)
    days, parts = [], {}
    for date in [*window.training_dates, *window.recent_dates]:
        parts[date], counts = load_labelled_day(s3, bucket, date)
        days.append(counts)

    def joined(dates: list[str]) -> pd.DataFrame:
        frames = [parts[d] for d in dates if len(parts[d])]
        return pd.concat(frames, ignore_index=True) if frames else empty_daily_rows()

    return LabelledDays(
        window=window,
        days=days,
        daily=joined(window.training_dates),
        recent=joined(window.recent_dates),
        recent_dates=[d for d in window.recent_dates if len(parts[d])],
    )


def hold_out(recent: pd.DataFrame, dataset: pa.Table) -> pd.DataFrame:
    """The recent window without the transactions already in the data set (the raw history, a
    training day): a transaction the model trained on is no evidence of its performance, so an id
    lands in one place only. Hashed on the window's side: the data set's ids are millions."""
    window_ids = pa.array(recent[TRANSACTION_ID].astype(str).tolist(), pa.string())
    seen = dataset.column(TRANSACTION_ID).filter(pc.is_in(dataset.column(TRANSACTION_ID), value_set=window_ids))
    return recent[~recent[TRANSACTION_ID].isin(seen.to_pylist())].reset_index(drop=True)


def recent_window_summary(recent: pd.DataFrame, dates: list[str]) -> dict[str, Any]:
    """recent_labelled_window's summary (and the data set summary's `recentWindow`)."""
    return {"dates": dates, "rows": len(recent), "fraud": int(recent[LABEL_COLUMN].sum())}


def dataset_summary(
    engine_summary: dict[str, Any], *, raw_uri: str, history_days: int, labelled: LabelledDays, recent: pd.DataFrame
) -> dict:
    """training_dataset's summary: the engine's counts (extraction_summary's keys, as the Glue
    script writes them too) plus where the rows came from."""
    return {
        **engine_summary,
        "input": raw_uri,
        "historyDays": history_days,
        "trainingDates": labelled.window.training_dates,
        "labelledDatesOutsideHistory": labelled.window.outside_history,
        "days": labelled.days,
        "recentWindow": recent_window_summary(recent, labelled.recent_dates),
    }
