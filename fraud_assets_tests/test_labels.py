"""Label files: whole-file errors name the file; unknown ids, duplicates, conflicts, non-boolean
verdicts and missing fields are quarantined with the reason; received = accepted + quarantined."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import label_file_key
from fraud_assets.lib.errors import USER_ERRORS
from fraud_assets.lib.inference.labels import LABEL_FIELDS, LabelFileError, parse_label_file

SOURCE = "s3://fraud-detection-data/labels/2026-03-01.json"


def label(i: int, fraud: Any = False, **changes: Any) -> dict[str, Any]:
    record = {"transactionId": f"T-{i:05d}", "isFraud": fraud, "labelledAt": "2026-03-09T12:00:00Z", "source": "chargeback"}
    record.update(changes)
    return record


def parse(records: Any, known_ids=None):
    return parse_label_file(json.dumps(records).encode(), SOURCE, known_ids)


def test_label_file_key_is_the_dated_object_and_refuses_what_is_not_a_date():
    assert label_file_key("2026-03-01") == "labels/2026-03-01.json"
    for bad in ("2026-3-1", "../raw", "2026-02-30", ""):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            label_file_key(bad)


def test_a_clean_file_is_accepted_in_order_with_typed_columns_and_0_1_read_as_booleans():
    batch = parse([label(0, True), label(1, False), label(2, 1), label(3, 0, source="analyst")])
    assert batch.received == 4 and len(batch.accepted) == 4 and batch.quarantined.empty
    assert list(batch.accepted.columns) == list(LABEL_FIELDS)
    assert batch.accepted["isFraud"].dtype == np.bool_
    assert batch.accepted["isFraud"].tolist() == [True, False, True, False]
    assert batch.accepted["source"].tolist() == ["chargeback"] * 3 + ["analyst"]
    assert batch.summary() == {"source": SOURCE, "received": 4, "accepted": 4, "quarantined": 0, "fraud": 2, "quarantine_checks": {}}


@pytest.mark.parametrize(
    "record, check, text",
    [
        (label(0, "true"), "non_boolean", "isFraud is 'true', not true/false (or 0/1)"),
        (label(0, 1.0), "non_boolean", "isFraud is 1.0"),
        (label(0, 2), "non_boolean", "isFraud is 2"),
        (label(0, None), "non_boolean", "isFraud is null"),
        ({k: v for k, v in label(0).items() if k != "isFraud"}, "missing_isFraud", "missing isFraud"),
        ({k: v for k, v in label(0).items() if k != "transactionId"}, "missing_transactionId", "missing transactionId"),
        (label(0, transactionId=17), "invalid_transactionId", "transactionId is 17"),
        (label(0, transactionId=" "), "invalid_transactionId", "transactionId is ' '"),
        (label(0, labelledAt="yesterday"), "invalid_labelledAt", "labelledAt 'yesterday' is not an ISO-8601 time"),
        (label(0, labelledAt="2026-03-09T12:00:00"), "invalid_labelledAt", "with a UTC designator"),
        ({k: v for k, v in label(0).items() if k != "labelledAt"}, "missing_labelledAt", "missing labelledAt"),
        (label(0, source=""), "invalid_source", "source is ''"),
        ({k: v for k, v in label(0).items() if k != "source"}, "missing_source", "missing source"),
        ([1, 2], "not_object", "label is an array, not an object"),
    ],
)
def test_a_bad_label_is_quarantined_with_its_row_and_value(record, check, text):
    batch = parse([label(5), record])
    assert batch.accepted["transactionId"].tolist() == ["T-00005"]
    [row] = batch.quarantined.to_dict("records")
    assert row["row"] == 2 and row["checks"] == check and row["reason"].startswith("row 2: ") and text in row["reason"]
    assert json.loads(row["record"]) == record


@pytest.mark.parametrize(
    "known_ids",
    [{"T-00000", "T-00002"}, pd.Series(["T-00002", "T-00000"], dtype="str"), pd.Series(["T-00000", "T-\ud800", "T-00002"], dtype=object)],
    ids=["set", "the transactions' id column", "object column"],
)
def test_labels_for_transactions_the_day_never_had_are_unknown(known_ids):
    batch = parse([label(0), label(1), label(2, True)], known_ids=known_ids)
    assert batch.accepted["transactionId"].tolist() == ["T-00000", "T-00002"]
    assert batch.quarantined["reason"].tolist() == ["row 2: transactionId 'T-00001' is not among the day's transactions"]
    assert batch.summary()["quarantine_checks"] == {"unknown_transaction": 1}


def test_a_repeated_verdict_keeps_the_first_copy_and_a_contradiction_keeps_none():
    batch = parse([label(0, True), label(1, False), label(0, 1, source="analyst"), label(1, True), label(1, 0), label(2)])
    assert batch.accepted.to_dict("records") == [
        {"transactionId": "T-00000", "isFraud": True, "labelledAt": "2026-03-09T12:00:00Z", "source": "chargeback"},
        {"transactionId": "T-00002", "isFraud": False, "labelledAt": "2026-03-09T12:00:00Z", "source": "chargeback"},
    ]
    reasons = dict(zip(batch.quarantined["row"], batch.quarantined["reason"]))
    assert reasons[3] == "row 3: duplicate label for 'T-00000', first at row 1"
    conflict = "conflicting labels for 'T-00001': isFraud true at row 4; isFraud false at rows 2, 5"
    assert reasons == {3: reasons[3], 2: f"row 2: {conflict}", 4: f"row 4: {conflict}", 5: f"row 5: {conflict}"}
    # A broken copy neither duplicates nor contradicts a good one.
    batch = parse([label(7, True), label(7, "no")])
    assert batch.accepted["isFraud"].tolist() == [True] and batch.quarantined["checks"].tolist() == ["non_boolean"]


@pytest.mark.parametrize(
    "body, message",
    [
        (b"", "the label file is empty (0 bytes, no JSON)"),
        (b'{"transactionId": "T-1"}', "the top level is an object, not an array of labels"),
        (b'"labels"', "the top level is a string, not an array of labels"),
        (b"[{", "malformed JSON at line 1, column 3"),
    ],
)
def test_a_file_that_is_not_an_array_of_labels_fails_naming_the_file(body, message):
    with pytest.raises(LabelFileError) as raised:
        parse_label_file(body, SOURCE)
    assert str(raised.value).startswith(f"{SOURCE}: {message}")
    assert isinstance(raised.value, USER_ERRORS)  # the CLI prints it as one line


def test_an_empty_array_is_a_file_with_no_labels_yet():
    batch = parse([])
    assert batch.received == 0 and batch.accepted.empty and batch.quarantined.empty


_verdicts = st.sampled_from([True, False, 0, 1, "true", 1.0, 2, None])
_ids = st.sampled_from([f"T-{i:05d}" for i in range(8)] + [7, ""])
_records = st.one_of(
    st.builds(
        lambda tid, verdict, when, source, drop: {
            k: v for k, v in {"transactionId": tid, "isFraud": verdict, "labelledAt": when, "source": source}.items() if k != drop
        },
        _ids,
        _verdicts,
        st.sampled_from(["2026-03-09T12:00:00Z", "2026-03-09T12:00:00+01:00", "soon", 5]),
        st.sampled_from(["chargeback", "analyst", ""]),
        st.sampled_from([None, *LABEL_FIELDS]),
    ),
    st.integers(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_records, max_size=30), known=st.none() | st.sets(st.sampled_from([f"T-{i:05d}" for i in range(8)])))
def test_every_label_is_accepted_or_quarantined_and_accepted_labels_are_unambiguous(records, known):
    batch = parse(records, known)
    assert batch.received == len(records) == len(batch.accepted) + len(batch.quarantined)
    rows = batch.quarantined["row"].tolist()
    assert len(set(rows)) == len(rows) and all(1 <= r <= len(records) for r in rows)
    assert batch.accepted["transactionId"].is_unique
    if known is not None:
        assert set(batch.accepted["transactionId"]) <= known
    # Every accepted verdict is what every well-formed copy of that id in the file says.
    for tid, verdict in zip(batch.accepted["transactionId"], batch.accepted["isFraud"]):
        said = {
            r["isFraud"] in (True, 1)
            for r in records
            if isinstance(r, dict)
            and set(LABEL_FIELDS) <= set(r)
            and r["transactionId"] == tid
            and type(r["isFraud"]) in (bool, int)
            and r["isFraud"] in (0, 1)
            and isinstance(r["labelledAt"], str)
            and r["labelledAt"].endswith(("Z", "+01:00"))
            and r["source"]
        }
        assert said == {bool(verdict)}
