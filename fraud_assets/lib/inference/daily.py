"""Parse and validate a daily transaction batch (`s3://fraud-detection-data/daily-batches/{date}.json`).

The batch is a JSON array of transactions::

    {"id": "T-1", "timestamp": "2024-05-01T10:00:00Z", "amount": 12.5, "category": "grocery",
     "customerId": "C-9", "merchant": "Corner Shop", "features": {"Time": 0, "V1": ..., "Amount": 12.5}}

Problems with the whole file (not JSON, not an array, empty) raise `BatchError`. Problems with one
record never stop the batch and never drop it silently: the record is quarantined with every
reason found, so `received == len(accepted) + len(quarantined)` always holds and a daily check can
assert it.

Validation is column-wise, a chunk of records at a time: the array's elements are decoded by the
json module (exactly as `json.loads` would decode them) `CHUNK_ROWS` at a time from a stream of
blocks, one cheap pass per field pulls a column out of the chunk's records, then numpy/pandas over
whole columns. Messages are built only for the rows that fail. So a day's parse holds the day's
arrays plus one chunk of Python objects, not a dict per transaction for the whole day (a 1M-row
day is ~0.6 GB of JSON and was ~4 GB of dicts). Whatever the streaming decoder does not settle
itself (malformed JSON, a top level that is not an array, a byte-order mark) goes to the
whole-batch path, `json.loads` of everything, which names the problem exactly.
"""

from __future__ import annotations

import codecs
import dataclasses
import itertools
import json
import math
import operator
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.lib.config import FEATURE_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.memory import release_freed_memory

# The metadata columns of an accepted transaction, in order; the features follow them.
METADATA_COLUMNS: tuple[str, ...] = (TRANSACTION_ID, "timestamp", "amount", "category", "customerId", "merchant")
QUARANTINE_COLUMNS: tuple[str, ...] = ("row", TRANSACTION_ID, "reason", "checks", "record")
_TEXT_FIELDS: tuple[str, ...] = ("category", "customerId", "merchant")
# A transaction without customer or terminal (null or absent) is scored with the features that do
# not need them: accepted, with the field missing, and counted.
OPTIONAL_TEXT_FIELDS: tuple[str, ...] = ("customerId", "merchant")

# transactionId is the DynamoDB partition key (at most 2048 bytes); 512 characters of up to
# 4 UTF-8 bytes each always fit, and real ids are far shorter.
MAX_ID_LENGTH = 512
# The batch's `amount` is what alerts show; features.Amount is what the model scores. They are one
# value written twice, so a difference beyond rounding to the cent means the record is corrupt.
AMOUNT_TOLERANCE = 0.005

# A UTC designator or numeric offset at the end: a time without one is ambiguous, not "UTC".
_HAS_OFFSET = re.compile(r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
_MISSING = object()
_NO_FIELDS: dict[str, Any] = {}
# A number literal long enough (or with an exponent big enough) that it may not fit a float64:
# only a batch holding one is parsed again with the hooks that keep such numbers' text.
_MAYBE_HUGE_NUMBER = re.compile(rb"[0-9][0-9.]{300,}|[eE][+-]?0*[0-9]{3,}")
_MAYBE_HUGE_NUMBER_TEXT = re.compile(_MAYBE_HUGE_NUMBER.pattern.decode())
_JSON_SPACE = re.compile(r"[ \t\n\r]*")  # the json module's whitespace between tokens
# Records decoded and checked at a time: the Python objects a parse holds at once (~30 MB).
CHUNK_ROWS = 10_000
_BLOCK_BYTES = 4 * 1024 * 1024


class BatchError(ValueError):
    """The whole batch is unusable (not JSON, not an array, empty): nothing in it can be trusted."""


class MissingBatchError(FileNotFoundError):
    """The day's batch object does not exist (yet): the export has not landed, nothing to score."""

    def __init__(self, bucket: str, key: str, date: str | None = None):
        self.bucket, self.key, self.date = bucket, key, date
        day = f" for {date}" if date else ""
        super().__init__(
            f"no daily batch{day} at s3://{bucket}/{key}: the upstream export has not landed; re-run this partition once the object exists"
        )


@dataclasses.dataclass(frozen=True)
class DailyBatch:
    source: str
    accepted: pd.DataFrame
    quarantined: pd.DataFrame
    received: int

    def __post_init__(self) -> None:
        # The one invariant everything downstream relies on; a violation is a bug here.
        if self.received != len(self.accepted) + len(self.quarantined):
            raise AssertionError(
                f"{self.source}: received {self.received} != accepted {len(self.accepted)} + quarantined {len(self.quarantined)}"
            )

    def summary(self) -> dict[str, Any]:
        """Counts for the stage's output.json and the asset's metadata."""
        checks: Counter[str] = Counter()
        for value in self.quarantined["checks"]:
            checks.update(value.split(","))
        return {
            "source": self.source,
            "received": self.received,
            "accepted": len(self.accepted),
            "quarantined": len(self.quarantined),
            "quarantine_checks": dict(sorted(checks.items())),
        }


def parse_daily_batch(
    data: bytes | Path,
    source: str,
    feature_names: Sequence[str] = FEATURE_COLUMNS,
    owner_of: Callable[[list[tuple[str, str]]], dict[tuple[str, str], str]] | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> DailyBatch:
    """Parse a daily batch, its bytes or a local file holding them (read a block at a time, so the
    text never sits whole in memory); `source` (e.g. its s3:// URI) names the batch in every error.

    Accepted: one row per valid transaction, columns `METADATA_COLUMNS` then `feature_names`
    (float64); `timestamp` is datetime64[us, UTC]. Quarantined: `row` (1-based position in the
    array), `transactionId` (when the record has a string id), `reason` ("row 17: feature 'V3' is
    'abc', not a number; ..."), `checks` (comma-joined check names, for counting) and `record` (the
    raw record as JSON text). A repeated id keeps its first valid occurrence. Keys beyond
    `feature_names` in a record's features are ignored: the model reads only its own features.

    `owner_of` maps the (transactionId, timestamp text) keys of the otherwise valid rows to the day
    that already stored a score under that key, if another day did (e.g. `score_store.stored_batch_dates`
    for this batch's date). Such a row is quarantined (`reused_id`): a stored score belongs to one day,
    and storing it again for this day would silently move it out of the day that owns it. It is
    asked once per chunk of `chunk_rows` records.
    """
    feature_names = tuple(feature_names)
    clash = set(feature_names) & set(METADATA_COLUMNS)
    if clash or len(set(feature_names)) != len(feature_names) or not feature_names:
        raise ValueError(f"feature names must be unique, non-empty and distinct from {METADATA_COLUMNS}: {feature_names}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, not {chunk_rows}")
    try:
        return _parse_chunks(_array_chunks(_blocks(data), chunk_rows), source, feature_names, owner_of)
    except _NotStreamable:
        pass  # out of the except block, so the stream's buffers are gone before the whole batch is read
    # The whole-batch path: json.loads of everything raises the exact error (line, column) or, for
    # what the stream leaves to it (a byte-order mark, UTF-16), decodes the batch whole.
    records = _load_array(data.read_bytes() if isinstance(data, Path) else data, source)
    return _parse_chunks([records], source, feature_names, owner_of)


def _parse_chunks(
    chunks: Iterable[list[Any]],
    source: str,
    feature_names: tuple[str, ...],
    owner_of: Callable[[list[tuple[str, str]]], dict[tuple[str, str], str]] | None,
) -> DailyBatch:
    accepted: list[dict[str, Any]] = []
    quarantined: list[pd.DataFrame] = []
    seen = _SeenIds()
    received = 0
    for records in chunks:
        part, quarantine = _parse_chunk(records, received, feature_names, owner_of, seen)
        accepted.append(part)
        quarantined.append(quarantine)
        received += len(records)
        del records, part, quarantine
        release_freed_memory()  # the chunk's records, freed between the kept arrays (a few ms)
    # Joined a column at a time, each column's chunks released as it is joined, and framed without
    # a consolidating copy: the day's arrays exist once, not twice, at the peak.
    columns = {}
    for name in list(accepted[0]):
        pieces = [pd.Series(part.pop(name), copy=False) for part in accepted]
        columns[name] = pieces[0].array if len(pieces) == 1 else pd.concat(pieces, ignore_index=True).array
        del pieces
        release_freed_memory()  # the column's chunks
    return DailyBatch(
        source=source,
        accepted=pd.DataFrame(columns, copy=False),
        quarantined=quarantined[0] if len(quarantined) == 1 else pd.concat(quarantined, ignore_index=True),
        received=received,
    )


def _parse_chunk(
    records: list[Any],
    offset: int,
    feature_names: tuple[str, ...],
    owner_of: Callable[[list[tuple[str, str]]], dict[tuple[str, str], str]] | None,
    seen: "_SeenIds",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The accepted columns and the quarantine of one chunk of records, the first of which is the
    batch's record number `offset` (0-based); `seen` carries the ids kept by earlier chunks."""
    n = len(records)
    problems = _Problems(n, offset)

    is_object = np.fromiter((type(r) is dict for r in records), dtype=bool, count=n)
    for i in np.flatnonzero(~is_object):
        problems.add(i, "not_object", f"record is {_json_type(records[i])}, not an object")
    objects = [r if type(r) is dict else _NO_FIELDS for r in records]

    ids = [o.get("id", _MISSING) for o in objects]
    id_ok = np.fromiter((type(v) is str and 0 < len(v) <= MAX_ID_LENGTH and not v.isspace() for v in ids), dtype=bool, count=n)
    for i in np.flatnonzero(~id_ok & is_object):
        v = ids[i]
        if v is _MISSING:
            problems.add(i, "missing_id", "missing id")
        elif type(v) is str and len(v) > MAX_ID_LENGTH:
            problems.add(i, "invalid_id", f"id is {len(v)} characters long, more than {MAX_ID_LENGTH}")
        else:
            problems.add(i, "invalid_id", f"id is {_show(v)}, not a non-empty string")

    timestamps = _timestamps(objects, is_object, problems)
    amount = _number_column([o.get("amount", _MISSING) for o in objects], "amount", "amount", is_object, problems)
    negative = is_object & np.isfinite(amount) & (amount < 0)
    for i in np.flatnonzero(negative):
        problems.add(i, "negative_amount", f"amount is {_show(objects[i]['amount'])}, negative")

    text = {}
    for field in _TEXT_FIELDS:
        values = [o.get(field, _MISSING) for o in objects]
        optional = field in OPTIONAL_TEXT_FIELDS
        ok = np.fromiter((type(v) is str or (optional and (v is None or v is _MISSING)) for v in values), dtype=bool, count=n)
        for i in np.flatnonzero(~ok & is_object):
            v = values[i]
            if v is _MISSING:
                problems.add(i, f"missing_{field}", f"missing {field}")
            else:
                problems.add(i, f"invalid_{field}", f"{field} is {_show(v)}, not a string")
        text[field] = values
    # JSON's \ud800 escapes can leave a lone UTF-16 surrogate in a string: not Unicode text, so no
    # UTF-8 (parquet, DynamoDB, SNS) can hold it. That row is quarantined, not the whole day.
    for field, values in (("id", ids), *text.items()):
        for i in np.flatnonzero(np.fromiter((type(v) is str and not _is_utf8(v) for v in values), dtype=bool, count=n)):
            problems.add(i, f"invalid_{field}", f"{field} {_show(values[i])} holds a lone UTF-16 surrogate, not valid Unicode text")

    features = _features(objects, is_object, feature_names, problems)
    if "Amount" in features:
        # Compare only where both are valid numbers; the invalid side already has its reason.
        both = is_object & np.isfinite(amount) & np.isfinite(features["Amount"])
        differs = both & ~np.isclose(amount, features["Amount"], rtol=0.0, atol=AMOUNT_TOLERANCE)
        for i in np.flatnonzero(differs):
            problems.add(
                i,
                "amount_mismatch",
                f"amount {_show(objects[i]['amount'])} differs from features.Amount {_show(objects[i]['features']['Amount'])}",
            )

    _duplicates(ids, problems, seen)
    if owner_of is not None:
        _reused(ids, timestamps, owner_of, problems)

    keep = np.flatnonzero(~problems.flagged)
    accepted = {
        TRANSACTION_ID: pd.array(_take(ids, keep), dtype="str"),
        "timestamp": timestamps.array[keep],
        "amount": amount[keep],
        **{f: pd.array([None if v is _MISSING else v for v in _take(text[f], keep)], dtype="str") for f in _TEXT_FIELDS},
        **{name: features[name][keep] for name in feature_names},
    }
    return accepted, problems.frame(records, ids)


def format_timestamps(values: pd.Series | Sequence[Any]) -> list[str]:
    """ISO-8601 UTC text with a fixed width (`2024-05-01T10:00:00.000000Z`), so that text order is
    time order: the form the DynamoDB sort key and alert messages use. Strings pass through."""
    micros = utc_microseconds(values)
    if micros is not None:
        text = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
        return [t + "Z" for t in text.tolist()]
    return [v.isoformat() if hasattr(v, "isoformat") else str(v) for v in pd.Series(values).tolist()]


def utc_microseconds(values: pd.Series | Sequence[Any]) -> np.ndarray | None:
    """int64 microseconds since the epoch (UTC) of datetime values, what `format_timestamps` writes;
    None for values that are not datetimes (strings, which it passes through)."""
    series = pd.Series(values)
    if series.dtype == object and len(series) and not any(isinstance(v, str) for v in series.tolist()):
        series = pd.to_datetime(series, utc=True)  # Timestamps/datetimes in an object column
    if not (isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series.dtype)):
        return None
    if series.dt.tz is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    if series.isna().any():
        raise ValueError(f"missing timestamp at position {int(np.flatnonzero(series.isna().to_numpy())[0])}")
    return series.to_numpy(dtype="datetime64[us]").view(np.int64)


# -- whole-batch parsing ------------------------------------------------------------------------


class _NotStreamable(Exception):
    """Something the streaming decoder leaves to the whole-batch path (`json.loads` of everything),
    which either names the problem exactly or decodes what the stream does not (a BOM, UTF-16)."""


def _blocks(data: bytes | Path) -> Iterator[bytes]:
    if isinstance(data, Path):
        with data.open("rb") as f:
            yield from iter(lambda: f.read(_BLOCK_BYTES), b"")
    else:
        view = memoryview(data)
        for start in range(0, len(view), _BLOCK_BYTES):
            yield view[start : start + _BLOCK_BYTES]


def _array_chunks(blocks: Iterator[bytes], chunk_rows: int) -> Iterator[list[Any]]:
    """The elements of the JSON array in `blocks`, `chunk_rows` at a time (at least one chunk, maybe
    empty), each decoded by the json module's own scanner (`raw_decode`) from UTF-8 text decoded
    as `json.loads` decodes bytes: the values are the ones `json.loads` of the whole array gives.
    Raises _NotStreamable on anything else: a value that does not decode even with the rest of
    the input, a missing `[`, `,` or `]`, data after the array, or an encoding other than UTF-8."""
    first = next(blocks, b"")
    if json.detect_encoding(bytes(first[:4])) != "utf-8":
        raise _NotStreamable
    decode = codecs.getincrementaldecoder("utf-8")("surrogatepass").decode
    plain, hooked = json.JSONDecoder(), json.JSONDecoder(parse_float=_json_float, parse_int=_json_int)
    text, pos, eof, huge_at = "", 0, False, 0

    def more() -> bool:
        """Text after what `pos` has passed, at least doubled: a value longer than a block (or a
        broken one, decoded again until the input ends) costs linear time, not quadratic."""
        nonlocal text, pos, eof, huge_at
        if eof:
            return False
        pending, added = [text[pos:]], 0
        while not eof and added <= len(pending[0]):
            block = next(blocks, None)
            eof = block is None
            try:
                pending.append(decode(b"" if eof else block, eof))
            except UnicodeDecodeError:
                raise _NotStreamable from None
            added += len(pending[-1])
        text, pos = "".join(pending), 0
        huge_at = _next_huge(text, 0)
        return True

    def skip_space() -> str:
        """The next character that is not JSON whitespace ("" at the end), `pos` on it."""
        nonlocal pos
        while True:
            pos = _JSON_SPACE.match(text, pos).end()
            if pos < len(text):
                return text[pos]
            if not more():
                return ""

    def value() -> Any:
        nonlocal pos, huge_at
        while True:
            # The hooks (which keep a number too big for a float64 as its text) only where a
            # literal may be one: they cost a Python call per number.
            decoder = hooked if huge_at < len(text) else plain
            try:
                found, end = decoder.raw_decode(text, pos)
            except (ValueError, RecursionError):
                found, end = None, None
            # A value that ends with the text may go on in the next block (a number, `1` of `12`).
            if end is not None and (end < len(text) or eof):
                pos = end
                if pos > huge_at:
                    huge_at = _next_huge(text, pos)
                return found
            if not more():
                raise _NotStreamable

    try:
        text = decode(first)
    except UnicodeDecodeError:
        raise _NotStreamable from None
    huge_at = _next_huge(text, 0)
    if skip_space() != "[":
        raise _NotStreamable
    pos += 1
    chunk: list[Any] = []
    yielded = False
    if skip_space() == "]":
        pos += 1
    else:
        while True:
            chunk.append(value())
            if len(chunk) == chunk_rows:
                yield chunk
                chunk, yielded = [], True
            separator = skip_space()
            pos += 1
            if separator == "]":
                break
            if separator != "," or not skip_space():
                raise _NotStreamable
    if skip_space():
        raise _NotStreamable  # data after the array
    if chunk or not yielded:
        yield chunk


def _next_huge(text: str, pos: int) -> int:
    match = _MAYBE_HUGE_NUMBER_TEXT.search(text, pos)
    return match.start() if match else len(text)


def _load_array(data: bytes, source: str) -> list[Any]:
    if not data or not data.strip():
        raise BatchError(f"{source}: the batch is empty ({len(data or b'')} bytes, no JSON)")
    try:
        if _MAYBE_HUGE_NUMBER.search(data):
            value = json.loads(data, parse_float=_json_float, parse_int=_json_int)
        else:
            value = json.loads(data)
    except json.JSONDecodeError as err:
        raise BatchError(f"{source}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    except UnicodeDecodeError as err:
        raise BatchError(f"{source}: not UTF-8 text (byte {err.start}): {err.reason}") from err
    except RecursionError as err:
        raise BatchError(f"{source}: JSON nested too deeply to parse") from err
    if not isinstance(value, list):
        raise BatchError(f"{source}: the top level is {_json_type(value)}, not an array of transactions")
    return value


# -- column checks ------------------------------------------------------------------------------


def _timestamps(objects: list[dict], active: np.ndarray, problems: "_Problems") -> pd.Series:
    values = [o.get("timestamp", _MISSING) for o in objects]
    n = len(values)
    is_text = np.fromiter((type(v) is str for v in values), dtype=bool, count=n)
    for i in np.flatnonzero(~is_text & active):
        v = values[i]
        if v is _MISSING:
            problems.add(i, "missing_timestamp", "missing timestamp")
        else:
            problems.add(i, "invalid_timestamp", f"timestamp is {_show(v)}, not an ISO-8601 string")
    text = pd.Series([v if t else None for v, t in zip(values, is_text)], dtype=object)
    has_offset = text.str.contains(_HAS_OFFSET, na=False).to_numpy(dtype=bool)
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    # One unit for every batch, whatever precision the strings carry (parquet, fixed-width keys).
    parsed = parsed.dt.as_unit("us")
    invalid = is_text & parsed.isna().to_numpy()
    for i in np.flatnonzero(invalid):
        problems.add(i, "invalid_timestamp", f"timestamp {_show(values[i])} is not a valid ISO-8601 time")
    # pandas reads a time without offset as UTC; the batch promises UTC, so say which it was.
    for i in np.flatnonzero(is_text & ~invalid & ~has_offset):
        problems.add(i, "invalid_timestamp", f"timestamp {_show(values[i])} has no UTC designator (Z or +00:00)")
    return parsed.where(pd.Series(has_offset)).reset_index(drop=True)


def _features(objects: list[dict], active: np.ndarray, names: tuple[str, ...], problems: "_Problems") -> dict[str, np.ndarray]:
    raw = [o.get("features", _MISSING) for o in objects]
    n = len(raw)
    is_object = np.fromiter((type(f) is dict for f in raw), dtype=bool, count=n)
    for i in np.flatnonzero(~is_object & active):
        v = raw[i]
        if v is _MISSING:
            problems.add(i, "missing_features", "missing features")
        else:
            problems.add(i, "invalid_features", f"features is {_json_type(v)}, not an object")
    # Pull all features out with one C-level itemgetter per record, then transpose; only when a
    # record lacks a feature fall back to a lookup per feature that can tell what is missing.
    placeholder = dict.fromkeys(names, 0.0)
    feats = [f if type(f) is dict else placeholder for f in raw]
    active = active & is_object
    getter = operator.itemgetter(*names) if len(names) > 1 else (lambda f, key=names[0]: (f[key],))
    try:
        rows = list(map(getter, feats))
    except KeyError:
        rows = None
    matrix = _number_matrix(rows, len(names)) if rows is not None else None
    if matrix is not None:
        out = {name: matrix[:, j] for j, name in enumerate(names)}
    else:
        if rows is None:
            columns = [[f.get(name, _MISSING) for f in feats] for name in names]
        else:
            columns = [list(c) for c in zip(*rows)] if rows else [[] for _ in names]
        out = {name: _number_column(column, f"feature {name!r}", "feature", active, problems) for name, column in zip(names, columns)}
    for column in out.values():
        column[~is_object] = np.nan  # the placeholder's values are no one's features
    return out


def _number_matrix(rows: list[tuple], width: int) -> np.ndarray | None:
    """The common case in one step: every value a finite JSON number. None means "look closer"."""
    if not set(map(type, itertools.chain.from_iterable(rows))) <= {float, int}:
        return None
    try:
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), width)
    except OverflowError:
        return None
    # Column-major, so each feature column handed on is contiguous.
    return np.asfortranarray(matrix) if np.isfinite(matrix).all() else None


def _number_column(values: list[Any], label: str, check: str, active: np.ndarray, problems: "_Problems") -> np.ndarray:
    """float64 column of JSON numbers; NaN where a row has no valid number (with its reason)."""
    n = len(values)
    kinds = set(map(type, values))
    out: np.ndarray | None = None
    if kinds <= {float, int}:
        try:
            out = np.array(values, dtype=np.float64) if n else np.empty(0, dtype=np.float64)
        except OverflowError:  # an integer beyond float range: sort it out row by row below
            out = None
    if out is None:
        # bool is an int subclass in Python but not a number in JSON: compare exact types.
        is_number = np.fromiter((type(v) is float or type(v) is int for v in values), dtype=bool, count=n)
        out = np.full(n, np.nan)
        for i in np.flatnonzero(is_number):
            out[i] = _to_float(values[i])
        for i in np.flatnonzero(~is_number & active):
            v = values[i]
            if v is _MISSING:
                problems.add(i, f"missing_{check}", f"missing {label}")
            elif type(v) is HugeNumber:
                problems.add(i, f"{check}_out_of_range", f"{label} is {v}, beyond the float64 range")
            else:
                problems.add(i, f"{check}_not_number", f"{label} is {_show(v)}, not a number")
        number_rows = is_number
    else:
        number_rows = np.ones(n, dtype=bool)
    for i in np.flatnonzero(number_rows & active & ~np.isfinite(out)):
        problems.add(i, f"{check}_not_finite", f"{label} is {_show(values[i])}, not a finite number")
    return out


def _duplicates(ids: list[Any], problems: "_Problems", seen: "_SeenIds") -> None:
    # Among rows that are otherwise valid: a corrupt first copy must not push out a good second one.
    candidates = np.flatnonzero(~problems.flagged)
    if not len(candidates):
        return
    values = np.empty(len(candidates), dtype=object)
    values[:] = _take(ids, candidates)
    hashes = pd.util.hash_array(values)
    earlier = seen.first_rows(values, hashes)
    repeated = pd.Index(values, dtype=object).duplicated(keep="first")
    first_here = dict(zip(values[~repeated].tolist(), candidates[~repeated] + problems.offset))
    for j in np.flatnonzero(repeated | (earlier >= 0)):
        first = earlier[j] if earlier[j] >= 0 else first_here[values[j]]
        problems.add(candidates[j], "duplicate_id", f"duplicate id {_show(values[j])}, first seen at row {first + 1}")
    new = ~repeated & (earlier < 0)
    seen.add(values[new], hashes[new], candidates[new] + problems.offset)


class _SeenIds:
    """The first row (0-based, in the batch) of every id kept so far, found by a 64-bit hash of the
    id and confirmed by comparing the id itself: ~40 bytes an id in numpy and arrow arrays, instead
    of a Python str and a dict entry per transaction of the day. Runs of sorted arrays, merged while
    a run is at least as long as the one before it: O(log n) runs to search."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray, pa.Array]] = []  # (sorted hashes, rows, ids)

    def first_rows(self, ids: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        out = np.full(len(ids), -1, dtype=np.int64)
        for run_hashes, rows, run_ids in self._runs:
            at = np.searchsorted(run_hashes, hashes)
            hit = at < len(run_hashes)
            hit[hit] = run_hashes[at[hit]] == hashes[hit]
            for j in np.flatnonzero(hit):
                k = at[j]
                # Every entry of the run with that hash: a collision is not a duplicate.
                while k < len(run_hashes) and run_hashes[k] == hashes[j]:
                    if run_ids[k].as_py() == ids[j] and (out[j] < 0 or rows[k] < out[j]):
                        out[j] = rows[k]
                    k += 1
        return out

    def add(self, ids: np.ndarray, hashes: np.ndarray, rows: np.ndarray) -> None:
        if not len(ids):
            return
        self._runs.append((hashes, rows, pa.array(ids, type=pa.string())))
        while len(self._runs) > 1 and len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            (h2, r2, i2), (h1, r1, i1) = self._runs.pop(), self._runs.pop()
            self._runs.append((np.concatenate([h1, h2]), np.concatenate([r1, r2]), pa.concat_arrays([i1, i2])))
        hashes, rows, ids = self._runs[-1]
        order = np.argsort(hashes, kind="stable")
        self._runs[-1] = (hashes[order], rows[order], ids.take(order))


def _reused(ids: list[Any], timestamps: pd.Series, owner_of, problems: "_Problems") -> None:
    candidates = np.flatnonzero(~problems.flagged)
    if not len(candidates):
        return
    keys = list(zip(_take(ids, candidates), format_timestamps(timestamps.iloc[candidates])))
    owners = owner_of(keys)
    for row, key in zip(candidates, keys):
        if key in owners:
            problems.add(
                row,
                "reused_id",
                f"id {_show(key[0])} at {key[1]} is already stored for {owners[key]}: "
                "a transaction belongs to one day (a replayed or reused id)",
            )


# -- helpers ------------------------------------------------------------------------------------


class HugeNumber(str):
    """A JSON number literal that does not fit a float64 (e.g. 2 MB of digits, or 1e999), kept as its
    text so the reason says what it was instead of 'inf'."""

    def __str__(self) -> str:
        text = str.__str__(self)
        return text if len(text) <= 40 else f"a number of {len(text):,} characters ({text[:12]}...{text[-6:]})"


def _json_float(text: str) -> float | HugeNumber:
    value = float(text)
    return value if math.isfinite(value) else HugeNumber(text)


def _json_int(text: str) -> int | HugeNumber:
    # int() refuses more than 4,300 digits, and past ~309 digits no float holds the value.
    if len(text.lstrip("-")) > 308 and not math.isfinite(float(text)):
        return HugeNumber(text)
    return int(text)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


class _Problems:
    """Reasons per row, collected only for the rows that fail."""

    def __init__(self, n: int, offset: int = 0):
        self.flagged = np.zeros(n, dtype=bool)
        self.offset = offset  # rows are counted in the batch: the chunk's first row is `offset` + 1
        self._reasons: dict[int, list[tuple[str, str]]] = {}

    def add(self, row: int, check: str, message: str) -> None:
        row = int(row)
        self.flagged[row] = True
        self._reasons.setdefault(row, []).append((check, message))

    def frame(self, records: list[Any], ids: list[Any]) -> pd.DataFrame:
        rows = sorted(self._reasons)
        return pd.DataFrame(
            {
                "row": pd.array([self.offset + r + 1 for r in rows], dtype="int64"),
                TRANSACTION_ID: pd.array([ids[r] if type(ids[r]) is str and _is_utf8(ids[r]) else None for r in rows], dtype="str"),
                "reason": pd.array([f"row {self.offset + r + 1}: " + "; ".join(m for _, m in self._reasons[r]) for r in rows], dtype="str"),
                "checks": pd.array([",".join(c for c, _ in self._reasons[r]) for r in rows], dtype="str"),
                "record": pd.array([_record_text(records[r]) for r in rows], dtype="str"),
            },
            columns=list(QUARANTINE_COLUMNS),
        )


def _take(values: list[Any], rows: np.ndarray) -> list[Any]:
    return [values[i] for i in rows]


def _to_float(v: int | float) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _record_text(record: Any) -> str:
    text = json.dumps(record, ensure_ascii=False, allow_nan=True, default=str)
    # A lone surrogate cannot go to UTF-8 (parquet): escaped, the record still shows what it held.
    return text if _is_utf8(text) else json.dumps(record, ensure_ascii=True, allow_nan=True, default=str)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any, limit: int = 60) -> str:
    """The offending value as the message shows it, cut short so one huge value can't flood a log."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, allow_nan=True, default=str)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
