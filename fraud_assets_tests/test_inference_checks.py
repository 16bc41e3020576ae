"""The daily graph's in-step checks, on small tables."""

import pandas as pd
import pytest

from fraud_assets.defs.inference.checks import every_transaction_scored_once


@pytest.mark.parametrize("dtype", ["str", object])
def test_every_transaction_scored_once_counts_duplicates_unscored_and_unexpected_ids(dtype):
    accepted = pd.DataFrame({"transactionId": pd.Series(["T-1", "T-2", "T-3", "T-4"], dtype=dtype)})
    scores = pd.DataFrame({"transactionId": pd.Series(["T-1", "T-2", "T-2", "T-9"], dtype=dtype), "fraudScore": [0.1, 0.2, 0.2, 1.5]})
    result = every_transaction_scored_once(scores, accepted)
    assert not result.passed
    assert {k: v.value for k, v in result.metadata.items()} == {
        "scored": 4,
        "accepted": 4,
        "duplicates": 1,
        "unscored": 2,
        "unexpected": 1,
        "out_of_range": 1,
    }
    assert every_transaction_scored_once(accepted.assign(fraudScore=0.5), accepted).passed
