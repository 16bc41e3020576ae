"""Validation of the raw training CSV: good files round-trip, bad ones say where and why."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_COLUMNS
from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
from fraud_assets.lib.training.raw_data import RawDataError, has_customer_columns, read_customer_columns, read_raw_csv

SOURCE = "s3://fraud-detection-data/raw/creditcard.csv"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return to_csv_bytes(generate_transactions(40, fraud_rate=0.1, seed=1)).decode().splitlines()


def with_cell(lines: list[str], row: int, column: str, value: str) -> bytes:
    """The CSV with data row `row` (1-based), column `column` set to `value`."""
    out = list(lines)
    cells = out[row].split(",")
    cells[RAW_COLUMNS.index(column)] = value
    out[row] = ",".join(cells)
    return ("\n".join(out) + "\n").encode()


def raises(data: bytes) -> RawDataError:
    """The error for `data`, which must be the same read from bytes and from a local file."""
    with pytest.raises(RawDataError) as caught:
        read_raw_csv(data, SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")
    assert caught.value.source == SOURCE
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raw.csv"
        path.write_bytes(data)
        with pytest.raises(RawDataError) as from_file:
            read_raw_csv(path, SOURCE)
    assert str(from_file.value) == str(caught.value)
    return caught.value


def test_good_file_round_trips(tmp_path):
    df = generate_transactions(5_000, seed=2)
    back = read_raw_csv(to_csv_bytes(df), SOURCE)
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs["ignored_columns"] == []
    (tmp_path / "raw.csv").write_bytes(b"\n" + to_csv_bytes(df))  # a blank first line, as bytes would have it
    with pytest.raises(RawDataError, match="missing required columns"):
        read_raw_csv(tmp_path / "raw.csv", SOURCE)
    (tmp_path / "raw.csv").write_bytes(to_csv_bytes(df))
    pd.testing.assert_frame_equal(read_raw_csv(tmp_path / "raw.csv", SOURCE), df)


def test_the_kaggle_files_quoting_is_accepted():
    # The real creditcard.csv quotes its header and its Class values.
    header = ",".join(f'"{c}"' for c in RAW_COLUMNS)
    row = ",".join(["0", *["-1.3598071336738"] * 28, "149.62", '"0"'])
    df = read_raw_csv(f"{header}\n{row}\n{row}\n".encode(), SOURCE)
    assert df.shape == (2, 31) and df[LABEL_COLUMN].tolist() == [0, 0]
    assert df["Amount"].tolist() == [149.62, 149.62]


def test_windows_line_endings_and_byte_order_mark_are_accepted(lines):
    df = generate_transactions(40, fraud_rate=0.1, seed=1)
    data = "\ufeff" + "\r\n".join(lines) + "\r\n"
    pd.testing.assert_frame_equal(read_raw_csv(data.encode(), SOURCE), df)
    bad = with_cell(lines, 3, "V5", "?").decode().replace("\n", "\r\n")
    assert (raises(bad.encode()).row, raises(bad.encode()).value) == (3, "?")


def test_message_names_file_column_row_and_value(lines):
    error = raises(with_cell(lines, 17, "V3", "abc"))
    assert str(error) == f"{SOURCE}: column 'V3', row 17: non-numeric value 'abc'"
    assert (error.row, error.column, error.value, error.problem) == (17, "V3", "abc", "non-numeric value")


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("V1", "NA", "non-numeric value"),
        ("V28", "1,5", None),  # an extra field: a malformed row
        ("Time", "", "empty value"),
        ("V10", "nan", "non-finite value"),
        ("Amount", "inf", "non-finite value"),
        ("V7", "-inf", "non-finite value"),
        ("Class", "2", "class label must be 0 or 1, got"),
        ("Class", "0.5", "class label must be 0 or 1, got"),
        ("Class", "yes", "non-numeric value"),
        ("Amount", "-3.5", "negative amount"),
    ],
)
def test_bad_values_are_located(lines, column, value, problem):
    error = raises(with_cell(lines, 9, column, value))
    assert error.row == 9
    if problem is None:
        assert error.problem.startswith("malformed row: expected 31 fields, got 32")
    else:
        assert (error.column, error.value, error.problem) == (column, value, problem)
        assert f"column '{column}', row 9: {problem} '{value}'" in str(error)


def test_the_first_offending_row_is_reported(lines):
    data = with_cell(with_cell(lines, 20, "V2", "x").decode().splitlines(), 12, "Amount", "-1")
    error = raises(data)
    assert (error.row, error.column) == (12, "Amount")
    # Within a row, the leftmost column.
    data = with_cell(with_cell(lines, 5, "V20", "").decode().splitlines(), 5, "V4", "oops")
    assert (raises(data).row, raises(data).column) == (5, "V4")


def test_empty_file_and_header_only(lines):
    assert raises(b"").problem == "empty file"
    assert raises(b"  \n").problem == "empty file"
    assert raises((lines[0] + "\n").encode()).problem == "no data rows"


def test_missing_columns_are_named(lines):
    without_class = "\n".join(line.rsplit(",", 1)[0] for line in lines).encode()
    error = raises(without_class)
    assert error.column == "Class" and "column 'Class'" in str(error) and "missing required column" in str(error)

    table = pd.read_csv(io.BytesIO("\n".join(lines).encode())).drop(columns=["V3", "Amount"])
    error = raises(table.to_csv(index=False).encode())
    assert error.column == ("V3", "Amount") and "'V3', 'Amount'" in str(error)


def test_headerless_file_says_so(lines):
    assert "is the header row missing?" in str(raises("\n".join(lines[1:]).encode()))


def test_duplicated_required_column_is_refused(lines):
    data = "\n".join(f"{line},{line.split(',')[1]}" for line in lines).encode()
    assert raises(data).column == "V1"


def test_extra_columns_are_ignored_and_reported():
    df = generate_transactions(50, seed=3)
    extra = df.assign(merchant_id="M-1").iloc[:, ::-1]  # reordered, with an extra text column
    back = read_raw_csv(extra.to_csv(index=True).encode(), SOURCE)
    pd.testing.assert_frame_equal(back, df)
    assert back.attrs["ignored_columns"] == ["", "merchant_id"]


@settings(max_examples=30, deadline=None)
@given(n_rows=st.integers(1, 60), seed=st.integers(0, 2**32 - 1), fraud_rate=st.floats(0.0, 1.0))
def test_any_generated_set_round_trips(n_rows, seed, fraud_rate):
    df = generate_transactions(n_rows, fraud_rate=fraud_rate, seed=seed)
    back = read_raw_csv(to_csv_bytes(df), SOURCE)
    pd.testing.assert_frame_equal(back, df)
    assert all(back[c].dtype == np.float64 for c in FEATURE_COLUMNS)


@settings(max_examples=40, deadline=None)
@given(
    row=st.integers(1, 40),
    column=st.sampled_from(RAW_COLUMNS),
    value=st.sampled_from(["abc", "", "nan", "inf", "1e", "--1", "NULL", "#N/A", "0x1"]),
)
def test_any_single_bad_cell_is_found(lines, row, column, value):
    error = raises(with_cell(lines, row, column, value))
    assert (error.row, error.column, error.value) == (row, column, value)


def _customer_csv(stamps: list[str], customers: list[str]) -> bytes:
    frame = generate_transactions(len(stamps), seed=3)
    frame.insert(0, "timestamp", stamps)
    frame.insert(0, "merchant", ["T-1"] * len(stamps))
    frame.insert(0, "customerId", customers)
    return frame.to_csv(index=False).encode()


def test_customer_columns_are_read_with_an_empty_cell_as_a_missing_customer():
    data = _customer_csv(["2025-12-01T10:00:00Z", "2025-12-01T11:00:00Z"], ["C-1", ""])
    assert has_customer_columns(data, "s3://b/raw.csv") and not has_customer_columns(to_csv_bytes(generate_transactions(3)), "x")
    table = read_customer_columns(data, "s3://b/raw.csv")
    assert table.column_names == ["customerId", "merchant", "timestamp", "Amount", "Class"]
    assert table.column("customerId").to_pylist() == ["C-1", None]
    assert str(table.schema.field("Class").type) == "int64"


def test_a_bad_timestamp_in_the_customer_columns_is_named_by_row_and_value():
    data = _customer_csv(["2025-12-01T10:00:00Z", "yesterday"], ["C-1", "C-2"])
    with pytest.raises(RawDataError, match=r"s3://b/raw.csv: column 'timestamp', row 2: timestamp is not an ISO-8601 time: 'yesterday'"):
        read_customer_columns(data, "s3://b/raw.csv")
