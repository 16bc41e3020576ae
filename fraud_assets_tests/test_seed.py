"""Seeding the data bucket on the local AWS stack: what lands where, encrypted, and nothing on bad input."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pandas as pd
import pytest

from fraud_assets.lib.aws.storage import SSE
from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key, label_file_key
from fraud_assets.lib.inference.labels import parse_label_file
from fraud_assets.lib.seeding.seed import labels_due, seed_dates, seed_platform
from fraud_assets.lib.seeding.synthetic import generate_daily_batch, generate_labelled_daily_batch, generate_transactions, to_csv_bytes
from fraud_assets.lib.seeding.world import WORLD_HISTORY_COLUMNS, world_history, world_labelled_daily_batch
from fraud_assets.lib.training.raw_data import RawDataError, read_raw_csv

NAMES = PlatformNames()
DATES = ["2024-05-01", "2024-05-02", "2024-05-03"]


def stored_keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=NAMES.data_bucket).get("Contents", [])]


def body(s3, key: str) -> bytes:
    return s3.get_object(Bucket=NAMES.data_bucket, Key=key)["Body"].read()


def test_synthetic_seed_uploads_encrypted_raw_data_and_batches(aws):
    s3 = boto3.client("s3")
    summary = seed_platform(s3, NAMES, days=3, start_date=DATES[0], rows=2_000, transactions_per_day=150, drift_from=DATES[2], seed=9)

    expected_keys = [RAW_DATA_KEY, *(daily_batch_key(d) for d in DATES), *(label_file_key(d) for d in DATES)]
    assert sorted(stored_keys(s3)) == sorted(expected_keys)
    for key in expected_keys:
        assert s3.head_object(Bucket=NAMES.data_bucket, Key=key)["ServerSideEncryption"] == SSE

    pd.testing.assert_frame_equal(read_raw_csv(body(s3, RAW_DATA_KEY), RAW_DATA_KEY), generate_transactions(2_000, seed=9))
    for date in DATES:
        drift = 1.0 if date == DATES[2] else 0.0
        assert json.loads(body(s3, daily_batch_key(date))) == generate_daily_batch(date, 150, seed=9, drift=drift)

    assert summary["rows"] == 2_000 and summary["fraud_count"] == round(2_000 * 0.00172)
    assert summary["dates"] == DATES and summary["drifted_dates"] == [DATES[2]]
    assert sorted(summary["keys"]) == sorted(expected_keys)
    assert summary["raw_data_uri"] == f"s3://{NAMES.data_bucket}/{RAW_DATA_KEY}"
    assert summary["daily_batch_uris"][DATES[0]] == f"s3://{NAMES.data_bucket}/{daily_batch_key(DATES[0])}"


def test_label_files_carry_the_generators_truth_and_arrive_late(aws):
    s3 = boto3.client("s3")
    pending: dict[str, bytes] = {}
    summary = seed_platform(
        s3,
        NAMES,
        days=3,
        start_date=DATES[0],
        rows=500,
        transactions_per_day=400,
        drift_from=DATES[1],
        drift_kind="new-pattern",
        seed=3,
        label_delay_days=3,
        pending_labels=pending,
    )
    # "Today" is the day after the last seeded day (05-04): only the first day is three days old.
    assert list(summary["label_uris"]) == [DATES[0]] and summary["unlabelled_dates"] == DATES[1:]
    assert label_file_key(DATES[1]) not in stored_keys(s3) and sorted(pending) == DATES[1:]
    for date in DATES:
        data = body(s3, label_file_key(date)) if date == DATES[0] else pending[date]
        truth = generate_labelled_daily_batch(date, 400, seed=3, drift=0.0 if date == DATES[0] else 1.0, drift_kind="new-pattern")
        batch = json.loads(body(s3, daily_batch_key(date)))
        labels = parse_label_file(data, date, known_ids={t["id"] for t in batch})
        assert labels.received == len(labels.accepted) == 400  # every transaction, every label valid
        assert labels.accepted["transactionId"].tolist() == [t["id"] for t in batch]
        assert labels.accepted["isFraud"].tolist() == truth.is_fraud.tolist()
        assert int(truth.is_fraud.sum()) == summary["daily_fraud"][date]
    assert summary["daily_fraud"][DATES[2]] > 2 * summary["daily_fraud"][DATES[0]]  # the new pattern on top


def test_label_delay_counts_days_before_today():
    dates = ["2024-05-01", "2024-05-02", "2024-05-03"]
    today = dt.date(2024, 5, 4)
    assert labels_due(dates, today, 0) == labels_due(dates, today, 1) == dates
    assert labels_due(dates, today, 3) == ["2024-05-01"] and labels_due(dates, today, 4) == []
    with pytest.raises(ValueError, match="label delay"):
        labels_due(dates, today, -1)


def test_csv_seed_uploads_the_file_as_is_and_samples_batches_from_it(aws, tmp_path):
    s3 = boto3.client("s3")
    frame = generate_transactions(1_000, fraud_rate=0.02, seed=4)
    path = tmp_path / "creditcard.csv"
    path.write_bytes(to_csv_bytes(frame))

    summary = seed_platform(s3, NAMES, csv_path=str(path), days=2, start_date=DATES[0], transactions_per_day=100)

    assert body(s3, RAW_DATA_KEY) == path.read_bytes()
    assert summary["source"] == str(path) and summary["rows"] == 1_000 and summary["fraud_count"] == 20
    assert summary["drifted_dates"] == []
    components = {tuple(r) for r in frame.iloc[:, 1:29].to_numpy().tolist()}
    for date in DATES[:2]:
        batch = json.loads(body(s3, daily_batch_key(date)))
        assert len(batch) == 100 and all("Class" not in t["features"] for t in batch)
        assert all(tuple(t["features"][f"V{i}"] for i in range(1, 29)) in components for t in batch)
        # The labels are the sampled rows' Class.
        by_components = {tuple(r[1:29]): r[-1] for r in frame.to_numpy().tolist()}
        labels = json.loads(body(s3, label_file_key(date)))
        assert [label["isFraud"] for label in labels] == [
            by_components[tuple(t["features"][f"V{i}"] for i in range(1, 29))] == 1 for t in batch
        ]


def test_bad_csv_uploads_nothing(aws, tmp_path):
    s3 = boto3.client("s3")
    lines = to_csv_bytes(generate_transactions(30, seed=5)).decode().splitlines()
    cells = lines[7].split(",")
    cells[3] = "abc"
    lines[7] = ",".join(cells)
    path = tmp_path / "creditcard.csv"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(RawDataError, match=r"creditcard\.csv: column 'V3', row 7: non-numeric value 'abc'"):
        seed_platform(s3, NAMES, csv_path=str(path), days=2, start_date=DATES[0], transactions_per_day=10)
    assert stored_keys(s3) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_date": "05/01/2024"}, "start_date.*YYYY-MM-DD"),
        ({"start_date": "2024-02-30"}, "start_date"),
        ({"drift_from": "tomorrow"}, "drift_from"),
        ({"days": -1}, "days"),
        ({"drift": 2.0}, "drift"),
        ({"drift_kind": "sideways", "drift_from": DATES[0]}, "drift kind"),
        ({"label_delay_days": -1}, "label delay"),
    ],
)
def test_bad_arguments_upload_nothing(aws, kwargs, message):
    s3 = boto3.client("s3")
    with pytest.raises(ValueError, match=message):
        seed_platform(s3, NAMES, **{"start_date": DATES[0], "rows": 100, "transactions_per_day": 10, **kwargs})
    assert stored_keys(s3) == []


def test_default_dates_are_the_days_ending_yesterday():
    assert seed_dates(3, today=dt.date(2024, 3, 1)) == ["2024-02-27", "2024-02-28", "2024-02-29"]
    assert seed_dates(2, "2023-12-31") == ["2023-12-31", "2024-01-01"]


def test_world_seed_trains_on_the_history_before_the_first_day_and_continues_it(aws):
    s3 = boto3.client("s3")
    summary = seed_platform(
        s3, NAMES, data="world", history_days=3, days=2, start_date=DATES[0], transactions_per_day=200, drift_from=DATES[1], seed=6
    )
    assert summary["data"] == "world" and summary["source"] == "world" and summary["rows"] == 3 * 200
    # The history is the three days before the first daily batch, with the world's columns and no
    # truth beyond Class (the scenario stays with the generator).
    history = world_history("2024-04-28", 3, 200, seed=6)
    assert body(s3, RAW_DATA_KEY) == to_csv_bytes(history, WORLD_HISTORY_COLUMNS)
    raw = read_raw_csv(body(s3, RAW_DATA_KEY), RAW_DATA_KEY)
    assert raw.attrs["ignored_columns"] == ["transactionId", "timestamp", "customerId", "merchant", "category"]
    assert "scenario" not in body(s3, RAW_DATA_KEY).decode().splitlines()[0]
    assert summary["fraud_count"] == int(history["Class"].sum())
    for date in DATES[:2]:
        truth = world_labelled_daily_batch(date, 200, seed=6, drift=1.0 if date == DATES[1] else 0.0)
        assert json.loads(body(s3, daily_batch_key(date))) == truth.records
        labels = json.loads(body(s3, label_file_key(date)))
        assert [label["isFraud"] for label in labels] == truth.is_fraud.tolist()
    assert summary["drifted_dates"] == [DATES[1]]


def test_world_seed_refuses_a_csv_and_bad_sizes_uploading_nothing(aws, tmp_path):
    s3 = boto3.client("s3")
    path = tmp_path / "creditcard.csv"
    path.write_bytes(to_csv_bytes(generate_transactions(30, seed=5)))
    with pytest.raises(ValueError, match="CSV"):
        seed_platform(s3, NAMES, data="world", csv_path=str(path), days=1, start_date=DATES[0])
    with pytest.raises(ValueError, match="history_days"):
        seed_platform(s3, NAMES, data="world", history_days=0, days=1, start_date=DATES[0])
    with pytest.raises(ValueError, match="data must be one of"):
        seed_platform(s3, NAMES, data="real", days=1, start_date=DATES[0])
    assert stored_keys(s3) == []
