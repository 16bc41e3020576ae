"""Parse a day's label file (`s3://fraud-detection-data/labels/{date}.json`): the confirmed outcomes
(chargebacks, analyst decisions) of that day's transactions, arriving days later and growing.

The file is a JSON array of labels::

    {"transactionId": "T-1", "isFraud": true, "labelledAt": "2024-05-09T12:00:00Z", "source": "chargeback"}

What a label must be, since every realised metric rests on it and nothing here may guess:

- `isFraud` is JSON `true`/`false`, or the integers `0`/`1` (the form of the Kaggle `Class` column
  that labels exported from tabular systems take). Anything else (`"true"`, `1.0`, `2`, `null`) is
  quarantined as non-boolean.
- `transactionId` is a non-empty string; with `known_ids` (the day's transactions) an id outside
  them is quarantined as unknown: a label for a transaction the day never had measures nothing.
- `labelledAt` is an ISO-8601 time with a UTC designator; `source` a non-empty string.
- The same id twice with the same verdict: the first copy is kept, later ones quarantined as
  duplicates. With different verdicts every copy is quarantined as conflicting: which one is true
  is for the labelling system to settle, and until it does the transaction counts as unlabelled.

Problems with the whole file (not JSON, not an array, empty) raise `LabelFileError` naming the file;
a record's problems quarantine it with every reason found, so `received == len(accepted) +
len(quarantined)` always holds, as for daily batches.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Collection

import numpy as np
import pandas as pd

from fraud_assets.lib.config import TRANSACTION_ID
from fraud_assets.lib.inference.daily import _HAS_OFFSET, MAX_ID_LENGTH, BatchError, DailyBatch, _is_utf8, _json_type, _Problems, _show

LABEL_FIELDS: tuple[str, ...] = (TRANSACTION_ID, "isFraud", "labelledAt", "source")
_MISSING = object()


class LabelFileError(BatchError):
    """The whole label file is unusable (not JSON, not an array, empty): no label in it is trusted."""


@dataclasses.dataclass(frozen=True)
class LabelBatch(DailyBatch):
    """A label file's outcome: the daily batch's invariant and counts, plus the confirmed fraud.
    accepted: transactionId (str), isFraud (bool), labelledAt (str), source (str);
    quarantined: row, transactionId, reason, checks, record (the raw record as JSON text)."""

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "fraud": int(self.accepted["isFraud"].sum())}


def parse_label_file(data: bytes, source: str, known_ids: Collection[str] | pd.Series | None = None) -> LabelBatch:
    """Parse a label file; `source` (e.g. its s3:// URI) names the file in every error; `known_ids`
    the day's transaction ids (a set, or the transactions' id column as it is). Accepted
    labels keep the file's order; quarantined records carry `row` (1-based), `transactionId` (when
    the record has a string id), `reason`, `checks` (comma-joined names, for counting) and `record`."""
    records = _load_array(data, source)
    n = len(records)
    problems = _Problems(n)

    is_object = np.fromiter((type(r) is dict for r in records), dtype=bool, count=n)
    for i in np.flatnonzero(~is_object):
        problems.add(i, "not_object", f"label is {_json_type(records[i])}, not an object")
    objects = [r if type(r) is dict else {} for r in records]

    ids = [o.get(TRANSACTION_ID, _MISSING) for o in objects]
    known = _known(ids, known_ids)
    for i in np.flatnonzero(is_object):
        v = ids[i]
        if v is _MISSING:
            problems.add(i, "missing_transactionId", "missing transactionId")
        elif type(v) is not str or not v.strip():
            problems.add(i, "invalid_transactionId", f"transactionId is {_show(v)}, not a non-empty string")
        elif len(v) > MAX_ID_LENGTH:
            problems.add(i, "invalid_transactionId", f"transactionId is {len(v)} characters long, more than {MAX_ID_LENGTH}")
        elif not known[i]:
            problems.add(i, "unknown_transaction", f"transactionId {_show(v)} is not among the day's transactions")

    verdicts = [_verdict(o.get("isFraud", _MISSING)) for o in objects]
    for i in np.flatnonzero(is_object):
        v = objects[i].get("isFraud", _MISSING)
        if v is _MISSING:
            problems.add(i, "missing_isFraud", "missing isFraud")
        elif verdicts[i] is None:
            problems.add(i, "non_boolean", f"isFraud is {_show(v)}, not true/false (or 0/1)")

    _labelled_at(objects, is_object, problems)
    for i in np.flatnonzero(is_object):
        v = objects[i].get("source", _MISSING)
        if v is _MISSING:
            problems.add(i, "missing_source", "missing source")
        elif type(v) is not str or not v.strip():
            problems.add(i, "invalid_source", f"source is {_show(v)}, not a non-empty string")

    _duplicates_and_conflicts(ids, verdicts, problems)

    keep = np.flatnonzero(~problems.flagged)
    accepted = pd.DataFrame(
        {
            TRANSACTION_ID: pd.array([ids[i] for i in keep], dtype="str"),
            "isFraud": np.array([verdicts[i] for i in keep], dtype=bool),
            "labelledAt": pd.array([objects[i]["labelledAt"] for i in keep], dtype="str"),
            "source": pd.array([objects[i]["source"] for i in keep], dtype="str"),
        },
        columns=list(LABEL_FIELDS),
    )
    return LabelBatch(source=source, accepted=accepted, quarantined=problems.frame(records, ids), received=n)


def _load_array(data: bytes, source: str) -> list[Any]:
    if not data or not data.strip():
        raise LabelFileError(f"{source}: the label file is empty ({len(data or b'')} bytes, no JSON)")
    try:
        value = json.loads(data)
    except json.JSONDecodeError as err:
        raise LabelFileError(f"{source}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    except UnicodeDecodeError as err:
        raise LabelFileError(f"{source}: not UTF-8 text (byte {err.start}): {err.reason}") from err
    except RecursionError as err:
        raise LabelFileError(f"{source}: JSON nested too deeply to parse") from err
    if not isinstance(value, list):
        raise LabelFileError(f"{source}: the top level is {_json_type(value)}, not an array of labels")
    return value


def _known(ids: list[Any], known_ids: Collection[str] | pd.Series | None) -> np.ndarray:
    """Whether each string id is among `known_ids` (all True without them), over whole columns:
    a day's ids (a Series, e.g. the accepted transactions' column) are hashed in Arrow, not copied
    into a Python set. An id that is not valid Unicode text (a lone surrogate) is never known: no
    accepted transaction has one."""
    if known_ids is None:
        return np.ones(len(ids), dtype=bool)
    text = np.flatnonzero(np.fromiter((type(v) is str and _is_utf8(v) for v in ids), dtype=bool, count=len(ids)))
    known = np.zeros(len(ids), dtype=bool)
    if len(text):
        if not (isinstance(known_ids, pd.Series) and known_ids.dtype == "str"):
            known_ids = pd.Series([k for k in known_ids if type(k) is str and _is_utf8(k)], dtype="str")
        known[text] = pd.array([ids[i] for i in text], dtype="str").isin(known_ids)
    return known


def _verdict(value: Any) -> bool | None:
    # bool is an int subclass: test the exact types, so that only true/false and 0/1 pass.
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    return None


def _labelled_at(objects: list[dict], active: np.ndarray, problems: _Problems) -> None:
    values = [o.get("labelledAt", _MISSING) for o in objects]
    is_text = np.fromiter((type(v) is str for v in values), dtype=bool, count=len(values))
    for i in np.flatnonzero(~is_text & active):
        v = values[i]
        if v is _MISSING:
            problems.add(i, "missing_labelledAt", "missing labelledAt")
        else:
            problems.add(i, "invalid_labelledAt", f"labelledAt is {_show(v)}, not an ISO-8601 string")
    text = pd.Series([v if t else None for v, t in zip(values, is_text)], dtype=object)
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    has_offset = text.str.contains(_HAS_OFFSET, na=False).to_numpy(dtype=bool)
    for i in np.flatnonzero(is_text & (parsed.isna().to_numpy() | ~has_offset)):
        problems.add(i, "invalid_labelledAt", f"labelledAt {_show(values[i])} is not an ISO-8601 time with a UTC designator")


def _duplicates_and_conflicts(ids: list[Any], verdicts: list[bool | None], problems: _Problems) -> None:
    # Among otherwise valid labels: a broken copy must neither push out nor contradict a good one.
    rows_by_id: dict[str, list[int]] = {}
    for row in np.flatnonzero(~problems.flagged):
        rows_by_id.setdefault(ids[row], []).append(int(row))
    for tid, rows in rows_by_id.items():
        if len(rows) == 1:
            continue
        said = {verdicts[r] for r in rows}
        if len(said) > 1:
            where = "; ".join(
                f"isFraud {'true' if verdict else 'false'} at row{'s' if len(at) > 1 else ''} {', '.join(str(r + 1) for r in at)}"
                for verdict in (True, False)
                if (at := [r for r in rows if verdicts[r] is verdict])
            )
            for row in rows:
                problems.add(row, "conflicting_label", f"conflicting labels for {_show(tid)}: {where}")
        else:
            for row in rows[1:]:
                problems.add(row, "duplicate_label", f"duplicate label for {_show(tid)}, first at row {rows[0] + 1}")
