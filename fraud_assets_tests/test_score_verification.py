"""The stored-scores check reads every item back by key: exact, and it catches wrong values."""

import boto3
import numpy as np
import pandas as pd

from fraud_assets.lib.config import PlatformNames
from fraud_assets.lib.inference.score_store import ScoreItems, count_items_for_date, to_items, verify_stored, write_scores

NAMES = PlatformNames()


def scored(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transactionId": [f"TXN-{i:05d}" for i in range(n)],
            "timestamp": pd.Timestamp("2026-06-01T10:00:00", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
            "fraudScore": np.linspace(0, 1, n),
            "riskLevel": "LOW",
            "scoringTimestamp": "2026-06-02T01:00:00+00:00",
            "modelVersion": "v1",
            "endpointName": "e",
        }
    )


def test_verify_finds_every_item_and_reports_missing_and_changed_ones(aws):
    dynamodb = boto3.client("dynamodb")
    items = to_items(scored(250), "2026-06-01")
    write_scores(dynamodb, NAMES.scores_table, items)
    ok = verify_stored(dynamodb, NAMES.scores_table, items)
    assert (ok.expected, ok.found, ok.missing, ok.mismatched) == (250, 250, [], [])

    changed = [dict(i) for i in items]
    changed[7]["modelVersion"] = "v2"
    never_written = to_items(scored(251), "2026-06-01")[-1:]
    result = verify_stored(dynamodb, NAMES.scores_table, changed + never_written)
    assert result.expected == 251 and result.found == 250
    assert result.mismatched == ["TXN-00007"] and result.missing == ["TXN-00250"]
    # Read back a window at a time (here 60 items): the same verdict.
    windowed = verify_stored(dynamodb, NAMES.scores_table, changed + never_written, window=60)
    assert (windowed.expected, windowed.found, windowed.missing, windowed.mismatched) == (251, 250, ["TXN-00250"], ["TXN-00007"])


def test_a_days_score_items_written_twice_are_stored_once_and_read_back_a_window_at_a_time(aws):
    dynamodb = boto3.client("dynamodb")
    items = ScoreItems(scored(230), "2026-06-02", chunk_rows=40)
    assert write_scores(dynamodb, NAMES.scores_table, items).written == 230
    assert write_scores(dynamodb, NAMES.scores_table, items, max_workers=1).written == 230  # a re-run overwrites
    assert count_items_for_date(dynamodb, NAMES.scores_table, NAMES.scores_gsi, "2026-06-02") == 230
    check = verify_stored(dynamodb, NAMES.scores_table, items, window=70)
    assert (check.expected, check.found, check.missing, check.mismatched) == (230, 230, [], [])
