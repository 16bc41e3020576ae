"""History features (lib/features/history.py): the vectorised code against a brute-force reading of
the definitions, serving equal to training, no leakage from a row's future, and sums whose
precision does not depend on how much older history is present."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import LABEL_COLUMN
from fraud_assets.lib.experimentation import feature_sets
from fraud_assets.lib.features.history import (
    CUSTOMER_FEATURES,
    HISTORY_DAYS,
    HISTORY_FEATURES,
    MICROS_PER_DAY,
    TERMINAL_FEATURES,
    customer_history_rows,
    history_features,
    serving_history_features,
    terminal_day_counts,
    timestamp_micros,
)
from fraud_assets.lib.seeding.world import world_history

BASE = pd.Timestamp("2026-01-05T00:00:00Z")
HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def transactions(rows: list[tuple], timestamps_as: str = "datetime") -> pd.DataFrame:
    """(customerId, merchant, timestamp or None, Amount, Class) tuples as a frame."""
    frame = pd.DataFrame(rows, columns=["customerId", "merchant", "timestamp", "Amount", LABEL_COLUMN])
    frame["customerId"] = frame["customerId"].astype(object)
    frame["merchant"] = frame["merchant"].astype(object)
    stamps = pd.Series(pd.to_datetime(frame["timestamp"], utc=True), dtype="datetime64[us, UTC]")
    if timestamps_as == "iso":
        frame["timestamp"] = [None if pd.isna(s) else s.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for s in stamps]
    else:
        frame["timestamp"] = stamps
    frame["Amount"] = frame["Amount"].astype("float64")
    frame[LABEL_COLUMN] = frame[LABEL_COLUMN].astype("int64")
    return frame


@st.composite
def history_frames(draw, max_rows: int = 60, days: int = 45):
    """Frames over several weeks with few customers and terminals, so windows of every length
    overlap; coarse time grids make same-instant ties; some customers, terminals and times missing."""
    n = draw(st.integers(1, max_rows))
    grid = draw(st.sampled_from([1, 600, 3600, 6 * 3600]))
    span = draw(st.sampled_from([2, 9, days]))  # days covered: 1 h/24 h windows need dense data, 30 d long data
    seconds = [s - s % grid for s in draw(st.lists(st.integers(0, span * 86_400 - 1), min_size=n, max_size=n))]
    rows = []
    for s in seconds:
        rows.append(
            (
                draw(st.sampled_from(["c1", "c2", "c3", None])),
                draw(st.sampled_from(["m1", "m2", "m3", None])),
                None if draw(st.integers(0, 15)) == 0 else BASE + pd.Timedelta(seconds=s),
                draw(st.floats(0.01, 5000) | st.sampled_from([0.0, 0.01, 12.5])),  # money: 0 or at least a cent
                draw(st.integers(0, 1)),
            )
        )
    return transactions(rows, draw(st.sampled_from(["datetime", "iso"])))


def brute_force(frame: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
    """The definitions read literally: O(n^2) loops over plain Python values."""
    micros = [None if m == np.iinfo(np.int64).min else int(m) for m in timestamp_micros(frame["timestamp"])]
    customers = [None if pd.isna(c) else str(c) for c in frame["customerId"]]
    merchants = [None if pd.isna(m) else str(m) for m in frame["merchant"]]
    amounts, labels = frame["Amount"].tolist(), frame[LABEL_COLUMN].tolist()
    windows = {"1h": 3_600_000_000, "24h": MICROS_PER_DAY, "7d": 7 * MICROS_PER_DAY, "30d": 30 * MICROS_PER_DAY}
    out = []
    for c, m, t, amount in zip(customers, merchants, micros, amounts):
        row = dict.fromkeys(HISTORY_FEATURES, math.nan)
        if c is not None and t is not None:
            inside = {
                name: [a for c2, t2, a in zip(customers, micros, amounts) if c2 == c and t2 is not None and t - w <= t2 <= t]
                for name, w in windows.items()
            }
            row["velocity_1h"], row["velocity_24h"] = len(inside["1h"]), len(inside["24h"])
            row["customer_tx_count_7d"], row["customer_tx_count_30d"] = len(inside["7d"]), len(inside["30d"])
            for n, key in (("1d", "24h"), ("7d", "7d"), ("30d", "30d")):
                row[f"customer_mean_amount_{n}d".replace("dd", "d")] = math.fsum(inside[key]) / len(inside[key])
            mean = row["customer_mean_amount_30d"]
            row["amount_to_customer_mean_30d"] = amount / mean if mean != 0 else math.nan
        if m is not None and t is not None:
            day = t // MICROS_PER_DAY
            for n in (1, 7, 30):
                first, last = day - label_delay_days - n, day - label_delay_days - 1
                frauds = [
                    y
                    for m2, t2, y in zip(merchants, micros, labels)
                    if m2 == m and t2 is not None and first <= t2 // MICROS_PER_DAY <= last
                ]
                row[f"terminal_tx_count_{n}d"] = len(frauds)
                row[f"terminal_risk_{n}d"] = sum(frauds) / len(frauds) if frauds else 0.0
        out.append(row)
    return pd.DataFrame(out, index=frame.index, columns=list(HISTORY_FEATURES), dtype="float64")


def assert_same(got: pd.DataFrame, expected: pd.DataFrame, atol: float = 1e-9) -> None:
    assert list(got.columns) == list(expected.columns) == list(HISTORY_FEATURES)
    assert got.index.equals(expected.index)
    assert (got.dtypes == "float64").all()
    for column in HISTORY_FEATURES:
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), rtol=0, atol=atol, equal_nan=True, err_msg=column)


def days_of(frame: pd.DataFrame) -> pd.Series:
    micros = timestamp_micros(frame["timestamp"])
    return pd.Series(np.where(micros == np.iinfo(np.int64).min, np.iinfo(np.int64).min, micros // MICROS_PER_DAY), index=frame.index)


# --------------------------------------------------------------------------- definitions


def test_feature_names_in_their_fixed_order():
    assert HISTORY_FEATURES == (
        "velocity_1h",
        "velocity_24h",
        "customer_tx_count_7d",
        "customer_tx_count_30d",
        "customer_mean_amount_1d",
        "customer_mean_amount_7d",
        "customer_mean_amount_30d",
        "amount_to_customer_mean_30d",
        "terminal_tx_count_1d",
        "terminal_risk_1d",
        "terminal_tx_count_7d",
        "terminal_risk_7d",
        "terminal_tx_count_30d",
        "terminal_risk_30d",
    )
    assert HISTORY_FEATURES == CUSTOMER_FEATURES + TERMINAL_FEATURES


def test_a_worked_example():
    t0 = BASE + pd.Timedelta(days=10, hours=12)
    frame = transactions(
        [
            ("a", "m", t0 - 9 * DAY, 10.0, 1),  # day 1: a fraud at m
            ("b", "m", t0 - 3 * DAY, 30.0, 0),  # day 7
            ("a", "m", t0 - 2 * HOUR, 20.0, 0),  # day 10, ...
            ("a", "n", t0, 60.0, 1),
            ("a", "m", t0, 30.0, 0),  # same instant as the row above: they count each other
            (None, "m", t0, 5.0, 0),
            ("a", None, None, 5.0, 0),
        ]
    )
    got = history_features(frame, label_delay_days=0)
    row = got.iloc[4]
    assert row["velocity_1h"] == 2 and row["velocity_24h"] == 3 and row["customer_tx_count_7d"] == 3
    assert row["customer_tx_count_30d"] == 4
    assert row["customer_mean_amount_1d"] == pytest.approx(110 / 3) and row["customer_mean_amount_30d"] == pytest.approx(30.0)
    assert row["amount_to_customer_mean_30d"] == pytest.approx(1.0)
    # Terminal m on day 10, L = 0: days 9 (none), 3..9 (b's), 0..9 (a's fraud and b's).
    assert (row["terminal_tx_count_1d"], row["terminal_risk_1d"]) == (0, 0.0)
    assert (row["terminal_tx_count_7d"], row["terminal_risk_7d"]) == (1, 0.0)
    assert (row["terminal_tx_count_30d"], row["terminal_risk_30d"]) == (2, 0.5)
    # L = 3: day 10 sees labelled days up to 6; the 7-day window 0..6 holds only a's fraud.
    delayed = history_features(frame, label_delay_days=3).iloc[4]
    assert (delayed["terminal_tx_count_7d"], delayed["terminal_risk_7d"]) == (1, 1.0)
    assert got.iloc[5][list(CUSTOMER_FEATURES)].isna().all() and got.iloc[5]["terminal_tx_count_30d"] == 2
    assert got.iloc[6].isna().all()


@SETTINGS
@given(history_frames(), st.sampled_from([0, 1, 3]))
def test_vectorised_equals_brute_force(frame, label_delay_days):
    assert_same(history_features(frame, label_delay_days), brute_force(frame, label_delay_days))


def test_many_customers_and_terminals_against_a_grouped_reference():
    rng = np.random.default_rng(0)
    n = 4000
    seconds = np.sort(rng.integers(0, 40 * 86_400, n)) // 60 * 60
    frame = pd.DataFrame(
        {
            "customerId": rng.integers(0, 300, n).astype(str).astype(object),
            "merchant": rng.integers(0, 50, n).astype(str).astype(object),
            "timestamp": (BASE + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us, UTC]"),
            "Amount": np.round(rng.lognormal(3, 1, n), 2),
            LABEL_COLUMN: (rng.random(n) < 0.1).astype("int64"),
        }
    ).sample(frac=1.0, random_state=1)  # row order must not matter
    got = history_features(frame, 2)
    micros = timestamp_micros(frame["timestamp"])
    for _, group in frame.assign(_t=micros).groupby("customerId"):
        t, amount = group["_t"].to_numpy(), group["Amount"].to_numpy()
        inside = (t[None, :] >= t[:, None] - 7 * MICROS_PER_DAY) & (t[None, :] <= t[:, None])
        assert got.loc[group.index, "customer_tx_count_7d"].tolist() == inside.sum(axis=1).tolist()
        np.testing.assert_allclose(
            got.loc[group.index, "customer_mean_amount_7d"], (inside * amount).sum(axis=1) / inside.sum(axis=1), rtol=1e-12
        )
    for _, group in frame.assign(_d=micros // MICROS_PER_DAY).groupby("merchant"):
        d, y = group["_d"].to_numpy(), group[LABEL_COLUMN].to_numpy()
        inside = (d[None, :] >= d[:, None] - 2 - 7) & (d[None, :] <= d[:, None] - 3)
        assert got.loc[group.index, "terminal_tx_count_7d"].tolist() == inside.sum(axis=1).tolist()
        frauds = (inside * y).sum(axis=1)
        expected = np.where(inside.sum(axis=1) > 0, frauds / np.maximum(inside.sum(axis=1), 1), 0.0)
        assert got.loc[group.index, "terminal_risk_7d"].tolist() == expected.tolist()


# --------------------------------------------------------------------------- serving = training


@SETTINGS
@given(history_frames(max_rows=80), st.sampled_from([0, 1, 2]), st.data())
def test_serving_a_day_equals_training_on_that_day(frame, label_delay_days, data):
    day = days_of(frame)
    timed = day[day != np.iinfo(np.int64).min]
    if timed.empty:
        return
    serving_day = data.draw(st.sampled_from(sorted(set(timed))))
    untimed = day == np.iinfo(np.int64).min
    batch = frame[(day == serving_day) | untimed].drop(columns=[LABEL_COLUMN])  # serving has no labels
    history = customer_history_rows(frame[(day >= serving_day - HISTORY_DAYS) & (day <= serving_day - 1)])
    counts = terminal_day_counts(frame[~untimed & (day <= serving_day - label_delay_days - 1)])
    got = serving_history_features(batch, history, counts, label_delay_days)
    assert_same(got, history_features(frame, label_delay_days).loc[batch.index])


def test_serving_reads_store_shaped_history():
    """The store hands back plain object arrays and a fresh index; counts of other terminals and
    days outside the windows are ignored."""
    frame = transactions(
        [("a", "m", BASE + DAY + HOUR, 10.0, 1), ("a", "m", BASE + 2 * DAY, 20.0, 0), ("a", "m", BASE + 2 * DAY + HOUR, 30.0, 0)]
    )
    history = customer_history_rows(frame.iloc[:1]).reset_index(drop=True).astype({"customerId": object})
    counts = pd.concat([terminal_day_counts(frame.iloc[:1]), pd.DataFrame({"merchant": ["z"], "day": [0], "tx": [5], "fraud": [5]})])
    batch = frame.iloc[1:].drop(columns=[LABEL_COLUMN]).set_index(pd.Index([10, 11]))
    got = serving_history_features(batch, history, counts, 0)
    assert got.index.tolist() == [10, 11]
    assert got["velocity_1h"].tolist() == [1, 2]
    assert got["velocity_24h"].tolist() == [2, 3]  # exactly 24 h earlier still counts: the window is closed
    assert got["customer_mean_amount_7d"].tolist() == [15.0, 20.0]
    assert got["terminal_tx_count_1d"].tolist() == [1, 1] and got["terminal_risk_1d"].tolist() == [1.0, 1.0]


# --------------------------------------------------------------------------- no leakage


@SETTINGS
@given(history_frames(max_rows=50), st.sampled_from([0, 1, 3]), st.data())
def test_nothing_after_a_row_changes_its_features(frame, label_delay_days, data):
    micros = pd.Series(timestamp_micros(frame["timestamp"]), index=frame.index)
    timed = micros[micros != np.iinfo(np.int64).min]
    if timed.empty:
        return
    cut = data.draw(st.sampled_from(sorted(set(timed))))
    day = cut // MICROS_PER_DAY
    before = frame.index[(micros != np.iinfo(np.int64).min) & (micros <= cut)]
    expected = history_features(frame, label_delay_days).loc[before]
    # Rows strictly after the cut: removed, or kept with everything about them changed.
    later = frame.index[micros > cut]
    if data.draw(st.booleans()):
        changed = frame.drop(index=later)
    else:
        changed = frame.copy()
        changed.loc[later, "Amount"] = 1e6
        changed.loc[later, "customerId"] = "c1"
        changed.loc[later, "merchant"] = "m1"
    # Labels of days >= day - L are not known yet on the cut's day.
    unknown = (micros // MICROS_PER_DAY >= day - label_delay_days) & (micros != np.iinfo(np.int64).min)
    unknown = unknown[unknown].index.intersection(changed.index)
    changed.loc[unknown, LABEL_COLUMN] = 1 - changed.loc[unknown, LABEL_COLUMN]
    assert_same(history_features(changed, label_delay_days).loc[before], expected)


# --------------------------------------------------------------------------- precision and edges


def test_window_sums_do_not_depend_on_older_or_other_history():
    """A customer's means are the same beside an enormous history (another customer's and its own
    older amounts of 1e9): per-row prefix-sum differences would be off by ~0.01 here."""
    rng = np.random.default_rng(3)
    recent = [
        ("small", "m", BASE + 60 * DAY + pd.Timedelta(minutes=int(k)), float(a), 0) for k, a in enumerate(rng.uniform(0, 1, 50).round(2))
    ]
    huge = [(c, "m", BASE + pd.Timedelta(seconds=int(k)), 1e9 + k, 0) for k in range(20_000) for c in ("big",)]
    old_own = [("small", "m", BASE + pd.Timedelta(seconds=int(k)), 1e9, 0) for k in range(20_000)]
    alone = history_features(transactions(recent), 0)
    crowded = history_features(transactions(huge + old_own + recent), 0).iloc[-len(recent) :].set_axis(alone.index)
    customer = [c for c in CUSTOMER_FEATURES]
    np.testing.assert_allclose(crowded[customer].to_numpy(), alone[customer].to_numpy(), rtol=1e-13, atol=1e-13)


def test_numpy_cumsum_is_sequential():
    """_window_sums recovers each cumsum step's rounding error with TwoSum, which needs every step
    to be exactly fl(previous + value): np.cumsum must add left to right, not pairwise."""
    values = np.random.default_rng(5).lognormal(5, 4, 100_000)
    high = np.cumsum(values)
    assert np.array_equal(high[1:], high[:-1] + values[1:])


def test_a_non_finite_amount_spoils_only_its_own_windows():
    frame = transactions(
        [
            ("a", "m", BASE, 1.0, 0),
            ("a", "m", BASE + HOUR, float("nan"), 0),
            ("b", "m", BASE + 2 * HOUR, 4.0, 0),
            ("a", "m", BASE + 3 * DAY, 2.0, 0),
        ]
    )
    got = history_features(frame, 0)
    assert got["customer_mean_amount_1d"].tolist()[0] == 1.0 and math.isnan(got["customer_mean_amount_1d"].iloc[1])
    assert got["customer_mean_amount_1d"].tolist()[2:] == [4.0, 2.0]
    assert math.isnan(got["customer_mean_amount_7d"].iloc[3]) and got["velocity_24h"].tolist() == [1, 2, 1, 1]


def test_zero_mean_gives_no_ratio():
    got = history_features(transactions([("a", "m", BASE, 0.0, 0), ("a", "m", BASE + HOUR, 0.0, 0)]), 0)
    assert got["customer_mean_amount_30d"].tolist() == [0.0, 0.0] and got["amount_to_customer_mean_30d"].isna().all()


def test_timestamps_strings_and_naive_datetimes_are_utc():
    frame = transactions([("c", "m", BASE, 1.0, 0)] * 3)
    frame["timestamp"] = ["2026-01-15T10:00:00Z", "2026-01-15T12:30:00+02:00", "2026-01-15T10:59:59"]
    assert history_features(frame, 0)["velocity_1h"].tolist() == [1, 2, 3]
    naive = frame.assign(timestamp=pd.to_datetime(["2026-01-15 10:00:00", "2026-01-15 10:30:00", "2026-01-15 10:59:59"]))
    assert history_features(naive, 0)["velocity_1h"].tolist() == [1, 2, 3]


def test_store_rows_and_counts_have_their_shapes():
    frame = transactions(
        [
            ("a", "m", BASE, 1.5, 1),
            (None, "m", BASE, 2.0, 0),
            ("b", None, BASE + DAY, 3.0, 1),
            ("c", "n", None, 4.0, 1),
            ("a", "m", BASE + HOUR, 5.0, 0),
        ]
    ).set_index(pd.Index([7, 8, 9, 10, 11]))
    rows = customer_history_rows(frame)
    assert rows.index.tolist() == [7, 9, 11] and rows["customerId"].tolist() == ["a", "b", "a"]
    assert rows["micros"].dtype == "int64" and rows["Amount"].dtype == "float64"
    assert rows["micros"].tolist()[0] == BASE.value // 1000
    counts = terminal_day_counts(frame)
    assert list(counts.columns) == ["merchant", "day", "tx", "fraud"]
    assert counts.to_dict("list") == {"merchant": ["m"], "day": [BASE.value // 1000 // MICROS_PER_DAY], "tx": [3], "fraud": [1]}
    assert [str(t) for t in counts.dtypes.tolist()[1:]] == ["int64", "int64", "int64"]


def test_empty_frames_and_bad_delay():
    empty = transactions([])
    assert list(history_features(empty, 0).columns) == list(HISTORY_FEATURES) and history_features(empty, 0).empty
    assert terminal_day_counts(empty).empty and customer_history_rows(empty).empty
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="label_delay_days"):
            history_features(empty, bad)


def test_the_experiments_history_feature_set_uses_the_label_delay_it_is_given():
    # tuning_experiment passes the FeatureEngineering resource's label delay: the history set a
    # trial trains on must be the features training computes with that delay.
    frame = world_history("2026-01-01", days=12, transactions_per_day=300, seed=3)
    cut = 9 * 300
    got = {}
    for delay in (0, 3):
        train, validation, names = feature_sets.build("history", frame.iloc[:cut], frame.iloc[cut:], label_delay_days=delay)
        want = history_features(frame, delay)
        assert set(HISTORY_FEATURES) <= set(names)
        for part, rows in ((train, slice(0, cut)), (validation, slice(cut, None))):
            np.testing.assert_array_equal(
                part[list(HISTORY_FEATURES)].to_numpy(), want[list(HISTORY_FEATURES)].iloc[rows].to_numpy(dtype=np.float32)
            )
        got[delay] = validation["terminal_tx_count_7d"].to_numpy()
    assert not np.array_equal(got[0], got[3])  # the delay moves the terminals' window
