"""A simulated world of customers and terminals, after the transaction data simulator of
"Reproducible Machine Learning for Credit Card Fraud Detection" (Le Borgne et al.), with fraud that
only a card's or a terminal's history reveals.

- Customers (`CUST-<100000 + i>`, as the daily batches name them) live at a home (x, y) in
  [0, 100]^2, spend log-normal amounts with their own mean and standard deviation, and make a share
  of each day's transactions in proportion to their mean transactions per day (which sum to the
  world's nominal daily volume). They use the terminals within a radius of home, by the category mix
  of the amount's tier (synthetic.py's: small amounts at grocers and cafes, large ones in travel).
- Terminals are the merchants: a unique name (`T-00042 Harbor Grocery`), a location and a category.
- Every transaction carries the model's feature vector as today's batches do (synthetic.py's
  component generator). Its "component" fraud, visible in V14, V12, ..., stays at the base rate, so
  a model without history still catches some fraud.
- Three scenarios look legitimate in V1..V28; only history reveals them:
  high_amount: single transactions at 5-10x the card's mean amount;
  compromised_terminal: each day a few terminals are compromised for 28 days, and every transaction
  on them in that time is fraud;
  compromised_card: each day a few cards are compromised for 14 days, and the fraudster uses them in
  bursts (several transactions within an hour) at terminals anywhere.
- Drift ("shift", "new-pattern") acts on a world day as on today's batches.

Deterministic for (seed, date): the world depends on the seed; the compromises that start on a day
are drawn from that day's own generator, so any day recomputes the ones active on it, and the
training history and the daily batches are one timeline. Fraud is ~0.8% of transactions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from fraud_assets.lib.config import LABEL_COLUMN, RAW_COLUMNS
from fraud_assets.lib.seeding.synthetic import (
    _AMOUNT_TIERS,
    _CATEGORIES,
    _CATEGORY_MIX_BY_TIER,
    _DRIFT_EXTRA_FRAUD_SHARE,
    _MAX_AMOUNT,
    _PLACES,
    _ZERO_AMOUNT_SHARE,
    CATEGORY_NAMES,
    DEFAULT_DRIFT_KIND,
    DEFAULT_FRAUD_RATE,
    DEFAULT_SEED,
    SECONDS_PER_DAY,
    LabelledBatch,
    _add_new_pattern,
    _amounts,
    _check_drift,
    _components,
    _time_of_day,
    apply_drift,
    batch_records,
    customer_ids,
    parse_iso_date,
    timestamps,
    transaction_ids,
)

DEFAULT_CUSTOMERS = 5_000
DEFAULT_TERMINALS = 10_000
_SIDE = 100.0  # customers and terminals live in [0, _SIDE]^2
_RADIUS = 5.0  # customers use the terminals within this distance of home (~78 of them)
_MEAN_TX_PER_DAY = (0.0, 4.0)  # uniform, as the handbook: the world's nominal volume ~2 per customer
_MEAN_AMOUNT_LOG_MEDIAN = math.log(35.0)  # customers' mean amounts: log-normal, a wide spread of habits
_MEAN_AMOUNT_LOG_SIGMA = 1.1
_MEAN_AMOUNT_RANGE = (2.0, 1_500.0)  # so that 10x the largest habit stays below the amount cap
_AMOUNT_CV = (0.3, 0.8)  # a customer's std amount / mean amount
_TERMINAL_POPULARITY_SIGMA = 0.5

# Scenario codes; SCENARIOS[code] is the name in the labelled output ("" = legitimate).
SCENARIOS: tuple[str, ...] = ("", "component", "high_amount", "compromised_terminal", "compromised_card", "new_pattern")
_LEGIT, _COMPONENT, _HIGH_AMOUNT, _TERMINAL, _CARD, _NEW_PATTERN = range(len(SCENARIOS))

# Scenario rates, tuned for ~0.8% fraud overall (the handbook's): component 0.17%, high_amount
# ~0.1%, compromised_terminal ~0.28%, compromised_card ~0.28%.
_HIGH_AMOUNT_RATE = 0.001  # per customer transaction
HIGH_AMOUNT_FACTOR = (5.0, 10.0)  # the fraudulent amount over the card's mean amount
TERMINAL_COMPROMISE_DAYS = 28
_TERMINAL_COMPROMISE_RATE = 1e-4  # new compromises per terminal per day (1 a day in 10,000)
CARD_COMPROMISE_DAYS = 14
_CARD_COMPROMISE_RATE = 2e-4  # new compromises per card per day (1 a day in 5,000)
_BURSTS_PER_CARD_DAY = 0.5  # bursts a compromised card sees a day at the nominal volume
_BURST_EXTRA_SIZE = 2.0  # a burst is 2 + Poisson(this) transactions
BURST_SECONDS = 3_600  # a burst's transactions all fall within this span

# Independent random streams per purpose, so a day's compromises are redrawn without its transactions.
_WORLD_STREAM, _DAY_STREAM, _TERMINAL_STREAM, _CARD_STREAM = 0x3011D, 0xDA7, 0x7E3, 0xCA4D

WORLD_HISTORY_COLUMNS: tuple[str, ...] = ("transactionId", "timestamp", "customerId", "merchant", "category", *RAW_COLUMNS)
SCENARIO_COLUMN = "scenario"  # truth only, like Class: never in what is sent for scoring or training


@dataclasses.dataclass(frozen=True, eq=False)
class World:
    """Customers and terminals for a seed. Customer i is `CUST-<100000 + i>`; terminal j is
    merchants[j]. `neighbours[neighbour_start[i]:neighbour_start[i + 1]]` are the terminals customer
    i uses; `_tier_weight_cumsum[t]` is the running sum over that flat list of each terminal's weight
    for amount tier t, for a vectorised weighted choice per customer."""

    customer_xy: np.ndarray
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_tx_per_day: np.ndarray
    terminal_xy: np.ndarray
    terminal_category: np.ndarray  # index into CATEGORY_NAMES
    merchants: np.ndarray  # unique names, object array
    neighbour_start: np.ndarray
    neighbours: np.ndarray
    _tier_weight_cumsum: np.ndarray

    @property
    def volume(self) -> float:
        """Transactions a day at which customers make their mean transactions per day."""
        return float(self.mean_tx_per_day.sum())


@functools.lru_cache(maxsize=4)
def build_world(seed: int = DEFAULT_SEED, customers: int = DEFAULT_CUSTOMERS, terminals: int = DEFAULT_TERMINALS) -> World:
    """The seed's customers and terminals (cached: every day of a history uses the same world)."""
    if customers < 1 or terminals < 1:
        raise ValueError(f"a world needs customers and terminals, got {customers} and {terminals}")
    rng = np.random.default_rng([seed, _WORLD_STREAM])
    customer_xy = rng.uniform(0.0, _SIDE, size=(customers, 2))
    mean_amount = np.clip(np.exp(rng.normal(_MEAN_AMOUNT_LOG_MEDIAN, _MEAN_AMOUNT_LOG_SIGMA, size=customers)), *_MEAN_AMOUNT_RANGE)
    std_amount = mean_amount * rng.uniform(*_AMOUNT_CV, size=customers)
    mean_tx_per_day = rng.uniform(*_MEAN_TX_PER_DAY, size=customers)

    terminal_xy = rng.uniform(0.0, _SIDE, size=(terminals, 2))
    category_share = _CATEGORY_MIX_BY_TIER.sum(axis=0)
    terminal_category = rng.choice(len(CATEGORY_NAMES), size=terminals, p=category_share / category_share.sum())
    places = rng.integers(0, len(_PLACES), size=terminals)
    stems = rng.integers(0, 1 << 30, size=terminals)
    category_stems = [stems_ for stems_, _ in _CATEGORIES.values()]
    merchants = np.array(
        [
            f"T-{j:05d} {_PLACES[p]} {category_stems[c][s % len(category_stems[c])]}"
            for j, (p, c, s) in enumerate(zip(places.tolist(), terminal_category.tolist(), stems.tolist()))
        ],
        dtype=object,
    )
    popularity = rng.lognormal(0.0, _TERMINAL_POPULARITY_SIGMA, size=terminals)

    neighbour_start, neighbours = _neighbours(customer_xy, terminal_xy)
    weights = _CATEGORY_MIX_BY_TIER[:, terminal_category[neighbours]] * popularity[neighbours]
    world = World(
        customer_xy,
        mean_amount,
        std_amount,
        mean_tx_per_day,
        terminal_xy,
        terminal_category,
        merchants,
        neighbour_start,
        neighbours,
        np.cumsum(weights, axis=1),
    )
    for field in dataclasses.fields(world):  # shared through the cache: nobody may change it
        getattr(world, field.name).flags.writeable = False
    return world


def _neighbours(customer_xy: np.ndarray, terminal_xy: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per customer the terminals within _RADIUS (the nearest one when none is), as CSR arrays."""
    counts, lists = [], []
    for lo in range(0, len(customer_xy), chunk):
        block = customer_xy[lo : lo + chunk]
        d2 = (block[:, :1] - terminal_xy[:, 0]) ** 2 + (block[:, 1:] - terminal_xy[:, 1]) ** 2
        rows, cols = np.nonzero(d2 <= _RADIUS**2)  # row-major: grouped by customer already
        lonely = np.setdiff1d(np.arange(len(d2)), rows)
        if len(lonely):
            rows = np.concatenate([rows, lonely])
            cols = np.concatenate([cols, np.argmin(d2[lonely], axis=1)])
            by_row = np.argsort(rows, kind="stable")
            rows, cols = rows[by_row], cols[by_row]
        counts.append(np.bincount(rows, minlength=len(d2)))
        lists.append(cols)
    start = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return start.astype(np.int64), np.concatenate(lists).astype(np.int64)


@functools.lru_cache(maxsize=256)
def _compromised(seed: int, ordinal: int, stream: int, population: int, rate: float) -> np.ndarray:
    """The cards or terminals whose compromise starts on the day `ordinal`: from that day's own
    stream, so every later day recomputes them."""
    rng = np.random.default_rng([seed, stream, ordinal])
    count = min(population, int(rng.poisson(rate * population)))
    drawn = np.sort(rng.choice(population, size=count, replace=False))
    drawn.flags.writeable = False  # shared through the cache
    return drawn


def _active(seed: int, day: dt.date, stream: int, population: int, rate: float, days: int) -> np.ndarray:
    """Compromises active on `day`: one entry per compromise started in the last `days` days."""
    ordinal = day.toordinal()
    return np.concatenate([_compromised(seed, o, stream, population, rate) for o in range(ordinal - days + 1, ordinal + 1)])


def compromised_terminals(day: dt.date, seed: int = DEFAULT_SEED, world: World | None = None) -> np.ndarray:
    """Terminal indices compromised on `day` (each fraudulent for TERMINAL_COMPROMISE_DAYS)."""
    world = world or build_world(seed)
    return np.unique(_active(seed, day, _TERMINAL_STREAM, len(world.merchants), _TERMINAL_COMPROMISE_RATE, TERMINAL_COMPROMISE_DAYS))


def compromised_cards(day: dt.date, seed: int = DEFAULT_SEED, world: World | None = None) -> np.ndarray:
    """Customer indices whose card is compromised on `day` (for CARD_COMPROMISE_DAYS)."""
    world = world or build_world(seed)
    return np.unique(_active(seed, day, _CARD_STREAM, len(world.mean_amount), _CARD_COMPROMISE_RATE, CARD_COMPROMISE_DAYS))


class _Day(NamedTuple):
    """One world day's transactions in time order, drift applied; arrays aligned by row."""

    time: np.ndarray
    components: np.ndarray
    amount: np.ndarray
    customer: np.ndarray  # customer index
    terminal: np.ndarray  # terminal index
    scenario: np.ndarray  # SCENARIOS code

    @property
    def is_fraud(self) -> np.ndarray:
        return self.scenario != _LEGIT


def _world_day(world: World, seed: int, day: dt.date, n: int, drift: float, drift_kind: str) -> _Day:
    _check_drift(drift, drift_kind)
    if n < 0:
        raise ValueError(f"n_transactions must be >= 0, got {n}")
    rng = np.random.default_rng([seed, _DAY_STREAM, day.toordinal()])
    scale = n / world.volume  # the day's volume against the nominal one

    # The fraudsters' bursts on compromised cards: extra transactions, at terminals anywhere.
    cards = _active(seed, day, _CARD_STREAM, len(world.mean_amount), _CARD_COMPROMISE_RATE, CARD_COMPROMISE_DAYS)
    bursts = np.repeat(cards, rng.poisson(_BURSTS_PER_CARD_DAY * scale, size=len(cards)))
    burst_size = 2 + rng.poisson(_BURST_EXTRA_SIZE, size=len(bursts))
    burst_start = rng.integers(0, SECONDS_PER_DAY - BURST_SECONDS, size=len(bursts))
    burst_of = np.repeat(np.arange(len(bursts)), burst_size)[:n]  # a tiny day holds only so many
    n_burst = len(burst_of)
    burst_time = (burst_start[burst_of] + rng.integers(0, BURST_SECONDS, size=n_burst)).astype(np.float64)
    burst_terminal = rng.integers(0, len(world.merchants), size=n_burst)

    # The customers' own spending, by their habits, at terminals near home.
    m = n - n_burst
    customer = np.concatenate([rng.choice(len(world.mean_amount), size=m, p=world.mean_tx_per_day / world.volume), bursts[burst_of]])
    amount = _habitual_amounts(rng, world, customer)
    amount[:m][rng.random(m) < _ZERO_AMOUNT_SHARE] = 0.0
    terminal = np.concatenate([_terminals_near_home(rng, world, customer[:m], amount[:m]), burst_terminal])

    scenario = np.full(n, _LEGIT, dtype=np.int8)
    scenario[m:] = _CARD
    on_compromised = np.isin(
        terminal, _active(seed, day, _TERMINAL_STREAM, len(world.merchants), _TERMINAL_COMPROMISE_RATE, TERMINAL_COMPROMISE_DAYS)
    )
    scenario[:m][on_compromised[:m]] = _TERMINAL
    free = scenario == _LEGIT
    extra = drift * _DRIFT_EXTRA_FRAUD_SHARE if drift_kind == "shift" else 0.0
    component = free & (rng.random(n) < min(1.0, DEFAULT_FRAUD_RATE + extra))
    scenario[component] = _COMPONENT
    amount[component] = _amounts(rng, np.ones(int(component.sum()), dtype=bool))
    high = (scenario == _LEGIT) & (rng.random(n) < _HIGH_AMOUNT_RATE)
    scenario[high] = _HIGH_AMOUNT
    amount[high] = np.round(world.mean_amount[customer[high]] * rng.uniform(*HIGH_AMOUNT_FACTOR, size=int(high.sum())), 2)

    time = np.concatenate([_time_of_day(rng, component[:m]), burst_time])
    # Only component fraud moves in V1..V28: the scenarios' rows are drawn as legitimate ones.
    components = _components(rng, component, amount)
    if drift_kind == "new-pattern" and drift > 0:
        truth = _add_new_pattern(rng, components, scenario != _LEGIT, drift)
        scenario[truth & (scenario == _LEGIT)] = _NEW_PATTERN
    components, amount = apply_drift(components, amount, drift)

    order = np.argsort(time, kind="stable")
    return _Day(time[order], components[order], amount[order], customer[order], terminal[order], scenario[order])


def _habitual_amounts(rng: np.random.Generator, world: World, customer: np.ndarray) -> np.ndarray:
    """Log-normal amounts with each customer's mean and standard deviation."""
    cv2 = (world.std_amount[customer] / world.mean_amount[customer]) ** 2
    sigma = np.sqrt(np.log1p(cv2))
    mu = np.log(world.mean_amount[customer]) - sigma**2 / 2
    return np.round(np.minimum(np.exp(mu + sigma * rng.standard_normal(len(customer))), _MAX_AMOUNT), 2)


def _terminals_near_home(rng: np.random.Generator, world: World, customer: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """A terminal per transaction among the customer's neighbours, weighted for the amount's tier:
    a uniform draw into the customer's stretch of the tier's running weight sum."""
    tier = np.searchsorted(_AMOUNT_TIERS, amount, side="right")
    cumsum = world._tier_weight_cumsum
    start, stop = world.neighbour_start[customer], world.neighbour_start[customer + 1]
    before = np.where(start > 0, cumsum[tier, np.maximum(start - 1, 0)], 0.0)
    total = cumsum[tier, stop - 1] - before
    target = before + rng.random(len(customer)) * total
    flat = np.empty(len(customer), dtype=np.int64)
    for t in range(len(_AMOUNT_TIERS) + 1):
        rows = np.flatnonzero(tier == t)
        flat[rows] = np.searchsorted(cumsum[t], target[rows], side="right")
    # Guards the float edge where the draw lands exactly on the stretch's end.
    flat = np.clip(flat, start, stop - 1)
    return world.neighbours[flat]


def world_labelled_daily_batch(
    date: str,
    n_transactions: int = 10_000,
    seed: int = DEFAULT_SEED,
    drift: float = 0.0,
    drift_kind: str = DEFAULT_DRIFT_KIND,
) -> LabelledBatch:
    """One world day in the `daily-batches/{date}.json` format, with its truth and each record's
    scenario (SCENARIOS names). drift and drift_kind as in synthetic.generate_labelled_daily_batch."""
    day = parse_iso_date(date)
    world = build_world(seed)
    d = _world_day(world, seed, day, n_transactions, drift, drift_kind)
    records = batch_records(
        day, d.time, d.components, d.amount, world.terminal_category[d.terminal], d.customer, world.merchants[d.terminal].tolist()
    )
    return LabelledBatch(records, d.is_fraud, np.asarray(SCENARIOS, dtype=object)[d.scenario])


def world_history(start_date: str, days: int, transactions_per_day: int, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """`days` world days from start_date, undrifted, as a training frame in time order:
    WORLD_HISTORY_COLUMNS (Time in seconds of the day, as the batches carry it; Class the truth),
    then SCENARIO_COLUMN. The same days as world_labelled_daily_batch would make them."""
    first = parse_iso_date(start_date, "start_date")
    if not isinstance(days, int) or days < 0:
        raise ValueError(f"days must be a whole number >= 0, got {days!r}")
    world = build_world(seed)
    parts = [
        _history_part(world, day, _world_day(world, seed, day, transactions_per_day, 0.0, DEFAULT_DRIFT_KIND))
        for day in (first + dt.timedelta(days=i) for i in range(days))
    ]
    if not parts:  # the columns and types of an empty day
        parts = [_history_part(world, first, _world_day(world, seed, first, 0, 0.0, DEFAULT_DRIFT_KIND))]
    return pd.concat(parts, ignore_index=True)


def _history_part(world: World, day: dt.date, d: _Day) -> pd.DataFrame:
    part = {
        "transactionId": transaction_ids(day, len(d.time)),
        "timestamp": timestamps(day, d.time).astype(object),
        "customerId": customer_ids(d.customer),
        "merchant": world.merchants[d.terminal],
        "category": np.asarray(CATEGORY_NAMES, dtype=object)[world.terminal_category[d.terminal]],
        "Time": d.time,
    }
    part.update({f"V{k + 1}": d.components[:, k] for k in range(d.components.shape[1])})
    part.update(
        {"Amount": d.amount, LABEL_COLUMN: d.is_fraud.astype(np.int64), SCENARIO_COLUMN: np.asarray(SCENARIOS, dtype=object)[d.scenario]}
    )
    return pd.DataFrame(part, columns=[*WORLD_HISTORY_COLUMNS, SCENARIO_COLUMN])
