"""The history features of every training transaction, point in time: computed once over the whole
timeline (the raw history, then the labelled days in date order), before the data set is sampled
or split, so a transaction's windows see every earlier transaction of its customer and terminal
whichever split or sample it lands in. The result is a table keyed by transactionId that
engineered_features and the recent window join.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.lib.aws.storage import S3Uri, download_to_file, object_exists
from fraud_assets.lib.config import CUSTOMER_FIELDS, LABEL_COLUMN, RAW_DATA_KEY, TRANSACTION_ID
from fraud_assets.lib.features.history import HISTORY_FEATURES
from fraud_assets.lib.training.extraction import first_occurrences
from fraud_assets.lib.training.raw_data import has_customer_columns, read_customer_columns
from fraud_assets.lib.training.splits import transaction_ids

SOURCE_COLUMNS: tuple[str, ...] = (TRANSACTION_ID, *CUSTOMER_FIELDS, "Amount", LABEL_COLUMN)


def load_raw_customer_columns(s3, bucket: str) -> pa.Table | None:
    """The raw training file's CUSTOMER_FIELDS, Amount and Class (raw_data.read_customer_columns),
    or None when the file has no customers (the Kaggle schema) or is not there."""
    if not object_exists(s3, bucket, RAW_DATA_KEY):
        return None
    uri = S3Uri(bucket, RAW_DATA_KEY)
    # The header alone says whether there are customers: a Kaggle-schema file is not downloaded.
    head = s3.get_object(Bucket=bucket, Key=RAW_DATA_KEY, Range="bytes=0-65535")["Body"].read()
    if not has_customer_columns(head, str(uri)):
        return None
    with tempfile.TemporaryDirectory(prefix="fraud-raw-") as tmp:
        return read_customer_columns(download_to_file(s3, uri, Path(tmp) / "raw.csv"), str(uri))


def history_source(raw: pa.Table | None, days: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Every transaction once, in timeline order: the raw rows (`raw`: CUSTOMER_FIELDS, Amount and
    Class in file order, as raw_data.read_customer_columns reads them; their ids are the data
    set's positional ids) then each labelled day's rows (date order). A day row whose id came
    before is left out, as the data set's extraction does."""
    parts = []
    raw_rows = 0
    if raw is not None and raw.num_rows:
        raw_rows = raw.num_rows
        frame = raw.select([*CUSTOMER_FIELDS, "Amount", LABEL_COLUMN]).to_pandas()
        frame.insert(0, TRANSACTION_ID, transaction_ids(raw_rows))
        parts.append(frame)
    daily = [d for d in days if len(d)]
    if daily:
        rows = pd.concat([d.reindex(columns=list(SOURCE_COLUMNS)) for d in daily], ignore_index=True)
        parts.append(rows[first_occurrences(rows[TRANSACTION_ID].astype(str).tolist(), raw_rows)])
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SOURCE_COLUMNS})
    source = pd.concat(parts, ignore_index=True)
    source[LABEL_COLUMN] = source[LABEL_COLUMN].astype(np.int64)
    source["Amount"] = source["Amount"].astype(np.float64)
    return source


def history_table(source: pd.DataFrame, compute: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """transactionId and HISTORY_FEATURES per source row; `compute` is the engine's history_features."""
    features = compute(source)
    out = pd.DataFrame({TRANSACTION_ID: source[TRANSACTION_ID].astype(str).to_numpy()})
    for name in HISTORY_FEATURES:
        out[name] = features[name].to_numpy(dtype=np.float64)
    return out


def empty_history() -> pd.DataFrame:
    """The history table with no rows (what the Kaggle schema's training stores)."""
    return pd.DataFrame({TRANSACTION_ID: pd.Series(dtype=object), **{n: pd.Series(dtype=np.float64) for n in HISTORY_FEATURES}})


def join_history(frame: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the history features of its transactions (left join on transactionId, order
    kept). A transaction the table lacks would have no history: refused, naming it."""
    joined = frame.drop(columns=[c for c in HISTORY_FEATURES if c in frame.columns]).merge(
        history, on=TRANSACTION_ID, how="left", validate="many_to_one"
    )
    missing = ~frame[TRANSACTION_ID].isin(history[TRANSACTION_ID]).to_numpy()
    if missing.any():
        raise ValueError(
            f"{int(missing.sum())} transactions have no history features, e.g. {frame[TRANSACTION_ID].iloc[int(np.argmax(missing))]!r}"
        )
    return joined


def transaction_history(
    s3, bucket: str, days: Sequence[pd.DataFrame], compute: Callable[[pd.DataFrame], pd.DataFrame]
) -> pd.DataFrame | None:
    """The history table of the raw history and the labelled `days` (date order), or None when the
    raw training file has no customers: the Kaggle schema trains without history features."""
    raw = load_raw_customer_columns(s3, bucket)
    return None if raw is None else history_table(history_source(raw, days), compute)


def with_history(frame: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """A split with its rows' history features, when the training data had customers (`history`
    non-empty); the split as it is otherwise (the Kaggle schema)."""
    return join_history(frame, history) if len(history) else frame
