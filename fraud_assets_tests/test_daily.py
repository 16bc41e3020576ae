"""Daily batch parsing: whole-batch errors raise, row problems are quarantined with a precise
reason, and received == accepted + quarantined on any input."""

from __future__ import annotations

import copy
import json
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.aws.storage import table_to_parquet
from fraud_assets.lib.config import FEATURE_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.inference import daily
from fraud_assets.lib.inference.daily import (
    METADATA_COLUMNS,
    BatchError,
    MissingBatchError,
    format_timestamps,
    parse_daily_batch,
)

SOURCE = "s3://fraud-detection-data/daily-batches/2024-05-01.json"


def transaction(i: int, **changes: Any) -> dict[str, Any]:
    amount = round(10 + i * 1.25, 2)
    record = {
        "id": f"T-{i:05d}",
        "timestamp": f"2024-05-01T{i % 24:02d}:{i % 60:02d}:00Z",
        "amount": amount,
        "category": "grocery",
        "customerId": f"C-{i % 7}",
        "merchant": "Corner Shop",
        "features": {"Time": float(i), **{f"V{j}": (i * j % 13) / 7 - 1 for j in range(1, 29)}, "Amount": amount},
    }
    record.update(changes)
    return record


def parse(records: list[Any]):
    return parse_daily_batch(json.dumps(records).encode(), SOURCE)


def reasons(batch) -> list[str]:
    return batch.quarantined["reason"].tolist()


def test_a_clean_batch_is_accepted_whole_with_typed_columns_in_order():
    batch = parse([transaction(i) for i in range(5)])
    assert batch.received == 5 and len(batch.accepted) == 5 and batch.quarantined.empty
    assert list(batch.accepted.columns) == [*METADATA_COLUMNS, *FEATURE_COLUMNS]
    assert all(batch.accepted[f].dtype == np.float64 for f in FEATURE_COLUMNS)
    assert str(batch.accepted["timestamp"].dtype) == "datetime64[us, UTC]"
    assert batch.accepted[TRANSACTION_ID].tolist() == [f"T-{i:05d}" for i in range(5)]
    assert batch.accepted["V3"].tolist() == [(i * 3 % 13) / 7 - 1 for i in range(5)]
    assert batch.summary() == {"source": SOURCE, "received": 5, "accepted": 5, "quarantined": 0, "quarantine_checks": {}}


def test_feature_order_follows_feature_names():
    names = ("V2", "Amount", "V1")
    batch = parse_daily_batch(json.dumps([transaction(1)]).encode(), SOURCE, names)
    assert list(batch.accepted.columns) == [*METADATA_COLUMNS, *names]


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "the batch is empty"),
        (b"  \n ", "the batch is empty"),
        (b'[{"id": "a",}]', r"malformed JSON at line 1, column 13"),
        (b'[\n  {"id": "a"},\n  {"id": \n', r"malformed JSON at line 4, column 1"),
        (b'{"transactions": []}', "the top level is an object, not an array"),
        (b'"[]"', "the top level is a string, not an array"),
    ],
)
def test_whole_batch_problems_raise_naming_the_source(data, message):
    with pytest.raises(BatchError, match=message) as info:
        parse_daily_batch(data, SOURCE)
    assert str(info.value).startswith(SOURCE + ": ")


def test_an_empty_array_is_a_valid_empty_day():
    batch = parse([])
    assert batch.received == 0 and batch.accepted.empty and batch.quarantined.empty
    assert list(batch.accepted.columns) == [*METADATA_COLUMNS, *FEATURE_COLUMNS]


def with_feature(i: int, name: str, value: Any) -> dict[str, Any]:
    record = transaction(i)
    if value is _DELETE:
        del record["features"][name]
    else:
        record["features"][name] = value
    return record


_DELETE = object()


@pytest.mark.parametrize(
    "bad, reason, check",
    [
        (with_feature(1, "V3", "abc"), "row 2: feature 'V3' is 'abc', not a number", "feature_not_number"),
        (with_feature(1, "V3", True), "row 2: feature 'V3' is true, not a number", "feature_not_number"),
        (with_feature(1, "V3", None), "row 2: feature 'V3' is null, not a number", "feature_not_number"),
        (with_feature(1, "V5", _DELETE), "row 2: missing feature 'V5'", "missing_feature"),
        (with_feature(1, "V7", float("nan")), "row 2: feature 'V7' is nan, not a finite number", "feature_not_finite"),
        (with_feature(1, "V7", float("-inf")), "row 2: feature 'V7' is -inf, not a finite number", "feature_not_finite"),
        (transaction(1, features=[1, 2]), "row 2: features is an array, not an object", "invalid_features"),
        (
            transaction(1, amount=-4.5),
            "row 2: amount is -4.5, negative; amount -4.5 differs from features.Amount 11.25",
            "negative_amount,amount_mismatch",
        ),
        (transaction(1, amount=12.0), "row 2: amount 12.0 differs from features.Amount 11.25", "amount_mismatch"),
        (transaction(1, amount="11.25"), "row 2: amount is '11.25', not a number", "amount_not_number"),
        (transaction(1, id=""), "row 2: id is '', not a non-empty string", "invalid_id"),
        (transaction(1, id=17), "row 2: id is 17, not a non-empty string", "invalid_id"),
        ({k: v for k, v in transaction(1).items() if k != "id"}, "row 2: missing id", "missing_id"),
        (
            transaction(1, timestamp="2024-05-01T10:00:00"),
            "row 2: timestamp '2024-05-01T10:00:00' has no UTC designator (Z or +00:00)",
            "invalid_timestamp",
        ),
        (
            transaction(1, timestamp="2024-02-30T10:00:00Z"),
            "row 2: timestamp '2024-02-30T10:00:00Z' is not a valid ISO-8601 time",
            "invalid_timestamp",
        ),
        (transaction(1, timestamp=1714557600), "row 2: timestamp is 1714557600, not an ISO-8601 string", "invalid_timestamp"),
        (transaction(1, merchant=7), "row 2: merchant is 7, not a string", "invalid_merchant"),
        ({k: v for k, v in transaction(1).items() if k != "category"}, "row 2: missing category", "missing_category"),
        ("T-1", "row 2: record is a string, not an object", "not_object"),
        (None, "row 2: record is null, not an object", "not_object"),
    ],
)
def test_a_bad_row_is_quarantined_with_its_reason_and_the_rest_accepted(bad, reason, check):
    batch = parse([transaction(0), bad, transaction(2)])
    assert batch.accepted[TRANSACTION_ID].tolist() == ["T-00000", "T-00002"]
    assert reasons(batch) == [reason]
    row = batch.quarantined.iloc[0]
    assert row["row"] == 2 and row["checks"] == check
    assert json.loads(row["record"]) == (json.loads(json.dumps(bad)) if bad is not None else None)
    expected_id = bad.get("id") if isinstance(bad, dict) else None
    if isinstance(expected_id, str):
        assert row[TRANSACTION_ID] == expected_id
    else:
        assert pd.isna(row[TRANSACTION_ID])


def test_a_record_with_many_problems_names_them_all():
    bad = transaction(3, timestamp="yesterday", category=5)
    bad["features"]["V1"] = "x"
    del bad["features"]["V2"]
    batch = parse([bad])
    assert reasons(batch) == [
        "row 1: timestamp 'yesterday' is not a valid ISO-8601 time; category is 5, not a string; "
        "feature 'V1' is 'x', not a number; missing feature 'V2'"
    ]


def test_offsets_are_converted_to_utc():
    batch = parse([transaction(1, timestamp="2024-05-01T02:30:00+05:30")])
    assert batch.accepted["timestamp"].iloc[0] == pd.Timestamp("2024-04-30T21:00:00Z")
    assert format_timestamps(batch.accepted["timestamp"]) == ["2024-04-30T21:00:00.000000Z"]


def test_a_repeated_id_keeps_the_first_and_names_it():
    batch = parse([transaction(1), transaction(2), transaction(1, amount=99.0, features={**transaction(1)["features"], "Amount": 99.0})])
    assert batch.accepted[TRANSACTION_ID].tolist() == ["T-00001", "T-00002"]
    assert batch.accepted["amount"].tolist() == [11.25, 12.5]
    assert reasons(batch) == ["row 3: duplicate id 'T-00001', first seen at row 1"]


def test_a_corrupt_first_copy_does_not_push_out_a_good_second_one():
    corrupt = with_feature(1, "V1", "oops")
    batch = parse([corrupt, transaction(1)])
    assert batch.accepted[TRANSACTION_ID].tolist() == ["T-00001"]
    assert reasons(batch) == ["row 1: feature 'V1' is 'oops', not a number"]


def test_the_missing_batch_error_names_where_it_looked():
    err = MissingBatchError("fraud-detection-data", "daily-batches/2024-05-01.json", "2024-05-01")
    assert isinstance(err, FileNotFoundError)
    assert str(err).startswith("no daily batch for 2024-05-01 at s3://fraud-detection-data/daily-batches/2024-05-01.json")


def test_format_timestamps_passes_strings_through_and_reads_naive_datetimes_as_utc():
    assert format_timestamps(pd.Series(["2024-05-01T00:00:00Z"])) == ["2024-05-01T00:00:00Z"]
    naive = pd.Series(pd.to_datetime(["2024-05-01T01:02:03.5"])).to_numpy()
    assert format_timestamps(naive) == ["2024-05-01T01:02:03.500000Z"]
    aware = pd.Series(pd.to_datetime(["2024-05-01T03:02:03+02:00"], utc=False)).to_numpy()  # object Timestamps
    assert format_timestamps(aware) == ["2024-05-01T01:02:03.000000Z"]


# -- generated batches with random corruptions ---------------------------------------------------


def corrupt(record: dict[str, Any], kind: str, draw_value: Any) -> Any:
    record = copy.deepcopy(record)
    if kind == "not_object":
        return draw_value
    if kind == "bad_feature":
        record["features"]["V4"] = "n/a"
    elif kind == "missing_feature":
        del record["features"]["V9"]
    elif kind == "nan_feature":
        record["features"]["V1"] = float("nan")
    elif kind == "negative_amount":
        record["amount"] = record["features"]["Amount"] = -1.0
    elif kind == "no_id":
        del record["id"]
    elif kind == "bad_timestamp":
        record["timestamp"] = "31/12/2024"
    elif kind == "features_array":
        record["features"] = list(record["features"].values())
    return record


CORRUPTIONS = ["not_object", "bad_feature", "missing_feature", "nan_feature", "negative_amount", "no_id", "bad_timestamp", "features_array"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),  # transaction number: repeats make duplicate ids
            st.one_of(st.none(), st.sampled_from(CORRUPTIONS)),
            st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)),
        ),
        max_size=40,
    )
)
def test_every_record_is_accepted_or_quarantined_never_dropped(rows):
    records = [transaction(i) if kind is None else corrupt(transaction(i), kind, value) for i, kind, value in rows]
    batch = parse(records)
    assert batch.received == len(records) == len(batch.accepted) + len(batch.quarantined)
    # Every corrupted record is quarantined; every clean one whose id came first is accepted.
    quarantined_rows = set(batch.quarantined["row"])
    first_clean: dict[int, int] = {}
    for position, (i, kind, _) in enumerate(rows, start=1):
        if kind is not None:
            assert position in quarantined_rows
        elif i not in first_clean:
            first_clean[i] = position
            assert position not in quarantined_rows
        else:
            assert f"row {position}: duplicate id 'T-{i:05d}', first seen at row {first_clean[i]}" in reasons(batch)
    assert batch.accepted[TRANSACTION_ID].is_unique
    assert np.isfinite(batch.accepted[list(FEATURE_COLUMNS)].to_numpy()).all()
    assert batch.quarantined["row"].is_monotonic_increasing
    assert all(r.startswith(f"row {n}: ") for n, r in zip(batch.quarantined["row"], batch.quarantined["reason"]))


def test_a_lone_surrogate_quarantines_its_row_not_the_day():
    # json.dumps escapes the surrogate as \ud800, as a batch on the wire would carry it.
    batch = parse([transaction(0), transaction(1, merchant="Caf\ud800"), transaction(2, id="T-\udfff")])
    assert batch.accepted[TRANSACTION_ID].tolist() == ["T-00000"]
    assert reasons(batch) == [
        r"row 2: merchant 'Caf\ud800' holds a lone UTF-16 surrogate, not valid Unicode text",
        r"row 3: id 'T-\udfff' holds a lone UTF-16 surrogate, not valid Unicode text",
    ]
    table_to_parquet(batch.accepted), table_to_parquet(batch.quarantined)  # what the IO manager writes
    assert json.loads(batch.quarantined["record"].iloc[0])["merchant"] == "Caf\ud800"


@pytest.mark.parametrize(
    "literal, shown",
    [
        ("1" + "0" * 2_000_000 + ".5", "a number of 2,000,003 characters (100000000000...0000.5)"),
        ("1" + "0" * 2_000_000, "a number of 2,000,001 characters (100000000000...000000)"),
        ("-1e999", "-1e999"),
    ],
)
def test_a_number_beyond_float_range_is_reported_as_written_not_as_inf(literal, shown):
    text = json.dumps([transaction(0), with_feature(1, "V3", 12345.25)]).replace("12345.25", literal)
    batch = parse_daily_batch(text.encode(), SOURCE)
    assert batch.accepted[TRANSACTION_ID].tolist() == ["T-00000"]
    assert reasons(batch) == [f"row 2: feature 'V3' is {shown}, beyond the float64 range"]


def test_a_row_already_stored_for_another_day_is_quarantined_naming_that_day():
    asked = []

    def owner_of(keys):
        asked.extend(keys)
        return {key: "2024-04-30" for key in keys if key[0] == "T-00001"}

    batch = parse_daily_batch(json.dumps([transaction(0), transaction(1), transaction(2, amount="x")]).encode(), SOURCE, owner_of=owner_of)
    assert batch.accepted[TRANSACTION_ID].tolist() == ["T-00000"]
    assert asked == [("T-00000", "2024-05-01T00:00:00.000000Z"), ("T-00001", "2024-05-01T01:01:00.000000Z")]  # valid rows only
    assert reasons(batch)[0] == (
        "row 2: id 'T-00001' at 2024-05-01T01:01:00.000000Z is already stored for 2024-04-30: "
        "a transaction belongs to one day (a replayed or reused id)"
    )
    assert batch.quarantined["checks"].tolist()[0] == "reused_id"


# -- the streaming path (chunks of records from blocks of bytes) against the whole-batch path ----


def whole_batch(data: bytes, owner_of=None):
    """What `json.loads` of everything, checked as one chunk, makes of a batch: the path a batch
    the stream cannot decode takes, and what the stream must agree with."""
    return daily._parse_chunks([daily._load_array(data, SOURCE)], SOURCE, FEATURE_COLUMNS, owner_of)


def assert_same_batch(streamed, whole) -> None:
    assert streamed.received == whole.received
    pd.testing.assert_frame_equal(streamed.accepted, whole.accepted, check_exact=True)
    pd.testing.assert_frame_equal(streamed.quarantined, whole.quarantined, check_exact=True)


def reused_every_fifth(keys):
    return {key: "2024-04-30" for key in keys if int(key[0][2:]) % 5 == 4}


@settings(max_examples=80, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(0, 30),
            st.one_of(st.none(), st.none(), st.sampled_from(CORRUPTIONS)),
            st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)),
        ),
        max_size=40,
    ),
    merchant=st.text(max_size=6),
    chunk_rows=st.integers(1, 9),
    block_bytes=st.sampled_from([1, 2, 3, 7, 64, 4096]),
    layout=st.sampled_from([{"separators": (",", ":")}, {}, {"indent": 2}, {"indent": "\t", "ensure_ascii": False}]),
    reused=st.booleans(),
)
def test_the_streamed_parse_agrees_with_the_whole_batch_parse(rows, merchant, chunk_rows, block_bytes, layout, reused):
    records = [transaction(i, merchant=merchant) if kind is None else corrupt(transaction(i), kind, value) for i, kind, value in rows]
    data = (" \n" + json.dumps(records, **layout) + "\n").encode("utf-8", "surrogatepass")
    owner_of = reused_every_fifth if reused else None
    with mock.patch.object(daily, "_BLOCK_BYTES", block_bytes):
        streamed = parse_daily_batch(data, SOURCE, owner_of=owner_of, chunk_rows=chunk_rows)
    assert_same_batch(streamed, whole_batch(data, owner_of))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), where=st.data(), kind=st.sampled_from(CORRUPTIONS), chunk_rows=st.integers(1, 25))
def test_one_bad_row_anywhere_quarantines_exactly_that_row(n, where, kind, chunk_rows):
    bad = where.draw(st.integers(0, n - 1), label="bad row")
    records = [corrupt(transaction(i), kind, "oops") if i == bad else transaction(i) for i in range(n)]
    data = json.dumps(records, allow_nan=True).encode()
    batch = parse_daily_batch(data, SOURCE, chunk_rows=chunk_rows)
    assert batch.quarantined["row"].tolist() == [bad + 1]
    assert batch.accepted[TRANSACTION_ID].tolist() == [f"T-{i:05d}" for i in range(n) if i != bad]
    assert_same_batch(batch, whole_batch(data))


def test_a_duplicate_in_a_later_chunk_names_the_first_row_in_an_earlier_one(tmp_path):
    records = [transaction(i) for i in range(7)] + [transaction(2), transaction(5), transaction(2)]
    path = tmp_path / "batch.json"
    path.write_bytes(json.dumps(records).encode())
    batch = parse_daily_batch(path, SOURCE, chunk_rows=3)
    assert reasons(batch) == [
        "row 8: duplicate id 'T-00002', first seen at row 3",
        "row 9: duplicate id 'T-00005', first seen at row 6",
        "row 10: duplicate id 'T-00002', first seen at row 3",
    ]
    assert batch.accepted[TRANSACTION_ID].tolist() == [f"T-{i:05d}" for i in range(7)]


@pytest.mark.parametrize(
    "data, message",
    [
        (b'[{"id": "a"}, {"id": "b",}]', r"malformed JSON at line 1, column 26"),
        (b'[{"id": "a"}, {"id": "b"}', r"malformed JSON at line 1, column 26"),
        (b'[{"id": "a"}, {"id": "b"}] []', r"malformed JSON at line 1, column 28: Extra data"),
        (b'[{"id": "a"}, {"id": "b"},]', r"malformed JSON at line 1, column 27"),
        (b'[{"id": "a"}, {"id": "\xff"}]', r"not UTF-8 text \(byte 22\)"),
        (b"[1, " + b"[" * 100_000 + b"]" * 100_000 + b"]", "nested too deeply"),
    ],
)
def test_a_batch_broken_after_its_first_chunks_raises_the_whole_batch_error(data, message):
    with mock.patch.object(daily, "_BLOCK_BYTES", 5), pytest.raises(BatchError, match=message):
        parse_daily_batch(data, SOURCE, chunk_rows=1)


def test_what_the_stream_leaves_to_the_whole_batch_path_still_parses():
    records = [transaction(0), transaction(1, merchant="Café"), with_feature(2, "V3", float("nan"))]
    for data in (b"\xef\xbb\xbf" + json.dumps(records).encode(), json.dumps(records).encode("utf-16")):
        batch = parse_daily_batch(data, SOURCE, chunk_rows=1)
        assert batch.accepted["merchant"].tolist() == ["Corner Shop", "Café"]
        assert reasons(batch) == ["row 3: feature 'V3' is nan, not a finite number"]


def test_ids_whose_hashes_collide_are_told_apart_by_the_ids_themselves():
    # Every id hashes alike: only the exact comparison on a hash hit can find the real duplicates.
    records = [transaction(i % 9) for i in range(30)]
    data = json.dumps(records).encode()
    with mock.patch.object(pd.util, "hash_array", lambda values: np.zeros(len(values), dtype=np.uint64)):
        streamed = parse_daily_batch(data, SOURCE, chunk_rows=4)
    assert streamed.accepted[TRANSACTION_ID].tolist() == [f"T-{i:05d}" for i in range(9)]
    assert reasons(streamed)[:2] == [
        "row 10: duplicate id 'T-00000', first seen at row 1",
        "row 11: duplicate id 'T-00001', first seen at row 2",
    ]
    assert_same_batch(streamed, whole_batch(data))


def test_a_transaction_without_customer_or_terminal_is_accepted_with_the_field_missing():
    no_customer = {k: v for k, v in transaction(1).items() if k != "customerId"}
    batch = parse([transaction(0), no_customer, transaction(2, merchant=None)])
    assert len(batch.accepted) == 3 and len(batch.quarantined) == 0
    assert batch.accepted["customerId"].isna().tolist() == [False, True, False]
    assert batch.accepted["merchant"].isna().tolist() == [False, False, True]
