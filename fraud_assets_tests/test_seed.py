"""Seeding the data bucket on the local AWS stack: what lands where, encrypted, and nothing on bad input."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pandas as pd
import pytest

from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key
from fraud_assets.lib.training.raw_data import RawDataError, read_raw_csv
from fraud_assets.lib.seeding.seed import seed_dates, seed_platform
from fraud_assets.lib.aws.storage import SSE
from fraud_assets.lib.seeding.synthetic import generate_daily_batch, generate_transactions, to_csv_bytes

NAMES = PlatformNames()
DATES = ["2024-05-01", "2024-05-02", "2024-05-03"]


def stored_keys(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=NAMES.data_bucket).get("Contents", [])]


def body(s3, key: str) -> bytes:
    return s3.get_object(Bucket=NAMES.data_bucket, Key=key)["Body"].read()


def test_synthetic_seed_uploads_encrypted_raw_data_and_batches(aws):
    s3 = boto3.client("s3")
    summary = seed_platform(
        s3, NAMES, days=3, start_date=DATES[0], rows=2_000, transactions_per_day=150, drift_from=DATES[2], seed=9
    )

    expected_keys = [RAW_DATA_KEY, *(daily_batch_key(d) for d in DATES)]
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
        ({"days": 0}, "days"),
        ({"drift": 2.0}, "drift"),
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
