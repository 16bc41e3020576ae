"""The data-prep split and the split gates: invariants over generated data."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.training.gates import split_gates
from fraud_assets.lib.training.splits import SPLITS, assign_splits, prepare_splits, split_summary, transaction_ids


def raw_frame(n: int, fraud_every: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    frame["Amount"] = np.abs(frame["Amount"]) * 50
    frame[LABEL_COLUMN] = (np.arange(n) % fraud_every == 0).astype(int)
    return frame[list(RAW_COLUMNS)]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(min_value=0, max_value=3_000), seed=st.integers(min_value=0, max_value=2**31))
def test_every_row_lands_in_exactly_one_split(n, seed):
    splits = prepare_splits(raw_frame(n), seed)
    ids = np.concatenate([splits[s][TRANSACTION_ID].to_numpy() for s in SPLITS])
    assert len(ids) == n
    assert len(set(ids)) == n
    assert set(ids) == set(transaction_ids(n))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_split_is_deterministic_and_keyed_by_id(seed):
    ids = transaction_ids(2_000)
    first = assign_splits(ids, seed)
    assert np.array_equal(first, assign_splits(ids, seed))
    # A row's split depends on its id only: the first 500 rows split alike inside a longer file.
    assert np.array_equal(first[:500], assign_splits(ids[:500], seed))


def test_ratios_are_70_15_15_on_a_large_input():
    codes = assign_splits(transaction_ids(200_000), 42)
    shares = np.bincount(codes, minlength=3) / len(codes)
    assert np.allclose(shares, [0.70, 0.15, 0.15], atol=0.005)


def test_another_seed_gives_another_split():
    ids = transaction_ids(10_000)
    assert (assign_splits(ids, 1) != assign_splits(ids, 2)).mean() > 0.3


def test_bad_ratios_are_refused():
    with pytest.raises(ValueError, match="ratios"):
        assign_splits(transaction_ids(10), 1, (0.5, 0.5, 0.5))


def test_ids_are_stable_and_sortable():
    ids = transaction_ids(3, offset=41)
    assert ids.tolist() == ["txn-000000041", "txn-000000042", "txn-000000043"]


def _verdicts(splits, record_count, tolerance=0.02):
    return {(split, g.name): g.passed for split, gates in split_gates(splits, record_count, tolerance).items() for g in gates}


def test_split_gates_pass_on_a_good_split():
    raw = raw_frame(20_000)
    verdicts = _verdicts(prepare_splits(raw, 42), len(raw))
    assert all(verdicts.values()), [k for k, v in verdicts.items() if not v]


def test_split_gates_catch_what_they_guard():
    raw = raw_frame(20_000)
    good = prepare_splits(raw, 42)

    missing_column = {**good, "test": good["test"].drop(columns=["V3"])}
    assert not _verdicts(missing_column, len(raw))[("test", "schema")]

    one_class = {**good, "validation": good["validation"].assign(**{LABEL_COLUMN: 0})}
    assert not _verdicts(one_class, len(raw))[("validation", "both_classes")]

    lost_rows = {**good, "train": good["train"].iloc[:-100]}
    verdicts = _verdicts(lost_rows, len(raw))
    assert not verdicts[("train", "counts_add_up")]

    overlap = {**good, "test": pd.concat([good["test"], good["train"].head(5)], ignore_index=True)}
    assert not _verdicts(overlap, len(raw) + 5)[("train", "ids_disjoint")]

    skewed = prepare_splits(raw, 42, ratios=(0.5, 0.25, 0.25))
    verdicts = _verdicts(skewed, len(raw))
    assert not verdicts[("train", "ratio_within_tolerance")]


def test_summary_reconciles_with_the_input():
    raw = raw_frame(5_000)
    summary = split_summary(len(raw), prepare_splits(raw, 7))
    assert summary["recordCount"] == 5_000
    assert sum(s["rows"] for s in summary["splits"].values()) == 5_000
    assert sum(s["fraudCount"] for s in summary["splits"].values()) == int(raw[LABEL_COLUMN].sum())


def test_splits_hold_the_raw_rows_and_can_release_the_input_as_they_go():
    raw = raw_frame(5_000, seed=3)
    kept = prepare_splits(raw, 11)
    assert raw.shape == (5_000, len(RAW_COLUMNS))  # untouched by default
    owned = raw.copy()
    consumed = prepare_splits(owned, 11, release_input=True)
    assert owned.shape[1] == 0  # every column dropped once split
    for name in SPLITS:
        pd.testing.assert_frame_equal(consumed[name], kept[name])
        assert list(kept[name].columns) == [TRANSACTION_ID, *RAW_COLUMNS]
        positions = kept[name][TRANSACTION_ID].str.removeprefix("txn-").astype(int).to_numpy()
        assert (np.diff(positions) > 0).all()  # file order
        np.testing.assert_array_equal(kept[name][list(RAW_COLUMNS)].to_numpy(), raw.to_numpy()[positions])
