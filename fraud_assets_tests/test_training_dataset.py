"""The training data set (Data Extraction): raw history + labelled daily rows, ids, provenance,
dedupe, sampling, the held-out recent window; and retraining on it through Dagster: the challenger
learns a new fraud pattern from labelled days and beats the champion on the recent window."""

from __future__ import annotations

import boto3
import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.aws.storage import get_bytes, parquet_to_table, put_bytes
from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_DATA_KEY, TRANSACTION_ID, PlatformNames
from fraud_assets.lib.seeding.seed import put_label_file, seed_platform
from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
from fraud_assets.lib.training import extraction
from fraud_assets.lib.training.splits import transaction_ids

NAMES = PlatformNames()


def daily_rows(date: str, n: int, fraud_every: int = 10, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(n + start)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURE_COLUMNS))), columns=list(FEATURE_COLUMNS))
    frame.insert(0, TRANSACTION_ID, [f"TXN-{date}-{i:06d}" for i in range(start, start + n)])
    frame[LABEL_COLUMN] = (np.arange(n) % fraud_every == 0).astype(np.int64)
    frame[extraction.SOURCE_COLUMN] = extraction.daily_source(date)
    return extraction.normalise(frame)


# --------------------------------------------------------------------------- the extraction itself


def test_labelled_rows_are_the_inner_join_and_unlabelled_rows_are_left_out():
    transactions = daily_rows("2024-05-01", 5).drop(columns=[LABEL_COLUMN, extraction.SOURCE_COLUMN])
    labels = pd.DataFrame({TRANSACTION_ID: ["TXN-2024-05-01-000001", "TXN-2024-05-01-000003"], "isFraud": [True, False]})
    rows = extraction.labelled_daily_rows(transactions, labels, "2024-05-01")
    assert rows[TRANSACTION_ID].tolist() == ["TXN-2024-05-01-000001", "TXN-2024-05-01-000003"]
    assert rows[LABEL_COLUMN].tolist() == [1, 0] and set(rows["source"]) == {"daily:2024-05-01"}
    assert rows.columns.tolist() == list(extraction.DATASET_COLUMNS)


def test_combine_keeps_raw_ids_daily_ids_provenance_and_the_first_copy():
    raw = generate_transactions(300, fraud_rate=0.05, seed=1)
    first, second = daily_rows("2024-05-01", 40), daily_rows("2024-05-02", 40)
    # The same transaction reported again the next day: kept once, from its first day.
    again = first.iloc[:5].assign(source="daily:2024-05-02", V1=99.0)
    dataset, summary = extraction.combine(raw, pd.concat([second, again, first]), seed=3)
    assert dataset.schema == extraction.DATASET_SCHEMA
    frame = dataset.to_pandas()
    assert frame[TRANSACTION_ID].is_unique and frame[TRANSACTION_ID].is_monotonic_increasing
    by_id = frame.set_index(TRANSACTION_ID)
    assert by_id.loc[transaction_ids(300), "source"].eq("raw").all()  # raw rows keep today's ids
    np.testing.assert_array_equal(by_id.loc[transaction_ids(300), "V1"].to_numpy(), raw["V1"].to_numpy())
    assert (by_id.loc[first[TRANSACTION_ID], "source"] == "daily:2024-05-01").all()
    assert (by_id.loc[first[TRANSACTION_ID], "V1"] != 99.0).all()
    assert summary["duplicatesDropped"] == 5 and summary["rowsFromDaily"] == 80 and summary["rowsFromRaw"] == 300
    assert summary["rowsBySource"] == {"daily:2024-05-01": 40, "daily:2024-05-02": 40, "raw": 300}


@settings(max_examples=25, deadline=None)
@given(cap=st.integers(1, 400), seed=st.integers(0, 50))
def test_sampling_keeps_every_fraud_and_about_the_cap(cap, seed):
    raw = generate_transactions(400, fraud_rate=0.05, seed=2)
    daily = daily_rows("2024-05-01", 200)
    full = extraction.combine(raw, daily, seed)[0].to_pandas()
    sampled, summary = extraction.combine(raw, daily, seed, legit_cap=cap)
    sampled = sampled.to_pandas()
    assert sampled[LABEL_COLUMN].sum() == full[LABEL_COLUMN].sum()  # every fraud kept
    kept = int((sampled[LABEL_COLUMN] == 0).sum())
    legit = int((full[LABEL_COLUMN] == 0).sum())
    assert summary["sampling"] == {
        "legitimateCap": cap,
        "legitimateRowsBefore": legit,
        "legitimateRowsKept": kept,
        "legitimateRate": min(1.0, cap / legit),
    }
    assert set(sampled[TRANSACTION_ID]) <= set(full[TRANSACTION_ID])
    assert abs(kept - min(cap, legit)) <= 4 * np.sqrt(min(cap, legit)) + 2  # a hash sample: about the cap
    again, _ = extraction.combine(raw, daily, seed, legit_cap=cap)
    pd.testing.assert_frame_equal(again.to_pandas(), sampled)  # deterministic


def reference_combine(raw: pd.DataFrame, daily: pd.DataFrame, seed: int, cap: int | None) -> pd.DataFrame:
    """The data set's definition spelled out with whole-frame pandas (copies and all): raw rows
    with position ids, then days in date order; first copy of an id kept; legitimate rows sampled
    by the hash of their id; sorted by id."""
    raw_part = raw.loc[:, list(extraction.RAW_COLUMNS)].copy()
    raw_part.insert(0, TRANSACTION_ID, transaction_ids(len(raw)))
    raw_part[extraction.SOURCE_COLUMN] = extraction.RAW_SOURCE
    days = daily.sort_values(extraction.SOURCE_COLUMN, kind="stable").loc[:, list(extraction.DATASET_COLUMNS)]
    frame = pd.concat([raw_part, days], ignore_index=True)
    frame = frame[~frame[TRANSACTION_ID].duplicated(keep="first")]
    legit = (frame[LABEL_COLUMN] == 0).to_numpy()
    _, threshold = extraction.sampling_threshold(int(legit.sum()), cap)
    keep = ~legit
    keep[legit] = extraction.sample_buckets(frame[TRANSACTION_ID][legit].tolist(), seed) < threshold
    return extraction.normalise(frame[keep].sort_values(TRANSACTION_ID, kind="stable"))


@settings(max_examples=40, deadline=None)
@given(
    n_raw=st.integers(1, 60),
    days=st.lists(st.lists(st.integers(0, 90), max_size=30), max_size=4),
    cap=st.one_of(st.none(), st.integers(1, 80)),
    seed=st.integers(0, 9),
)
def test_combine_matches_the_definition(n_raw, days, cap, seed):
    # Daily ids drawn from a small pool: they collide with raw ids (txn-<position>), with ids
    # beyond the raw rows, with each other within a day and across days.
    raw = generate_transactions(n_raw, fraud_rate=0.2, seed=n_raw)
    parts = []
    for i, picks in enumerate(days):
        day = daily_rows(f"2024-05-{i + 1:02d}", len(picks), fraud_every=3) if picks else extraction.empty_daily_rows()
        day[TRANSACTION_ID] = [f"txn-{p:09d}" if p % 3 == 1 else (f"txn-{p:010d}" if p % 3 == 2 else f"TXN-{p}") for p in picks]
        parts.append(day)
    daily = pd.concat(parts[::-1], ignore_index=True) if parts else extraction.empty_daily_rows()  # days out of order
    dataset, summary = extraction.combine(raw, daily, seed, legit_cap=cap)
    expected = reference_combine(raw, daily, seed, cap)
    assert dataset.schema == extraction.DATASET_SCHEMA
    pd.testing.assert_frame_equal(dataset.to_pandas(), expected)
    assert summary["recordCount"] == len(expected)
    assert summary["rowsFromRaw"] + summary["rowsFromDaily"] == len(expected)
    assert summary["duplicatesDropped"] == n_raw + len(daily) - summary["sampling"]["legitimateRowsBefore"] - int(
        expected[LABEL_COLUMN].sum()
    )


def test_recent_window_is_the_last_labelled_days_within_the_history():
    dates = ["2024-01-01", "2024-05-01", "2024-05-02", "2024-05-04", "2024-05-05"]
    window = extraction.split_labelled_dates(dates, history_days=30, recent_days=2)
    assert window.training_dates == ["2024-05-01", "2024-05-02"]
    assert window.recent_dates == ["2024-05-04", "2024-05-05"]
    assert window.outside_history == ["2024-01-01"]
    assert extraction.split_labelled_dates(dates[:2], 180, 7).training_dates == []
    assert extraction.split_labelled_dates([], 180, 7).recent_dates == []


# --------------------------------------------------------------------------- retraining through Dagster

RECENT_DAYS = 2
EXTRACTION = {"ops": {"data_extraction": {"config": {"recent_window_days": RECENT_DAYS}}}}


def _train(instance):
    from fraud_assets.definitions import location_defs
    from fraud_assets.defs.resources import QualityGates

    job = location_defs(quality_gates=QualityGates(pr_auc_floor=0.3, high_risk_precision_floor=0.3)).resolve_job_def("training_job")
    return job.execute_in_process(instance=instance, run_config=EXTRACTION, raise_on_error=False)


def _materialized(result, name: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == name]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _table(result, stage: str, name: str) -> pd.DataFrame:
    return parquet_to_table(
        get_bytes(boto3.client("s3"), f"s3://{NAMES.workflow_bucket}/executions/{result.run_id}/{stage}/{name}.parquet")
    )


@pytest.mark.e2e
def test_retraining_learns_the_new_pattern_from_labelled_days_and_beats_the_champion_on_the_recent_window(aws):
    s3 = boto3.client("s3")
    dates = [f"2024-05-0{i}" for i in range(1, 7)]
    pending: dict[str, bytes] = {}
    seed_platform(
        s3,
        NAMES,
        days=6,
        start_date=dates[0],
        rows=100,
        transactions_per_day=2_500,
        drift_from=dates[1],
        drift_kind="new-pattern",
        label_delay_days=99,
        pending_labels=pending,
        seed=5,
    )
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(30_000, fraud_rate=0.01, seed=5)))
    instance = DagsterInstance.ephemeral()

    # No labels yet: the champion learns from the raw history only, and the gate says where it compared.
    champion = _train(instance)
    assert champion.success
    first = _materialized(champion, "training_dataset")
    assert first["rows_from_daily"] == 0 and first["rows"] == 30_000

    # The labels arrive; the retraining trains on the first four days and holds the last two out.
    for date, body in pending.items():
        put_label_file(s3, NAMES, date, body)
    challenger = _train(instance)
    assert challenger.success
    dataset = _materialized(challenger, "training_dataset")
    assert dataset["rows_from_daily"] == 4 * 2_500 and dataset["rows"] == 30_000 + 4 * 2_500
    train_ids = pd.Index(_table(challenger, "train_split", "train")[TRANSACTION_ID])
    daily_in_train = train_ids[train_ids.str.startswith("TXN-")]
    assert {i[4:14] for i in daily_in_train} == set(dates[:4])  # labelled daily rows train ...
    window = _table(challenger, "recent_labelled_window", "window")
    assert set(window["source"]) == {f"daily:{d}" for d in dates[4:]} and len(window) == 2 * 2_500
    for split in ("train", "validation", "test"):  # ... and none of the recent window does
        ids = _table(challenger, f"{split}_split", split)[TRANSACTION_ID]
        assert not ids.isin(window[TRANSACTION_ID]).any()

    evaluation = _materialized(challenger, "evaluation_metrics")
    assert evaluation["challenger_recent_recall_at_threshold"] > evaluation["champion_recent_recall_at_threshold"] + 0.3
    assert evaluation["champion_recent_recall_at_threshold"] < 0.4
    gate = {e.check_name: e for e in challenger.get_asset_check_evaluations()}["no_regression_gate"]
    assert gate.passed and "on the recent window (2024-05-05, 2024-05-06" in gate.description
    assert any(
        e.asset_key.to_user_string() == "deployed_endpoint"
        for e in (ev.event_specific_data.materialization for ev in challenger.get_asset_materialization_events())
    )


@pytest.mark.e2e
def test_on_calm_days_the_retrained_model_does_not_regress_on_the_recent_window(aws):
    s3 = boto3.client("s3")
    seed_platform(s3, NAMES, days=4, start_date="2024-06-01", rows=100, transactions_per_day=2_500, seed=6)
    put_bytes(s3, NAMES.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(30_000, fraud_rate=0.01, seed=6)))
    instance = DagsterInstance.ephemeral()
    assert _train(instance).success
    again = _train(instance)
    assert again.success
    gate = {e.check_name: e for e in again.get_asset_check_evaluations()}["no_regression_gate"]
    evaluation = _materialized(again, "evaluation_metrics")
    assert gate.passed, gate.description
    # Calm days carry few frauds: a window without both classes is compared on the test split, and says so.
    assert ("on the recent window" in gate.description) or ("on the test split (the recent labelled window" in gate.description)
    assert evaluation["challenger_recent_pr_auc"] >= evaluation["champion_recent_pr_auc"] - 0.02 or gate.description.count("test split")
