"""Point-in-time history features (issue #21): the customer's recent activity and the terminal's
recent fraud rate, one definition for training (`history_features`, from a labelled frame itself)
and serving (`serving_history_features`, a day's batch plus the stored history), both through the
same core functions. The PySpark twin is glue_scripts/fraud_feature_eng.py `history_features_spark`;
the parity tests hold the two equal to 1e-9.

Input columns: `customerId` and `merchant` (the terminal; either may be missing), `timestamp`
(datetimes or ISO-8601 strings, see `timestamp_micros`), `Amount` and, for training, `Class`.
t is a row's time in epoch microseconds, day(t) = t // MICROS_PER_DAY its UTC day.

Customer features, over the customer's transactions with timestamp in [t - w, t] (RANGE windows:
same-instant transactions count each other, the row itself included):
- `velocity_1h`, `velocity_24h`, `customer_tx_count_7d`, `customer_tx_count_30d`: how many;
- `customer_mean_amount_{1,7,30}d`: their mean Amount (NaN if one of them has a non-finite Amount);
- `amount_to_customer_mean_30d`: Amount / customer_mean_amount_30d (NaN if that mean is 0 or NaN).
Terminal features, for a row on day D and label delay L (a day's labels are known from day + L + 1
on), over the terminal's transactions of the labelled days D-L-N .. D-L-1, N in TERMINAL_WINDOW_DAYS:
- `terminal_tx_count_{N}d`: how many; `terminal_risk_{N}d`: their frauds / that count, 0.0 when
  there are none (as the Fraud Detection Handbook does).
A row without customer or timestamp has NaN customer features; without merchant or timestamp, NaN
terminal features. Every feature is float64 (NaN needs a float column).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_assets.lib.config import LABEL_COLUMN

MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
CUSTOMER_COUNT_WINDOWS: dict[str, int] = {
    "velocity_1h": MICROS_PER_HOUR,
    "velocity_24h": MICROS_PER_DAY,
    "customer_tx_count_7d": 7 * MICROS_PER_DAY,
    "customer_tx_count_30d": 30 * MICROS_PER_DAY,
}
CUSTOMER_MEAN_WINDOWS: dict[str, int] = {
    "customer_mean_amount_1d": MICROS_PER_DAY,
    "customer_mean_amount_7d": 7 * MICROS_PER_DAY,
    "customer_mean_amount_30d": 30 * MICROS_PER_DAY,
}
AMOUNT_RATIO_FEATURE = "amount_to_customer_mean_30d"  # Amount / customer_mean_amount_30d
TERMINAL_WINDOW_DAYS: tuple[int, ...] = (1, 7, 30)
CUSTOMER_FEATURES: tuple[str, ...] = (*CUSTOMER_COUNT_WINDOWS, *CUSTOMER_MEAN_WINDOWS, AMOUNT_RATIO_FEATURE)
TERMINAL_FEATURES: tuple[str, ...] = tuple(
    name for n in TERMINAL_WINDOW_DAYS for name in (f"terminal_tx_count_{n}d", f"terminal_risk_{n}d")
)
HISTORY_FEATURES: tuple[str, ...] = (*CUSTOMER_FEATURES, *TERMINAL_FEATURES)
# Serving day D needs the customers' transactions of days D-30..D-1: the longest window is 30 days.
HISTORY_DAYS = 30

NO_TIME = np.iinfo(np.int64).min  # NaT's int64 value
CUSTOMER_HISTORY_COLUMNS: tuple[str, ...] = ("customerId", "micros", "Amount")
TERMINAL_COUNT_COLUMNS: tuple[str, ...] = ("merchant", "day", "tx", "fraud")


def timestamp_micros(values: pd.Series) -> np.ndarray:
    """Epoch microseconds (int64; NaT -> NO_TIME) of a timestamp column: datetimes or ISO-8601
    strings, a time without offset read as UTC (as the Spark twin's UTC session does)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        ts = values if getattr(values.dt, "tz", None) is not None else values.dt.tz_localize("UTC")
    else:
        ts = pd.to_datetime(values, utc=True, format="ISO8601")
    naive_utc = ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    return naive_utc.to_numpy().view("int64").copy()


def day_of(micros: np.ndarray) -> np.ndarray:
    """UTC day index (days since 1970-01-01) of epoch microseconds; NO_TIME maps to garbage, mask it."""
    return np.floor_divide(micros, MICROS_PER_DAY)


# --------------------------------------------------------------------------- what the store keeps


def customer_history_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The transactions the customer features can count (customer and timestamp present) as
    (customerId: str, micros: int64, Amount: float64), index kept from `frame`: what the store
    keeps per transaction and what `serving_history_features` reads back."""
    return _customer_rows(frame, timestamp_micros(frame["timestamp"]))


def terminal_day_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Transactions and frauds per (merchant, UTC day) of labelled rows, rows without merchant or
    timestamp left out: (merchant: str, day: int64, tx: int64, fraud: int64), sorted by both keys."""
    return _terminal_counts(frame, timestamp_micros(frame["timestamp"]))


def _customer_rows(frame: pd.DataFrame, micros: np.ndarray) -> pd.DataFrame:
    keep = frame["customerId"].notna().to_numpy() & (micros != NO_TIME)
    return pd.DataFrame(
        {
            "customerId": frame["customerId"][keep].astype(str).to_numpy(),
            "micros": micros[keep],
            "Amount": frame["Amount"].to_numpy(dtype="float64")[keep],
        },
        index=frame.index[keep],
    )


def _terminal_counts(frame: pd.DataFrame, micros: np.ndarray) -> pd.DataFrame:
    keep = frame["merchant"].notna().to_numpy() & (micros != NO_TIME)
    rows = pd.DataFrame(
        {
            "merchant": frame["merchant"][keep].astype(str).to_numpy(),
            "day": day_of(micros[keep]),
            "fraud": frame[LABEL_COLUMN].to_numpy(dtype="int64")[keep],
        }
    )
    counts = rows.groupby(["merchant", "day"], sort=True)["fraud"].agg(tx="size", fraud="sum").reset_index()
    return counts.astype({"day": "int64", "tx": "int64", "fraud": "int64"}).loc[:, list(TERMINAL_COUNT_COLUMNS)]


# --------------------------------------------------------------------------- the two entry points


def history_features(frame: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
    """Training: every row's features from the frame itself (a labelled frame, `Class` present),
    never from its own future. Index aligned with `frame`, columns HISTORY_FEATURES."""
    micros = timestamp_micros(frame["timestamp"])
    return _features(frame, micros, _customer_rows(frame, micros), _terminal_counts(frame, micros), label_delay_days)


def serving_history_features(
    batch: pd.DataFrame, customer_history: pd.DataFrame, terminal_counts: pd.DataFrame, label_delay_days: int
) -> pd.DataFrame:
    """Serving day D: `batch` is the day's transactions (no label needed), `customer_history` the
    batch's customers' transactions of days D-30..D-1 (customer_history_rows' columns),
    `terminal_counts` the labelled days' terminal_day_counts rows. Index aligned with `batch`."""
    micros = timestamp_micros(batch["timestamp"])
    known = pd.concat([customer_history.loc[:, list(CUSTOMER_HISTORY_COLUMNS)], _customer_rows(batch, micros)], ignore_index=True)
    return _features(batch, micros, known, terminal_counts, label_delay_days)


def _features(
    rows: pd.DataFrame, micros: np.ndarray, known: pd.DataFrame, terminal_counts: pd.DataFrame, label_delay_days: int
) -> pd.DataFrame:
    """`rows`' features from `known` (customer_history_rows of every transaction the customer
    windows may count, `rows`' own included) and the terminal counts."""
    if isinstance(label_delay_days, bool) or not isinstance(label_delay_days, (int, np.integer)) or label_delay_days < 0:
        raise ValueError(f"label_delay_days must be an integer >= 0, got {label_delay_days!r}")
    out = customer_features(known, rows["customerId"], micros, rows["Amount"].to_numpy(dtype="float64"))
    out.update(terminal_features(terminal_counts, rows["merchant"], micros, int(label_delay_days)))
    matrix = np.empty((len(HISTORY_FEATURES), len(rows)))  # one feature a contiguous row: the frame's own block layout
    for i, name in enumerate(HISTORY_FEATURES):
        matrix[i] = out[name]
    return pd.DataFrame(matrix.T, index=rows.index, columns=list(HISTORY_FEATURES), copy=False)


# --------------------------------------------------------------------------- the core
#
# Both cores turn (entity, time) into one sorted int64 key per known entry and answer each row's
# windows with binary searches. The rows are searched in key order: numpy's searchsorted resumes
# from the previous answer when the needles ascend, several times faster than random needles.


def _codes(known: pd.Series, rows: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The same int64 code for the same string in `known` and `rows` (both without missing values)."""
    codes, _ = pd.factorize(pd.concat([known.astype(str), rows.astype(str)], ignore_index=True))
    codes = codes.astype("int64")
    return codes[: len(known)], codes[len(known) :]


def customer_features(known: pd.DataFrame, customer: pd.Series, micros: np.ndarray, amount: np.ndarray) -> dict[str, np.ndarray]:
    """CUSTOMER_FEATURES of the rows (customer, micros, amount) over `known` (customer_history_rows'
    columns), which must hold those rows themselves. Timestamps become dense ranks and
    (customer, rank) one int64 key (code * (distinct times + 1) + rank < 2**63 while rows**2 < 9.2e18),
    so a window [t - w, t] of a customer is one contiguous run [lo, hi) of the sorted keys."""
    n = len(customer)
    out = {name: np.full(n, np.nan) for name in CUSTOMER_FEATURES}
    active = customer.notna().to_numpy() & (micros != NO_TIME)
    if not active.any():
        return out
    k_code, q_code = _codes(known["customerId"], customer[active])
    k_micros, t = known["micros"].to_numpy(dtype="int64"), micros[active]
    by_time = np.argsort(k_micros, kind="stable")
    sorted_micros = k_micros[by_time]
    distinct = np.concatenate([[True], sorted_micros[1:] != sorted_micros[:-1]])
    times = sorted_micros[distinct]
    k_rank = np.empty(len(k_micros), dtype="int64")
    k_rank[by_time] = np.cumsum(distinct) - 1
    stride = len(times) + 1
    k_key = k_code * stride + k_rank
    order = np.argsort(k_key, kind="stable")
    keys = k_key[order]
    base = q_code * stride
    q_by_time = np.argsort(t, kind="stable")
    q_sorted = t[q_by_time]

    def ranks(offset: int, side: str) -> np.ndarray:  # searchsorted(times, t - offset, side), needles ascending
        found = np.empty(len(t), dtype="int64")
        found[q_by_time] = np.searchsorted(times, q_sorted - offset, side=side)
        return found

    q_by_key = np.argsort(base + ranks(0, "left"), kind="stable")

    def search(rank: np.ndarray) -> np.ndarray:  # first sorted entry at or after (customer, rank)
        found = np.empty(len(rank), dtype="int64")
        found[q_by_key] = np.searchsorted(keys, (base + rank)[q_by_key])
        return found

    hi = search(ranks(0, "right"))  # first entry after t
    widths = {*CUSTOMER_COUNT_WINDOWS.values(), *CUSTOMER_MEAN_WINDOWS.values()}
    lo = {width: search(ranks(width, "left")) for width in widths}  # first entry at or after t - width
    window_sum = _window_sums(known["Amount"].to_numpy(dtype="float64")[order])
    for name, width in CUSTOMER_COUNT_WINDOWS.items():
        out[name][active] = hi - lo[width]
    for name, width in CUSTOMER_MEAN_WINDOWS.items():
        total, non_finite = window_sum(lo[width], hi)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name][active] = np.where(non_finite > 0, np.nan, total / (hi - lo[width]))
    mean = out["customer_mean_amount_30d"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[AMOUNT_RATIO_FEATURE] = np.where(mean != 0, amount / mean, np.nan)  # a NaN mean stays NaN
    return out


def _window_sums(values: np.ndarray):
    """sum(values[lo:hi]) for many (lo, hi) at once, plus how many non-finite values each window
    has (those count as 0 in the sum, so one bad amount spoils only its own windows).

    Plain prefix-sum differences lose precision as the prefix grows (error ~ eps * the whole
    prefix, however small the window), so the result would depend on how much older history is
    present: serving with 30 days and training with years would disagree. Here the prefix is a
    double-double: numpy's cumsum (np.add.accumulate, strictly sequential) rounds each step, TwoSum
    recovers every step's rounding error exactly, and their own cumsum carries it. A difference is
    then accurate to a few ulps of the window's own sum, or eps**2 of the whole prefix (1e-32 relative,
    negligible next to a cent), whichever is larger."""
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0)
    high = np.concatenate([[0.0], np.cumsum(x)])
    before, after = high[:-1], high[1:]
    step = after - before  # TwoSum(before, x) = (after, error) exactly, after being fl(before + x)
    error = (before - (after - step)) + (x - step)
    low = np.concatenate([[0.0], np.cumsum(error)])
    bad = np.concatenate([[0], np.cumsum(~finite)])

    def sums(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (high[hi] - high[lo]) + (low[hi] - low[lo]), bad[hi] - bad[lo]

    return sums


def terminal_features(counts: pd.DataFrame, merchant: pd.Series, micros: np.ndarray, label_delay_days: int) -> dict[str, np.ndarray]:
    """TERMINAL_FEATURES of the rows (merchant, micros) from terminal_day_counts rows. Integer
    prefix sums over (merchant, day) keys, so the counts are exact and the risks bit-identical to
    any engine dividing the same integers."""
    n = len(merchant)
    out = {name: np.full(n, np.nan) for name in TERMINAL_FEATURES}
    active = merchant.notna().to_numpy() & (micros != NO_TIME)
    if not active.any():
        return out
    c_code, q_code = _codes(counts["merchant"], merchant[active])
    c_day, q_day = counts["day"].to_numpy(dtype="int64"), day_of(micros[active])
    first = min(int(q_day.min()) - label_delay_days - max(TERMINAL_WINDOW_DAYS), int(c_day.min(initial=q_day.min())))
    stride = max(int(q_day.max()), int(c_day.max(initial=q_day.max()))) - first + 1  # one merchant's keys below the next's
    c_key = c_code * stride + (c_day - first)
    order = np.argsort(c_key, kind="stable")
    keys = c_key[order]
    tx = np.concatenate([[0], np.cumsum(counts["tx"].to_numpy(dtype="int64")[order])])
    fraud = np.concatenate([[0], np.cumsum(counts["fraud"].to_numpy(dtype="int64")[order])])
    newest = q_code * stride + (q_day - label_delay_days - 1 - first)  # day D-L-1
    by_key = np.argsort(newest, kind="stable")

    def search(needles: np.ndarray, side: str) -> np.ndarray:
        found = np.empty(len(needles), dtype="int64")
        found[by_key] = np.searchsorted(keys, needles[by_key], side=side)
        return found

    hi = search(newest, "right")
    for days in TERMINAL_WINDOW_DAYS:
        lo = search(newest - (days - 1), "left")  # day D-L-N
        count = tx[hi] - tx[lo]
        out[f"terminal_tx_count_{days}d"][active] = count
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"terminal_risk_{days}d"][active] = np.where(count > 0, (fraud[hi] - fraud[lo]) / count, 0.0)
    return out
