"""The simulated world: customers and terminals, the history-only fraud scenarios, one timeline from
the training history into the daily batches, and today's batch format."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import DEFAULT_FIRST_DAY, FEATURE_COLUMNS, LABEL_COLUMN
from fraud_assets.lib.seeding import world as W
from fraud_assets.lib.seeding.synthetic import DRIFT_KINDS, SECONDS_PER_DAY, batch_to_json_bytes, generate_daily_batch
from fraud_assets.lib.seeding.world import (
    BURST_SECONDS,
    CARD_COMPROMISE_DAYS,
    HIGH_AMOUNT_FACTOR,
    SCENARIO_COLUMN,
    SCENARIOS,
    TERMINAL_COMPROMISE_DAYS,
    WORLD_HISTORY_COLUMNS,
    build_world,
    compromised_cards,
    compromised_terminals,
    world_history,
    world_labelled_daily_batch,
)

SEED = 11
START = "2025-09-01"
DAYS = 90
PER_DAY = 3_000
LEGIT_ONLY_SCENARIOS = ("high_amount", "compromised_terminal", "compromised_card")


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    frame = world_history(START, DAYS, PER_DAY, seed=SEED)
    frame["date"] = frame["timestamp"].str[:10]
    frame["customer"] = frame["customerId"].str[5:].astype(int) - 100_000
    return frame


def day(offset: int, start: str = START) -> dt.date:
    return dt.date.fromisoformat(start) + dt.timedelta(days=offset)


# --------------------------------------------------------------------------- shape and determinism


def test_history_columns_order_and_truth(history):
    assert list(history.columns[: len(WORLD_HISTORY_COLUMNS) + 1]) == [*WORLD_HISTORY_COLUMNS, SCENARIO_COLUMN]
    assert len(history) == DAYS * PER_DAY and history["transactionId"].is_unique
    assert history["transactionId"].iloc[0] == f"TXN-{START}-000001"
    assert history["timestamp"].is_monotonic_increasing  # time-ordered, across days too
    assert all(history[c].dtype == np.float64 for c in FEATURE_COLUMNS) and history[LABEL_COLUMN].dtype == np.int64
    stamps = pd.to_datetime(history["timestamp"], format="%Y-%m-%dT%H:%M:%SZ")
    seconds = (stamps - stamps.dt.normalize()).dt.total_seconds()
    assert (seconds == history["Time"]).all()  # Time is the second of the day, as in the batches
    assert ((history[SCENARIO_COLUMN] != "") == (history[LABEL_COLUMN] == 1)).all()
    assert set(history[SCENARIO_COLUMN]) == set(SCENARIOS) - {"new_pattern"}  # no drift in the history
    assert (history["Amount"] >= 0).all() and np.isfinite(history[list(FEATURE_COLUMNS)].to_numpy()).all()


def test_same_seed_same_world_other_seed_other_world():
    pd.testing.assert_frame_equal(world_history(START, 2, 300, seed=3), world_history(START, 2, 300, seed=3))
    assert not world_history(START, 2, 300, seed=3).equals(world_history(START, 2, 300, seed=4))
    a, b = world_labelled_daily_batch(DEFAULT_FIRST_DAY, 400, seed=3), world_labelled_daily_batch(DEFAULT_FIRST_DAY, 400, seed=3)
    assert a.records == b.records and (a.is_fraud == b.is_fraud).all() and (a.scenario == b.scenario).all()
    assert world_labelled_daily_batch(DEFAULT_FIRST_DAY, 400, seed=4).records != a.records


def test_fraud_rate_and_every_scenario(history):
    assert 0.005 <= history[LABEL_COLUMN].mean() <= 0.012  # the handbook's ~0.8%
    share = history[SCENARIO_COLUMN].value_counts(normalize=True)
    for scenario in ("component", *LEGIT_ONLY_SCENARIOS):
        assert 0.0005 < share[scenario] < 0.005, (scenario, share[scenario])


# --------------------------------------------------------------------------- customers and terminals


def test_customers_recur_and_each_merchant_is_one_terminal(history):
    per_customer = history.groupby("customerId")["date"].nunique()
    assert per_customer.median() >= 20  # the same cards, day after day
    assert history.groupby("merchant")["category"].nunique().max() == 1
    assert history["merchant"].str.match(r"^T-\d{5} ").all()
    world = build_world(SEED)
    assert len(set(world.merchants)) == len(world.merchants)
    assert ((world.customer_xy >= 0) & (world.customer_xy <= 100)).all() and (world.std_amount > 0).all()


def test_customers_spend_near_home_by_their_habit(history):
    world = build_world(SEED)
    own = history[history[SCENARIO_COLUMN] == ""]
    terminal = own["merchant"].str[2:7].astype(int).to_numpy()
    distance = np.hypot(*(world.customer_xy[own["customer"].to_numpy()] - world.terminal_xy[terminal]).T)
    assert np.quantile(distance, 0.999) <= 5.0 + 1e-9
    # A customer's average spend is their profile's mean amount.
    spend = own[own["Amount"] > 0].groupby("customer")["Amount"].agg(["mean", "size"])
    busy = spend[spend["size"] >= 100]
    ratio = busy["mean"] / world.mean_amount[busy.index.to_numpy()]
    assert ratio.median() == pytest.approx(1.0, abs=0.05)


# --------------------------------------------------------------------------- the scenarios


def test_compromised_terminals_defraud_every_card_for_28_days(history):
    world = build_world(SEED)
    for offset in range(DAYS):
        rows = history[history["date"] == day(offset).isoformat()]
        hit = rows["merchant"].isin(world.merchants[compromised_terminals(day(offset), SEED)])
        assert rows.loc[hit, LABEL_COLUMN].all()  # every transaction on them is fraud
        assert (rows.loc[rows[SCENARIO_COLUMN] == "compromised_terminal"].index.isin(rows.index[hit])).all()
    # A terminal compromised on one day stays so for exactly 28 days.
    start = day(10)
    first = [t for t in compromised_terminals(start, SEED) if t not in compromised_terminals(start - dt.timedelta(days=1), SEED)]
    assert first
    for t in first:
        active = [t in compromised_terminals(start + dt.timedelta(days=k), SEED) for k in range(TERMINAL_COMPROMISE_DAYS + 1)]
        assert all(active[:TERMINAL_COMPROMISE_DAYS])
    window = history[history["merchant"].isin(world.merchants[first]) & (history["date"] >= start.isoformat())]
    inside = window["date"] < (start + dt.timedelta(days=TERMINAL_COMPROMISE_DAYS)).isoformat()
    assert inside.sum() >= 10 and window.loc[inside, LABEL_COLUMN].all()


def test_compromised_cards_come_in_bursts_within_an_hour(history):
    card = history[history[SCENARIO_COLUMN] == "compromised_card"]
    for date, rows in card.groupby("date"):
        assert set(rows["customer"]) <= set(compromised_cards(dt.date.fromisoformat(date), SEED).tolist())
    # Every fraudulent use has another one on the same card within the hour: what velocity sees.
    neighbours = card.assign(t=_seconds(card)).groupby("customer")["t"].transform(lambda t: _within(t.to_numpy(), BURST_SECONDS))
    assert (neighbours >= 1).all()
    legit = history[history[SCENARIO_COLUMN] == ""].sample(20_000, random_state=0)
    same_card_hour = history.assign(t=_seconds(history)).groupby("customer")["t"].transform(lambda t: _within(t.to_numpy(), BURST_SECONDS))
    assert same_card_hour[legit.index].mean() < 0.3 < 2.0 < neighbours.mean()
    # A card is compromised for 14 days.
    start = day(20)
    new = set(compromised_cards(start, SEED).tolist()) - set(compromised_cards(start - dt.timedelta(days=1), SEED).tolist())
    assert new
    for c in new:
        assert all(c in compromised_cards(start + dt.timedelta(days=k), SEED) for k in range(CARD_COMPROMISE_DAYS))


def _seconds(frame: pd.DataFrame) -> pd.Series:
    return (pd.to_datetime(frame["date"]) - pd.Timestamp(START)).dt.days * SECONDS_PER_DAY + frame["Time"]


def _within(t: np.ndarray, span: int) -> np.ndarray:
    """Per row, how many other rows of the group fall within `span` seconds of it."""
    order = np.sort(t)
    return np.searchsorted(order, t + span, side="right") - np.searchsorted(order, t - span, side="left") - 1


def test_high_amount_fraud_is_far_above_the_cards_habit(history):
    world = build_world(SEED)
    habit = world.mean_amount[history["customer"].to_numpy()]
    ratio = history["Amount"].to_numpy() / habit
    high = (history[SCENARIO_COLUMN] == "high_amount").to_numpy()
    low, top = HIGH_AMOUNT_FACTOR
    assert (history["Amount"].to_numpy()[high] >= low * habit[high] - 0.01).all()
    assert (ratio[high] <= top + 0.01).all()
    assert (ratio[~high & (history[SCENARIO_COLUMN] == "").to_numpy()] >= low).mean() < 0.01  # rare in genuine spending


def test_scenario_fraud_looks_legitimate_in_the_components(history):
    legit = history[history[SCENARIO_COLUMN] == ""]
    for scenario in LEGIT_ONLY_SCENARIOS:
        rows = history[history[SCENARIO_COLUMN] == scenario]
        for column in ("V14", "V12", "V17", "V10"):
            se = np.sqrt(legit[column].var() / len(legit) + rows[column].var() / len(rows))
            z = (rows[column].mean() - legit[column].mean()) / se
            assert abs(z) < 4, (scenario, column, z)
            assert rows[column].std() == pytest.approx(legit[column].std(), rel=0.2)
    component = history[history[SCENARIO_COLUMN] == "component"]
    assert (component["V14"].mean() - legit["V14"].mean()) / legit["V14"].std() < -2  # the fraud a model sees


# --------------------------------------------------------------------------- daily batches


def test_history_continues_into_the_daily_batches():
    first = dt.date.fromisoformat(DEFAULT_FIRST_DAY)
    before = world_history((first - dt.timedelta(days=2)).isoformat(), 3, 2_000, seed=SEED)
    batch = world_labelled_daily_batch(DEFAULT_FIRST_DAY, 2_000, seed=SEED)
    last = before[before["timestamp"].str.startswith(DEFAULT_FIRST_DAY)]
    # The history's day is the batch's day: one timeline, whichever side of the boundary.
    assert last["transactionId"].tolist() == [r["id"] for r in batch.records]
    for column, key in (("timestamp", "timestamp"), ("customerId", "customerId"), ("merchant", "merchant"), ("category", "category")):
        assert last[column].tolist() == [r[key] for r in batch.records]
    assert last[list(FEATURE_COLUMNS)].to_numpy().tolist() == [[r["features"][c] for c in FEATURE_COLUMNS] for r in batch.records]
    assert last[LABEL_COLUMN].tolist() == batch.is_fraud.astype(int).tolist()
    assert last[SCENARIO_COLUMN].tolist() == batch.scenario.tolist()


def test_compromises_started_in_the_history_continue_after_it():
    first = dt.date.fromisoformat(DEFAULT_FIRST_DAY)
    carried = set(compromised_terminals(first - dt.timedelta(days=1), SEED).tolist()) & set(compromised_terminals(first, SEED).tolist())
    assert carried
    merchants = set(build_world(SEED).merchants[sorted(carried)])
    batch = world_labelled_daily_batch(DEFAULT_FIRST_DAY, 10_000, seed=SEED)
    hits = [fraud for record, fraud in zip(batch.records, batch.is_fraud.tolist()) if record["merchant"] in merchants]
    assert hits and all(hits)


def test_records_are_todays_daily_batch_format():
    batch = world_labelled_daily_batch(DEFAULT_FIRST_DAY, 1_000, seed=SEED)
    today = generate_daily_batch(DEFAULT_FIRST_DAY, 10, seed=SEED)
    assert len(batch.records) == len(batch.is_fraud) == len(batch.scenario) == 1_000
    for record in batch.records:
        assert set(record) == set(today[0]) and list(record["features"]) == list(today[0]["features"])
        stamp = dt.datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        assert stamp.hour * 3600 + stamp.minute * 60 + stamp.second == record["features"]["Time"] < SECONDS_PER_DAY
        assert record["amount"] == record["features"]["Amount"]
        assert record["customerId"].startswith("CUST-1")
    assert [r["timestamp"] for r in batch.records] == sorted(r["timestamp"] for r in batch.records)
    assert json.loads(batch_to_json_bytes(batch.records)) == batch.records


def test_drift_kinds_act_on_world_days():
    calm = world_labelled_daily_batch(DEFAULT_FIRST_DAY, 4_000, seed=SEED)
    shift = world_labelled_daily_batch(DEFAULT_FIRST_DAY, 4_000, seed=SEED, drift=1.0, drift_kind="shift")
    new = world_labelled_daily_batch(DEFAULT_FIRST_DAY, 4_000, seed=SEED, drift=1.0, drift_kind="new-pattern")
    assert (shift.scenario == "component").sum() > 20 * max(1, (calm.scenario == "component").sum())
    assert (new.scenario == "new_pattern").sum() > 40 and new.is_fraud[new.scenario == "new_pattern"].all()
    assert np.mean([r["amount"] for r in shift.records]) > 1.3 * np.mean([r["amount"] for r in calm.records])
    assert "new_pattern" not in set(calm.scenario) | set(shift.scenario)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_transactions"):
        world_labelled_daily_batch(DEFAULT_FIRST_DAY, -1)
    with pytest.raises(ValueError, match="drift"):
        world_labelled_daily_batch(DEFAULT_FIRST_DAY, 10, drift=1.5)
    with pytest.raises(ValueError, match="drift kind"):
        world_labelled_daily_batch(DEFAULT_FIRST_DAY, 10, drift=0.5, drift_kind="sideways")
    with pytest.raises(ValueError, match="date"):
        world_labelled_daily_batch("2026-13-01", 10)
    with pytest.raises(ValueError, match="days"):
        world_history(START, -1, 10)
    assert len(world_history(START, 0, 10)) == 0 and list(world_history(START, 0, 10).columns) == [*WORLD_HISTORY_COLUMNS, SCENARIO_COLUMN]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 80),
    seed=st.integers(0, 2**32 - 1),
    drift=st.floats(0.0, 1.0),
    kind=st.sampled_from(DRIFT_KINDS),
    date=st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)),
)
def test_any_small_world_day_is_well_formed(n, seed, drift, kind, date):
    batch = world_labelled_daily_batch(date.isoformat(), n, seed=seed % 4, drift=drift, drift_kind=kind)
    assert len(batch.records) == n and len({r["id"] for r in batch.records}) == n
    assert set(batch.scenario.tolist()) <= set(SCENARIOS)
    # Exactly one scenario per fraud, none for genuine spending.
    assert (batch.is_fraud == (batch.scenario != "")).all()
    assert all(r["amount"] >= 0 and np.isfinite(list(r["features"].values())).all() for r in batch.records)


def test_world_cache_is_read_only():
    world = build_world(SEED)
    with pytest.raises(ValueError):
        world.mean_amount[0] = 1.0
    assert W.build_world(SEED) is world
