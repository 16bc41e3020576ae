"""Reading and validating the raw training CSV (the Kaggle credit-card schema: Time, V1..V28, Amount,
Class).

A bad file must fail with a message a person can act on: the file, the 1-based data row, the column
and the offending value. The common case (a good file) takes the fast path, pyarrow's multi-threaded
reader with explicit float64 types; only when that rejects the file does a slower scan look for the
first offending row, so the good path costs nothing for the diagnostics.

Extra columns are ignored, not rejected: the training contract is FEATURE_COLUMNS plus Class, and an
export that carries an index or an upstream id column changes nothing the model sees. They are
listed in `df.attrs["ignored_columns"]` so a caller can record them. Missing, duplicated or
misspelled required columns are errors.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from fraud_assets.lib.config import CUSTOMER_FIELDS, LABEL_COLUMN, RAW_COLUMNS

AMOUNT_COLUMN = "Amount"
_NON_BLANK = re.compile(rb"\S")


class RawDataError(ValueError):
    """A raw CSV that cannot be used for training. `row` is the 1-based data row (the header is not
    a data row) or None for file-level problems; `column` a column name, a tuple of names, or None;
    `value` the offending text, or None."""

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        row: int | None = None,
        column: str | tuple[str, ...] | None = None,
        value: str | None = None,
    ) -> None:
        self.source, self.problem, self.row, self.column, self.value = source, problem, row, column, value
        where = []
        if isinstance(column, tuple):
            where.append("columns " + ", ".join(repr(c) for c in column))
        elif column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        message = f"{source}: " + (", ".join(where) + ": " if where else "") + problem
        if value is not None:
            message += f" {value!r}"
        super().__init__(message)


def read_raw_csv(data: bytes | Path, source: str) -> pd.DataFrame:
    """The validated training frame: RAW_COLUMNS in order, float64 features, int64 Class.
    Raises RawDataError as `read_raw_table` does."""
    header = _header(data, source)
    # split_blocks: one numpy array per column straight from arrow, no consolidation copy.
    df = read_raw_table(data, source).to_pandas(split_blocks=True, self_destruct=True)
    df[LABEL_COLUMN] = df[LABEL_COLUMN].astype(np.int64)
    df.attrs["ignored_columns"] = [c for c in header if c not in RAW_COLUMNS]
    return df


def read_raw_table(data: bytes | Path, source: str) -> pa.Table:
    """The validated training rows as an arrow table: RAW_COLUMNS, all float64 (Class holds 0.0 or
    1.0).

    `data` is the CSV's bytes or a local file holding them: read from a file, the text never sits
    in memory next to the parsed table (a 2.85M-row file is ~0.8 GB of text).

    Raises RawDataError for an empty file, no data rows, missing or duplicated required columns,
    malformed rows, non-numeric / empty / non-finite values, a Class other than 0 or 1 and a negative
    Amount, naming the first offending row, column and value."""
    header = _header(data, source)
    missing = tuple(c for c in RAW_COLUMNS if c not in header)
    if missing:
        hint = " (is the header row missing?)" if len(missing) == len(RAW_COLUMNS) else ""
        raise RawDataError(
            source,
            ("missing required columns" if len(missing) > 1 else "missing required column") + hint,
            column=missing if len(missing) > 1 else missing[0],
        )
    duplicated = tuple(c for c in RAW_COLUMNS if header.count(c) > 1)
    if duplicated:
        raise RawDataError(source, "required column appears more than once", column=duplicated[0])

    try:
        table = pacsv.read_csv(
            str(data) if isinstance(data, Path) else pa.py_buffer(data),
            convert_options=_convert_options(pa.float64()),
        )
    except pa.ArrowInvalid as err:
        # The fast reader says what went wrong but not reliably where: find the first offending row.
        text = data.read_bytes() if isinstance(data, Path) else data
        raise _locate_read_error(text, source, header, err) from None
    if table.num_rows == 0:
        raise RawDataError(source, "no data rows")

    problems = []
    for position, name in _file_order(header):
        column = table.column(name)
        if not _has_bad_value(name, column):  # checked in arrow: no copy of a good column
            continue
        found = _value_problem(name, column.to_numpy(zero_copy_only=False), column.is_null().to_numpy(zero_copy_only=False))
        if found is not None:
            problems.append((found[0], position, name, *found[1:]))
    if problems:
        # The first offending row; within it, the leftmost column.
        index, _, name, problem, value = min(problems)
        raise RawDataError(source, problem, row=index + 1, column=name, value=value)

    return table.select(list(RAW_COLUMNS))


def has_customer_columns(data: bytes | Path, source: str) -> bool:
    """Whether the CSV's header names every CUSTOMER_FIELDS column (the simulated world's export)."""
    header = _header(data, source)
    return all(c in header for c in CUSTOMER_FIELDS)


def read_customer_columns(data: bytes | Path, source: str) -> pa.Table:
    """CUSTOMER_FIELDS as strings (an empty cell is null: a transaction without customer or
    terminal), then Amount and Class, in file order: what the history features read. Amount and
    Class are validated as `read_raw_table` validates them; a timestamp that is not an ISO-8601
    time raises RawDataError naming its row and value."""
    numbers = (AMOUNT_COLUMN, LABEL_COLUMN)
    try:
        table = pacsv.read_csv(
            str(data) if isinstance(data, Path) else pa.py_buffer(data),
            convert_options=pacsv.ConvertOptions(
                column_types={**{c: pa.string() for c in CUSTOMER_FIELDS}, **{c: pa.float64() for c in numbers}},
                include_columns=[*CUSTOMER_FIELDS, *numbers],
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as err:
        text = data.read_bytes() if isinstance(data, Path) else data
        raise _locate_read_error(text, source, _header(text, source), err) from None
    for name in numbers:
        column = table.column(name)
        if _has_bad_value(name, column):
            index, problem, value = _value_problem(
                name, column.to_numpy(zero_copy_only=False), column.is_null().to_numpy(zero_copy_only=False)
            )
            raise RawDataError(source, problem, row=index + 1, column=name, value=value)
    stamps = table.column("timestamp")
    try:
        _parse_times(stamps)
    except ValueError as err:
        index = int(str(err))
        raise RawDataError(
            source, "timestamp is not an ISO-8601 time:", row=index + 1, column="timestamp", value=stamps[index].as_py()
        ) from None
    return table.set_column(table.schema.get_field_index(LABEL_COLUMN), LABEL_COLUMN, pc.cast(table.column(LABEL_COLUMN), pa.int64()))


def _parse_times(stamps: pa.ChunkedArray) -> None:
    """Raises ValueError(index) at the first timestamp pandas cannot read as ISO-8601."""
    values = pd.Series(stamps.to_numpy(zero_copy_only=False), dtype=object)
    parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna().to_numpy() & values.notna().to_numpy()
    if bad.any():
        raise ValueError(str(int(np.argmax(bad))))


def _header(data: bytes | Path, source: str) -> list[str]:
    if isinstance(data, Path):
        first_line = _first_line_of_file(data, source)
    else:
        # Searches, not strip/split: those would copy the whole (~150 MB) file.
        if _NON_BLANK.search(data) is None:
            raise RawDataError(source, "empty file")
        end = data.find(b"\n")
        first_line = data if end < 0 else data[:end]
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RawDataError(source, "header row is not UTF-8 text", row=None) from None
    return next(csv.reader([text.rstrip("\r")]), [])


def _first_line_of_file(path: Path, source: str) -> bytes:
    with path.open("rb") as f:
        first_line = f.readline().rstrip(b"\n")
        if _NON_BLANK.search(first_line) is None:  # "empty file" only if nothing follows either
            f.seek(0)
            while chunk := f.read(16 * 1024 * 1024):
                if _NON_BLANK.search(chunk):
                    return first_line
            raise RawDataError(source, "empty file")
    return first_line


def _convert_options(column_type: pa.DataType) -> pacsv.ConvertOptions:
    # Only an empty cell is null: "NA", "null" and friends are non-numeric text, reported as such.
    return pacsv.ConvertOptions(
        column_types={c: column_type for c in RAW_COLUMNS},
        include_columns=list(RAW_COLUMNS),
        null_values=[""],
        strings_can_be_null=False,
    )


def _file_order(header: list[str]) -> list[tuple[int, str]]:
    """(position in the file, name) of the required columns, in file order."""
    return [(header.index(name), name) for name in sorted(RAW_COLUMNS, key=header.index)]


def _has_bad_value(name: str, column: pa.ChunkedArray) -> bool:
    """Whether _value_problem would find something (empty, non-finite, or out of range)."""
    bad = pc.invert(pc.is_finite(column))
    if name == LABEL_COLUMN:
        bad = pc.or_kleene(bad, pc.and_kleene(pc.not_equal(column, 0.0), pc.not_equal(column, 1.0)))
    elif name == AMOUNT_COLUMN:
        bad = pc.or_kleene(bad, pc.less(column, 0.0))
    return column.null_count > 0 or bool(pc.any(bad).as_py())


def _value_problem(name: str, values: np.ndarray, empty: np.ndarray) -> tuple[int, str, str] | None:
    """(0-based index, problem, value) of the first bad value in a parsed float column, or None.
    `empty` marks empty cells, which arrive here as NaN like the text "nan" does."""
    bad = ~np.isfinite(values)
    if name == LABEL_COLUMN:
        bad |= (values != 0) & (values != 1)
    elif name == AMOUNT_COLUMN:
        bad |= values < 0
    if not bad.any():
        return None
    index = int(np.argmax(bad))
    value = float(values[index])
    if empty[index]:
        return index, "empty value", ""
    if not np.isfinite(value):
        return index, "non-finite value", str(value)
    if name == LABEL_COLUMN:
        return index, "class label must be 0 or 1, got", _number_text(value)
    return index, "negative amount", _number_text(value)


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _locate_read_error(data: bytes, source: str, header: list[str], err: pa.ArrowInvalid) -> RawDataError:
    message = str(err)
    if "CSV parse error" in message:
        return _locate_malformed_row(data, source, message)
    if "conversion error" not in message:
        return RawDataError(source, f"unreadable CSV: {message}")
    # Read the required columns as text and parse each one the way the fast path would.
    table = pacsv.read_csv(pa.py_buffer(data), convert_options=_convert_options(pa.string()))
    problems: list[tuple[int, int, str, str, str]] = []
    for position, name in _file_order(header):
        # The CSV reader ignores surrounding blanks in numbers; cast does not, so trim first.
        text = pc.utf8_trim_whitespace(table.column(name).combine_chunks())
        first_unparsable = _first_unparsable(text)
        parsed_prefix = pc.cast(text.slice(0, first_unparsable), pa.float64()).to_numpy(zero_copy_only=False)
        empty = pc.equal(text.slice(0, first_unparsable), "").to_numpy(zero_copy_only=False)
        found = _value_problem(name, parsed_prefix, empty)
        if found is not None:
            problems.append((found[0], position, name, *found[1:]))
        elif first_unparsable < len(text):
            raw = table.column(name)[first_unparsable].as_py()
            problem = "empty value" if not raw.strip() else "non-numeric value"
            problems.append((first_unparsable, position, name, problem, raw))
    if not problems:
        return RawDataError(source, f"unreadable CSV: {message}")
    index, _, name, problem, value = min(problems)
    return RawDataError(source, problem, row=index + 1, column=name, value=value)


def _first_unparsable(text: pa.Array) -> int:
    """Index of the first value that does not parse as float64 (len(text) if all do), by bisecting
    with the same parser the fast path used: O(n log n) only on the failure path."""
    if _parses(text):
        return len(text)
    low, high = 0, len(text) - 1  # text[:low] parses; text[:high + 1] does not
    while low < high:
        middle = (low + high) // 2
        if _parses(text.slice(0, middle + 1)):
            low = middle + 1
        else:
            high = middle
    return low


def _parses(text: pa.Array) -> bool:
    try:
        pc.cast(text, pa.float64())
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return False


def _locate_malformed_row(data: bytes, source: str, message: str) -> RawDataError:
    bad_rows: list[Any] = []

    def record(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    try:
        # Single-threaded so that the reader knows row numbers.
        pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=record),
            convert_options=_convert_options(pa.string()),
        )
    except pa.ArrowInvalid:
        pass
    if not bad_rows:
        return RawDataError(source, f"malformed CSV: {message}")
    row = bad_rows[0]
    number = row.number - 1 if row.number is not None else None  # reader counts the header line
    text = row.text if len(row.text) <= 200 else row.text[:200] + "..."
    return RawDataError(source, f"malformed row: expected {row.expected_columns} fields, got {row.actual_columns}:", row=number, value=text)
