"""The data-prep transformation: stable transaction ids and a deterministic 70/15/15 split.

The split is a hash of the row key, not a random generator, so every engine (pandas here, PySpark
in glue_scripts/fraud_data_prep.py) puts the same transaction in the same split: bucket =
pmod(xxhash64("<seed>:<transactionId>", seed 42), 10000), which is exactly Spark's
`pmod(xxhash64(concat(...)), 10000)` (Spark's xxhash64 always uses seed 42).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import xxhash

from fraud_assets.lib.config import LABEL_COLUMN, RAW_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.memory import release_freed_memory

SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULT_RATIOS: tuple[float, float, float] = (0.70, 0.15, 0.15)
HASH_BUCKETS = 10_000
XXHASH_SEED = 42  # Spark's xxhash64 seed; must not change or the engines disagree
ID_PREFIX = "txn-"


def transaction_ids(n_rows: int, offset: int = 0) -> np.ndarray:
    """Stable id of a raw row: its 0-based position in the file (the Kaggle data has no id column
    and holds duplicate rows, so a content hash would not be unique)."""
    return np.array([f"{ID_PREFIX}{i:09d}" for i in range(offset, offset + n_rows)], dtype=object)


def ids_at(positions: np.ndarray) -> np.ndarray:
    """`transaction_ids` of the rows at these 0-based positions."""
    return np.array([f"{ID_PREFIX}{i:09d}" for i in positions.tolist()], dtype=object)


_ID_CHUNK = 262_144


def split_buckets(ids: np.ndarray, seed: int) -> np.ndarray:
    """pmod(signed xxhash64, 10000) of "<seed>:<id>" per id: 0..9999."""
    prefix = f"{seed}:"
    digest = xxhash.xxh64_intdigest
    unsigned = np.fromiter((digest((prefix + i).encode(), XXHASH_SEED) for i in ids.tolist()), dtype=np.uint64, count=len(ids))
    # Python's % and Spark's pmod agree for a positive divisor; go through int64 to mirror Spark's signed long.
    return np.mod(unsigned.view(np.int64), HASH_BUCKETS)


def assign_splits(ids: np.ndarray, seed: int, ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> np.ndarray:
    """Index into SPLITS for every id."""
    validate_ratios(ratios)
    cut_train = round(ratios[0] * HASH_BUCKETS)
    cut_validation = round((ratios[0] + ratios[1]) * HASH_BUCKETS)
    buckets = split_buckets(ids, seed)
    return np.where(buckets < cut_train, 0, np.where(buckets < cut_validation, 1, 2)).astype(np.int8)


def split_rows(
    n_rows: int, ids_between: Callable[[int, int], np.ndarray], seed: int, ratios: tuple[float, float, float] = DEFAULT_RATIOS
) -> list[np.ndarray]:
    """The row positions of each split (SPLITS order) of `n_rows` rows whose ids `ids_between(start,
    stop)` gives: hashed a chunk of ids at a time, as Python strings they cost ~70 bytes each."""
    codes = np.empty(n_rows, dtype=np.int8)
    for start in range(0, n_rows, _ID_CHUNK):
        stop = min(n_rows, start + _ID_CHUNK)
        codes[start:stop] = assign_splits(ids_between(start, stop), seed, ratios)
    return [np.flatnonzero(codes == i) for i in range(len(SPLITS))]


def validate_ratios(ratios: tuple[float, float, float]) -> None:
    if len(ratios) != 3 or any(r <= 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"split ratios must be three positive fractions summing to 1, got {ratios}")


def prepare_splits(
    raw: pd.DataFrame | pa.Table,
    seed: int,
    ratios: tuple[float, float, float] = DEFAULT_RATIOS,
    *,
    release_input: bool = False,
) -> dict[str, pd.DataFrame]:
    """Raw Kaggle-schema rows (a frame, or raw_data.read_raw_table's arrow table) -> {"train",
    "validation", "test"} frames with transactionId first.

    Built a column at a time, one array per column (no consolidated copy of the whole table), so
    the splits cost their own size. With `release_input` each column of `raw` is let go once
    split (dropped from a frame; for a table handed over as a temporary, freed, and arrow's pool
    told to return the memory), so the data is never held twice."""
    rows = split_rows(len(raw), lambda start, stop: transaction_ids(stop - start, start), seed, ratios)
    # transactionId first; its values are made last, once the raw columns are gone.
    columns: list[dict[str, np.ndarray | None]] = [{TRANSACTION_ID: None} for _ in rows]
    for name in RAW_COLUMNS:
        if isinstance(raw, pa.Table):
            values = raw.column(name).to_numpy()
            if name == LABEL_COLUMN:
                values = values.astype(np.int64)
            if release_input:
                raw = raw.drop_columns([name])
                release_freed_memory()
        else:
            values = raw[name].to_numpy()
            if release_input:
                del raw[name]
        for split_columns, r in zip(columns, rows):
            split_columns[name] = values[r]
        del values
    for split_columns, r in zip(columns, rows):
        split_columns[TRANSACTION_ID] = pd.array(ids_at(r), dtype="str")  # str even when empty, as every engine gives
    # copy=False keeps one block per column: no consolidation copy.
    return {name: pd.DataFrame(split_columns, copy=False) for name, split_columns in zip(SPLITS, columns)}


def split_summary(received: int, splits: dict[str, pd.DataFrame]) -> dict:
    """The data-prep stage's output.json, shaped like the original design's DataPrep output."""
    summary: dict = {"recordCount": received, "splits": {}}
    for name, df in splits.items():
        fraud = int(df[LABEL_COLUMN].sum())
        summary["splits"][name] = {
            "rows": len(df),
            "fraudCount": fraud,
            "fraudRate": fraud / len(df) if len(df) else 0.0,
            "fraction": len(df) / received if received else 0.0,
        }
    return summary
