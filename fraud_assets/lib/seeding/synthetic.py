"""A synthetic stand-in for the Kaggle credit-card fraud data set, and the daily transaction batches
the inference pipeline scores.

One generative model serves both, so a model trained on `generate_transactions` scores the daily
batches the way it would score new days of the same population:

- V1..V28 are PCA-like: zero-mean, with the real data's decreasing standard deviations and heavy
  tails (a per-row t-scale), and a few components correlated with the amount as in the real data.
- Fraud rows are shifted along a direction modelled on the real data's fraud means (V14, V12, V10,
  V17, V3, V4, V11, ...), with a severity that varies from row to row. Some fraud looks exactly like
  normal spending (label noise the model cannot learn) and a few legitimate rows look fraud-like
  (unusual but genuine), so a good model is good but not perfect: xgboost lands near ROC-AUC 0.97,
  PR-AUC 0.8 on a held-out split.
- Amounts are log-normal (median ~22, mean ~88, some zero-amount verifications); fraud amounts are
  a mix of small card-testing charges and large purchases.
- Time is seconds since the first midnight over two days, with the real data's night-time lull;
  fraud is spread evenly over the day.

The daily batch format is the original design's `daily-batches/{date}.json`: a JSON array of transactions with
id, timestamp, amount, category, customerId, merchant and the model's feature vector; no label.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_COLUMNS

DEFAULT_ROWS = 284_807
DEFAULT_FRAUD_RATE = 0.00172
DEFAULT_SEED = 7
SECONDS_PER_DAY = 86_400
MAX_TIME = 172_792.0  # the real data's last Time value: two days less a few seconds

_N_COMPONENTS = 28

# Standard deviations of the real data's V1..V28 (PCA output, so they decrease).
_COMPONENT_STD = np.array(
    [
        1.959,
        1.651,
        1.516,
        1.416,
        1.380,
        1.332,
        1.237,
        1.194,
        1.099,
        1.089,
        1.021,
        0.999,
        0.995,
        0.959,
        0.915,
        0.876,
        0.849,
        0.838,
        0.814,
        0.771,
        0.735,
        0.726,
        0.624,
        0.606,
        0.521,
        0.482,
        0.404,
        0.330,
    ]
)

# Where fraud sits: roughly the real data's fraud-class means per component (the legitimate class
# is ~0 everywhere). Severity scales this per row; the strongest signals are V14, V17, V12, V10, V3.
_FRAUD_DIRECTION = np.zeros(_N_COMPONENTS)
for _name, _mean in {
    "V1": -4.8,
    "V2": 3.6,
    "V3": -7.0,
    "V4": 4.5,
    "V5": -3.2,
    "V6": -1.4,
    "V7": -5.6,
    "V8": 0.6,
    "V9": -2.6,
    "V10": -5.7,
    "V11": 3.8,
    "V12": -6.3,
    "V14": -7.0,
    "V16": -4.1,
    "V17": -6.7,
    "V18": -2.3,
    "V19": 0.7,
    "V20": 0.4,
    "V21": 0.7,
    "V27": 0.2,
}.items():
    _FRAUD_DIRECTION[int(_name[1:]) - 1] = _mean

# Correlation of the (standardised log) amount with a few components, as in the real data, where
# the PCA ran on features that included spend.
_AMOUNT_CORRELATION = np.zeros(_N_COMPONENTS)
for _name, _rho in {"V1": -0.2, "V2": -0.5, "V3": -0.2, "V5": -0.35, "V6": 0.2, "V7": 0.35, "V20": 0.3}.items():
    _AMOUNT_CORRELATION[int(_name[1:]) - 1] = _rho

# Tail heaviness of the components: a per-row t-scale with this many degrees of freedom.
_TAIL_DOF = 6.0

# Legitimate amounts: log-normal with median 22 and mean ~88 (mean/median = exp(sigma^2/2) = 4).
_AMOUNT_LOG_MEDIAN = math.log(22.0)
_AMOUNT_LOG_SIGMA = math.sqrt(2 * math.log(4.0))
_ZERO_AMOUNT_SHARE = 0.0064  # card verifications: the real data has ~0.6% zero amounts
_MAX_AMOUNT = 25_691.16
# Mean and standard deviation of log1p(amount) over legitimate rows (measured on 5M draws), to
# standardise the amount before it feeds the correlated components.
_LOG1P_AMOUNT_MEAN = 3.196
_LOG1P_AMOUNT_STD = 1.523

# How hard the problem is. Tuned so xgboost (max_depth 5, eta 0.1, early stopping) gets
# ROC-AUC ~0.97 and PR-AUC ~0.8 on a held-out split of the default set.
_HIDDEN_FRAUD_SHARE = 0.055  # fraud indistinguishable from normal spending: unlearnable label noise
_SUBTLE_FRAUD_SHARE = 0.05  # fraud only slightly off normal
_SUBTLE_SEVERITY = (0.05, 0.25)
_FRAUD_SEVERITY_SHAPE = 2.0  # the rest: gamma severity with mean 1
_FRAUD_SPREAD = 1.8  # fraud rows vary more than legitimate ones around their shifted mean
_LOOKALIKE_SHARE = 0.00015  # legitimate rows that look fraud-like (unusual but genuine)
_LOOKALIKE_SEVERITY = (0.1, 0.45)

# Night-time lull: relative transaction volume per hour of day for legitimate spending.
_HOURLY_VOLUME = np.array(
    [0.55, 0.35, 0.25, 0.2, 0.2, 0.25, 0.4, 0.7, 1.0, 1.2, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.25, 1.2, 1.1, 1.0, 0.8]
)

# What drift=1 does to a day: fraud-like share up to ~22%, all rows nudged towards the fraud
# direction, amounts ~50% higher. Scaled linearly by the drift level.
_DRIFT_EXTRA_FRAUD_SHARE = 0.22
_DRIFT_SHIFT = 0.1
_DRIFT_LOG_AMOUNT = 0.4

# Drift kinds. "shift": the population moves along the fraud direction the model already knows
# (more fraud of the known kind; the deployed model catches it). "new-pattern": a fraud pattern the
# training data never had appears: fraud along components the known fraud does not use (so the
# deployed model scores it as normal spending and misses most of it), in a day whose population
# also moves (amounts up, a nudge along the known direction: what the score-based drift rule sees).
DRIFT_KINDS: tuple[str, ...] = ("shift", "new-pattern")
DEFAULT_DRIFT_KIND = "shift"
_NEW_PATTERN_SHARE = 0.02  # new-pattern fraud per transaction at drift=1 (~12x the usual fraud rate)
_NEW_PATTERN_DIRECTION = np.zeros(_N_COMPONENTS)
for _name, _mean in {"V13": 4.5, "V15": -4.0, "V22": 3.5, "V23": -3.0, "V24": 2.8, "V25": -2.5, "V26": 2.2, "V28": 1.6}.items():
    _NEW_PATTERN_DIRECTION[int(_name[1:]) - 1] = _mean
_NEW_PATTERN_SEVERITY = (0.7, 1.3)


# --------------------------------------------------------------------------- training data


def generate_transactions(n_rows: int = DEFAULT_ROWS, fraud_rate: float = DEFAULT_FRAUD_RATE, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """A Kaggle-schema frame (RAW_COLUMNS, in order): float64 features, int64 Class, sorted by
    Time. round(n_rows * fraud_rate) rows are fraud. Deterministic for a seed."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    if not 0.0 <= fraud_rate <= 1.0:
        raise ValueError(f"fraud_rate must be in [0, 1], got {fraud_rate}")
    rng = np.random.default_rng(seed)
    n_fraud = int(round(n_rows * fraud_rate))
    is_fraud = np.zeros(n_rows, dtype=bool)
    is_fraud[rng.choice(n_rows, size=n_fraud, replace=False)] = True

    day = rng.integers(0, 2, size=n_rows)
    time = np.minimum(day * SECONDS_PER_DAY + _time_of_day(rng, is_fraud), MAX_TIME)
    amount = _amounts(rng, is_fraud)
    components = _components(rng, is_fraud, amount)

    order = np.argsort(time, kind="stable")  # the Kaggle file is in time order
    components = components[order]
    data = {"Time": time[order]}
    for i in range(_N_COMPONENTS):
        data[f"V{i + 1}"] = components[:, i]
    data["Amount"] = amount[order]
    data[LABEL_COLUMN] = is_fraud[order].astype(np.int64)
    return pd.DataFrame(data, columns=list(RAW_COLUMNS))


def to_csv_bytes(df: pd.DataFrame, columns: Sequence[str] = RAW_COLUMNS) -> bytes:
    """The frame's `columns` as CSV (quoted header): by default the Kaggle CSV, RAW_COLUMNS in order."""
    table = pa.Table.from_pandas(df.loc[:, list(columns)], preserve_index=False)
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def _time_of_day(rng: np.random.Generator, is_fraud: np.ndarray) -> np.ndarray:
    """Whole seconds since midnight: legitimate spending follows the daily cycle, fraud does not."""
    n = len(is_fraud)
    hour = rng.choice(24, size=n, p=_HOURLY_VOLUME / _HOURLY_VOLUME.sum())
    hour[is_fraud] = rng.integers(0, 24, size=int(is_fraud.sum()))
    return (hour * 3600 + rng.integers(0, 3600, size=n)).astype(np.float64)


def _amounts(rng: np.random.Generator, is_fraud: np.ndarray) -> np.ndarray:
    n = len(is_fraud)
    amount = np.exp(rng.normal(_AMOUNT_LOG_MEDIAN, _AMOUNT_LOG_SIGMA, size=n))
    amount[rng.random(n) < _ZERO_AMOUNT_SHARE] = 0.0
    n_fraud = int(is_fraud.sum())
    if n_fraud:
        # Half card-testing (a dollar or two), half cashing out (large purchases).
        testing = rng.random(n_fraud) < 0.45
        fraud_amount = np.where(
            testing,
            np.exp(rng.normal(math.log(1.5), 0.8, size=n_fraud)),
            np.exp(rng.normal(math.log(90.0), 1.3, size=n_fraud)),
        )
        amount[is_fraud] = fraud_amount
    return np.round(np.minimum(amount, _MAX_AMOUNT), 2)


def _components(rng: np.random.Generator, is_fraud: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """V1..V28 for the given rows (n x 28)."""
    n = len(is_fraud)
    # Standardised log-amount, so the amount-correlated components stay zero-mean, unit-scaled.
    z = (np.log1p(amount) - _LOG1P_AMOUNT_MEAN) / _LOG1P_AMOUNT_STD
    z = np.clip(z, -4.0, 4.0)
    # Built in place on one n x 28 array: this is most of the generator's time at full size.
    components = rng.standard_normal((n, _N_COMPONENTS))
    components *= np.sqrt((_TAIL_DOF - 2.0) / rng.chisquare(_TAIL_DOF, size=n))[:, None]
    components *= np.sqrt(1.0 - _AMOUNT_CORRELATION**2) * _COMPONENT_STD
    for i in np.flatnonzero(_AMOUNT_CORRELATION):
        components[:, i] += z * (_AMOUNT_CORRELATION[i] * _COMPONENT_STD[i])

    severity = np.zeros(n)
    fraud_rows = np.flatnonzero(is_fraud)
    if len(fraud_rows):
        kind = rng.random(len(fraud_rows))
        hidden = kind < _HIDDEN_FRAUD_SHARE
        subtle = ~hidden & (kind < _HIDDEN_FRAUD_SHARE + _SUBTLE_FRAUD_SHARE)
        fraud_severity = rng.gamma(_FRAUD_SEVERITY_SHAPE, 1.0 / _FRAUD_SEVERITY_SHAPE, size=len(fraud_rows))
        fraud_severity[subtle] = rng.uniform(*_SUBTLE_SEVERITY, size=int(subtle.sum()))
        fraud_severity[hidden] = 0.0
        severity[fraud_rows] = fraud_severity
        # Hidden fraud is normal spending in every respect, including the spread.
        components[fraud_rows[~hidden]] *= _FRAUD_SPREAD
    lookalike = ~is_fraud & (rng.random(n) < _LOOKALIKE_SHARE)
    severity[lookalike] = rng.uniform(*_LOOKALIKE_SEVERITY, size=int(lookalike.sum()))
    shifted = np.flatnonzero(severity)
    components[shifted] += severity[shifted, None] * _FRAUD_DIRECTION
    return np.round(components, 6, out=components)


# --------------------------------------------------------------------------- daily batches

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Merchant categories: name stems and how much more (or less) fraud they attract than average.
_CATEGORIES: dict[str, tuple[tuple[str, ...], float]] = {
    "grocery": (("Grocery", "Market", "Foods", "Supermarket"), 0.4),
    "gas_transport": (("Fuel", "Gas & Go", "Transit", "Petroleum"), 1.2),
    "restaurants": (("Bistro", "Diner", "Kitchen", "Cafe", "Pizza"), 0.4),
    "online_retail": (("Online Store", "Web Shop", "Marketplace", "Direct"), 2.5),
    "electronics": (("Electronics", "Digital", "Tech Store", "Computers"), 2.5),
    "travel": (("Airlines", "Travel", "Hotels", "Car Rental"), 1.8),
    "entertainment": (("Cinemas", "Tickets", "Games", "Streaming"), 1.0),
    "health_beauty": (("Pharmacy", "Beauty", "Health"), 0.5),
    "home_garden": (("Home Center", "Hardware", "Garden Supply", "Furniture"), 0.6),
    "digital_goods": (("Gift Cards", "App Store", "Game Credits", "Crypto Exchange"), 3.0),
}
CATEGORY_NAMES = tuple(_CATEGORIES)
_PLACES = (
    "Northside",
    "Harbor",
    "Maple",
    "Summit",
    "Riverside",
    "Oakwood",
    "Lakeview",
    "Metro",
    "Pioneer",
    "Union",
    "Cedar",
    "Granite",
    "Bayview",
    "Sunset",
    "Elm Street",
    "Westgate",
    "Eastfield",
    "Silverline",
    "Redwood",
    "Capital",
)
_MERCHANTS_PER_CATEGORY = 12
# Where people spend, by amount tier (< $10, < $100, more), in CATEGORY_NAMES order.
_AMOUNT_TIERS = np.array([10.0, 100.0])
_CATEGORY_MIX_BY_TIER = np.array(
    [
        [3.0, 3.0, 3.0, 1.0, 0.2, 0.2, 1.5, 1.5, 0.5, 1.5],
        [3.0, 1.5, 2.5, 2.0, 0.8, 0.6, 1.5, 1.0, 1.5, 0.5],
        [0.8, 0.2, 0.8, 2.0, 2.0, 2.5, 0.6, 0.5, 2.0, 0.3],
    ]
)
# Customers per transaction in the pool, and how unevenly they spend (gamma shape: small = a few
# customers with many transactions a day, many with none).
_CUSTOMERS_PER_TRANSACTION = 0.5
_CUSTOMER_ACTIVITY_SHAPE = 0.5
_FRAUD_PER_COMPROMISED_CARD = 2.5  # fraud comes in bursts on a compromised card
_BURST_GAP_SECONDS = 600.0


def parse_iso_date(value: str, what: str = "date") -> dt.date:
    """A YYYY-MM-DD date, or a ValueError that says what was wrong."""
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError(f"invalid {what} {value!r}: expected YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"invalid {what} {value!r}: {err}") from None


class LabelledBatch(NamedTuple):
    """A day's transactions in the `daily-batches/{date}.json` format and the truth the generator
    knows about them (`is_fraud[i]` is records[i]'s label), which the batch itself never carries."""

    records: list[dict[str, Any]]
    is_fraud: np.ndarray
    # Which fraud scenario made each record fraud ("" for legitimate ones), for generators that
    # know (the simulated world); None where the generator does not say.
    scenario: np.ndarray | None = None


def generate_daily_batch(
    date: str,
    n_transactions: int = 10_000,
    seed: int = DEFAULT_SEED,
    drift: float = 0.0,
    fraud_rate: float = DEFAULT_FRAUD_RATE,
    drift_kind: str = DEFAULT_DRIFT_KIND,
) -> list[dict[str, Any]]:
    """One day's transactions in the `daily-batches/{date}.json` format, from the training data's
    generative model; `generate_labelled_daily_batch` without the truth."""
    return generate_labelled_daily_batch(date, n_transactions, seed, drift, fraud_rate, drift_kind).records


def generate_labelled_daily_batch(
    date: str,
    n_transactions: int = 10_000,
    seed: int = DEFAULT_SEED,
    drift: float = 0.0,
    fraud_rate: float = DEFAULT_FRAUD_RATE,
    drift_kind: str = DEFAULT_DRIFT_KIND,
) -> LabelledBatch:
    """One day's transactions and their truth. drift in [0, 1]: 0 is an ordinary day; with
    drift_kind "shift", 1 shifts the fraud-relevant components and the amounts and raises the
    fraud-like share to ~22%; with "new-pattern", 1 adds ~2% fraud of a kind the training data
    never had (see DRIFT_KINDS) and moves the population as "shift" does. Deterministic for
    (seed, date, drift, drift_kind); the customer and merchant pools depend on the seed only, so
    customers recur across days."""
    day = parse_iso_date(date)
    _check_drift(drift, drift_kind)
    if n_transactions < 0:
        raise ValueError(f"n_transactions must be >= 0, got {n_transactions}")
    rng = _day_rng(seed, day)
    extra = drift * _DRIFT_EXTRA_FRAUD_SHARE if drift_kind == "shift" else 0.0
    n_fraud = int(rng.binomial(n_transactions, min(1.0, fraud_rate + extra)))
    is_fraud = np.zeros(n_transactions, dtype=bool)
    is_fraud[rng.choice(n_transactions, size=n_fraud, replace=False)] = True
    time = _time_of_day(rng, is_fraud)
    amount = _amounts(rng, is_fraud)
    components = _components(rng, is_fraud, amount)
    if drift_kind == "new-pattern" and drift > 0:
        is_fraud = _add_new_pattern(rng, components, is_fraud, drift)
    return _assemble_batch(day, rng, seed, time, components, amount, is_fraud, drift)


def _add_new_pattern(rng: np.random.Generator, components: np.ndarray, is_fraud: np.ndarray, drift: float) -> np.ndarray:
    """Turns a share of the legitimate rows into new-pattern fraud in place (their components move
    along _NEW_PATTERN_DIRECTION, nothing else changes); returns the new truth."""
    legit = np.flatnonzero(~is_fraud)
    n_new = min(len(legit), int(rng.binomial(len(is_fraud), min(1.0, drift * _NEW_PATTERN_SHARE))))
    rows = rng.choice(legit, size=n_new, replace=False)
    severity = rng.uniform(*_NEW_PATTERN_SEVERITY, size=n_new)
    components[rows] += severity[:, None] * _NEW_PATTERN_DIRECTION
    truth = is_fraud.copy()
    truth[rows] = True
    return truth


def daily_batches_from_frame(
    df: pd.DataFrame,
    dates: Sequence[str],
    n_per_day: int,
    seed: int = DEFAULT_SEED,
    *,
    drift: float | Mapping[str, float] = 0.0,
    drift_kind: str = DEFAULT_DRIFT_KIND,
) -> dict[str, list[dict[str, Any]]]:
    """`labelled_batches_from_frame` without the truth."""
    batches = labelled_batches_from_frame(df, dates, n_per_day, seed, drift=drift, drift_kind=drift_kind)
    return {date: batch.records for date, batch in batches.items()}


def labelled_batches_from_frame(
    df: pd.DataFrame,
    dates: Sequence[str],
    n_per_day: int,
    seed: int = DEFAULT_SEED,
    *,
    drift: float | Mapping[str, float] = 0.0,
    drift_kind: str = DEFAULT_DRIFT_KIND,
) -> dict[str, LabelledBatch]:
    """Daily batches made from rows of a Kaggle-schema frame (e.g. the real data), with each
    transaction's truth from the frame's Class: rows sampled per day, Time mapped into the day
    (Time mod 86400, keeping the daily cycle), synthetic customers, merchants and categories, label
    dropped from the records. Labelled fraud rows go to merchants by fraud propensity and into
    bursts on compromised cards (their Time moves with the burst), as in generate_daily_batch.
    drift is one level for every date or a level per date; "shift" drifting oversamples labelled
    fraud rows, "new-pattern" turns legitimate rows into new-pattern fraud; both shift components
    and amounts as generate_daily_batch does."""
    missing = [c for c in FEATURE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"frame lacks feature columns {missing}")
    if len(df) == 0:
        raise ValueError("frame has no rows to sample daily batches from")
    if n_per_day < 0:
        raise ValueError(f"n_per_day must be >= 0, got {n_per_day}")
    days = [parse_iso_date(d) for d in dates]
    features = df.loc[:, list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    labels = df[LABEL_COLUMN].to_numpy() == 1 if LABEL_COLUMN in df.columns else np.zeros(len(df), dtype=bool)
    fraud_rows, legit_rows = np.flatnonzero(labels), np.flatnonzero(~labels)

    batches: dict[str, LabelledBatch] = {}
    for date, day in zip(dates, days):
        level = drift.get(date, 0.0) if isinstance(drift, Mapping) else drift
        _check_drift(level, drift_kind)
        rng = _day_rng(seed, day)
        if drift_kind == "shift" and level > 0 and len(fraud_rows) and len(legit_rows):
            share = min(1.0, len(fraud_rows) / len(df) + level * _DRIFT_EXTRA_FRAUD_SHARE)
            n_fraud = int(rng.binomial(n_per_day, share))
            picked = np.concatenate([_sample(rng, fraud_rows, n_fraud), _sample(rng, legit_rows, n_per_day - n_fraud)])
        else:
            picked = _sample(rng, np.arange(len(df)), n_per_day)
        rows = features[picked]
        time = np.floor(rows[:, 0] % SECONDS_PER_DAY)
        components, truth = rows[:, 1:-1].copy(), labels[picked]
        if drift_kind == "new-pattern" and level > 0:
            truth = _add_new_pattern(rng, components, truth, level)
        batches[date] = _assemble_batch(day, rng, seed, time, components, rows[:, -1].copy(), truth, level)
    return batches


def batch_to_json_bytes(batch: list[dict[str, Any]]) -> bytes:
    """Compact JSON; NaN/inf refused, since they are not JSON."""
    return json.dumps(batch, separators=(",", ":"), allow_nan=False).encode()


def _check_drift(drift: float, kind: str = DEFAULT_DRIFT_KIND) -> None:
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be in [0, 1], got {drift}")
    if kind not in DRIFT_KINDS:
        raise ValueError(f"drift kind must be one of {', '.join(DRIFT_KINDS)}, got {kind!r}")


def _day_rng(seed: int, day: dt.date) -> np.random.Generator:
    return np.random.default_rng([seed, day.toordinal()])


def _sample(rng: np.random.Generator, rows: np.ndarray, n: int) -> np.ndarray:
    # Without replacement while the frame has enough rows; a small frame has to repeat rows.
    return rng.choice(rows, size=n, replace=n > len(rows))


def _assemble_batch(
    day: dt.date,
    rng: np.random.Generator,
    seed: int,
    time: np.ndarray,
    components: np.ndarray,
    amount: np.ndarray,
    is_fraud: np.ndarray,
    drift: float,
) -> LabelledBatch:
    components, amount = apply_drift(components, amount, drift)
    customers, time = _customers(rng, seed, len(time), is_fraud, time)
    categories, merchants = _merchants(rng, seed, amount, is_fraud)
    order = np.argsort(time, kind="stable")
    records = batch_records(
        day,
        time[order],
        components[order],
        amount[order],
        categories[order],
        customers[order],
        np.asarray(merchants, dtype=object)[order].tolist(),
    )
    return LabelledBatch(records, np.asarray(is_fraud, dtype=bool)[order])


def apply_drift(components: np.ndarray, amount: np.ndarray, drift: float) -> tuple[np.ndarray, np.ndarray]:
    """A day's components and amounts moved by the drift level (see _DRIFT_SHIFT), rounded as the
    batches carry them."""
    if drift > 0:
        components = components + drift * _DRIFT_SHIFT * _FRAUD_DIRECTION
        amount = amount * math.exp(drift * _DRIFT_LOG_AMOUNT)
    return np.round(components, 6), np.round(amount, 2)


def transaction_ids(day: dt.date, n: int) -> list[str]:
    """The day's transaction ids in time order: TXN-YYYY-MM-DD-000001, ..."""
    width = max(6, len(str(n)))
    prefix = f"TXN-{day.isoformat()}-"
    return [f"{prefix}{i + 1:0{width}d}" for i in range(n)]


def timestamps(day: dt.date, time: np.ndarray) -> np.ndarray:
    """ISO timestamps (YYYY-MM-DDTHH:MM:SSZ) of the day's seconds since midnight."""
    stamps = np.datetime_as_string(np.datetime64(day.isoformat(), "s") + time.astype("timedelta64[s]"), unit="s")
    return np.char.add(stamps, "Z")


def customer_ids(customers: np.ndarray) -> list[str]:
    return [f"CUST-{100_000 + c}" for c in customers.tolist()]


def batch_records(
    day: dt.date,
    time: np.ndarray,
    components: np.ndarray,
    amount: np.ndarray,
    categories: np.ndarray,
    customers: np.ndarray,
    merchants: list[str],
) -> list[dict[str, Any]]:
    """The day's transactions, already in time order, as `daily-batches/{date}.json` records;
    categories index CATEGORY_NAMES, customers are pool indices."""
    stamps = timestamps(day, time).tolist()
    feature_rows = np.column_stack([time, components, amount]).tolist()
    return [
        {
            "id": txn_id,
            "timestamp": stamp,
            "amount": values[-1],
            "category": CATEGORY_NAMES[category],
            "customerId": customer,
            "merchant": merchant,
            "features": dict(zip(FEATURE_COLUMNS, values)),
        }
        for txn_id, stamp, values, category, customer, merchant in zip(
            transaction_ids(day, len(time)), stamps, feature_rows, categories.tolist(), customer_ids(customers), merchants
        )
    ]


def _customers(rng: np.random.Generator, seed: int, n: int, is_fraud: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Customer index per transaction, and times with fraud moved into bursts per compromised card."""
    pool_rng = np.random.default_rng([seed, 0xC057])  # same pool every day for this seed
    pool = max(20, int(n * _CUSTOMERS_PER_TRANSACTION))
    activity = pool_rng.gamma(_CUSTOMER_ACTIVITY_SHAPE, size=pool)
    customers = rng.choice(pool, size=n, p=activity / activity.sum())
    time = time.copy()
    fraud_rows = np.flatnonzero(is_fraud)
    if len(fraud_rows):
        n_cards = min(pool, max(1, round(len(fraud_rows) / _FRAUD_PER_COMPROMISED_CARD)))
        cards = rng.choice(pool, size=n_cards, replace=False)
        card_of = rng.integers(0, n_cards, size=len(fraud_rows))
        burst_start = rng.uniform(0, SECONDS_PER_DAY - 3600, size=n_cards)
        customers[fraud_rows] = cards[card_of]
        offsets = rng.exponential(_BURST_GAP_SECONDS, size=len(fraud_rows))
        time[fraud_rows] = np.floor(np.minimum(burst_start[card_of] + offsets, SECONDS_PER_DAY - 1))
    return customers, time


def _merchant_catalog(seed: int) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
    """Per category: merchant names, popularity and fraud propensity; fixed for a seed."""
    catalog_rng = np.random.default_rng([seed, 0x3E4C])
    catalog = []
    for stems, base_risk in _CATEGORIES.values():
        names = sorted(
            {
                f"{_PLACES[p]} {stems[s]}"
                for p, s in zip(
                    catalog_rng.integers(0, len(_PLACES), size=3 * _MERCHANTS_PER_CATEGORY),
                    catalog_rng.integers(0, len(stems), size=3 * _MERCHANTS_PER_CATEGORY),
                )
            }
        )[:_MERCHANTS_PER_CATEGORY]
        popularity = catalog_rng.lognormal(0.0, 1.0, size=len(names))
        risk = base_risk * catalog_rng.lognormal(0.0, 0.8, size=len(names))
        catalog.append((names, popularity, risk))
    return catalog


def _merchants(rng: np.random.Generator, seed: int, amount: np.ndarray, is_fraud: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Category index and merchant name per transaction: legitimate spending by amount tier and
    merchant popularity, fraud additionally weighted by category and merchant fraud propensity."""
    n = len(amount)
    catalog = _merchant_catalog(seed)
    base_risk = np.array([risk for _, risk in _CATEGORIES.values()])
    tier = np.searchsorted(_AMOUNT_TIERS, amount, side="right")
    category = np.zeros(n, dtype=np.int64)
    for t in range(len(_CATEGORY_MIX_BY_TIER)):
        for fraud in (False, True):
            rows = np.flatnonzero((tier == t) & (is_fraud == fraud))
            weights = _CATEGORY_MIX_BY_TIER[t] * (base_risk if fraud else 1.0)
            category[rows] = rng.choice(len(weights), size=len(rows), p=weights / weights.sum())
    merchant = np.empty(n, dtype=object)
    for c, (names, popularity, risk) in enumerate(catalog):
        for fraud in (False, True):
            rows = np.flatnonzero((category == c) & (is_fraud == fraud))
            weights = popularity * risk if fraud else popularity
            merchant[rows] = np.asarray(names, dtype=object)[rng.choice(len(names), size=len(rows), p=weights / weights.sum())]
    return category, merchant.tolist()
