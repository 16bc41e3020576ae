"""The drift sensor's decision on realised recall: a retraining once enough labelled days are below
the floor, a recomputed day counted once with its latest verdict, nothing inside the cooldown."""

from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.defs.inference.sensors import performance_requests

DAY = 86_400.0


def test_enough_low_days_request_one_retraining_and_reset():
    events = [(1, "2024-05-01", False), (2, "2024-05-02", True), (3, "2024-05-03", True)]
    requests, cursor = performance_requests(events, {}, now=1000.0, cooldown_s=DAY, days_needed=3)
    assert requests == [] and cursor["low_recall_partitions"] == ["2024-05-02", "2024-05-03"]
    # Day 3's labels replaced: the same day again counts once; a fourth low day completes the count.
    requests, cursor = performance_requests([(4, "2024-05-03", True), (5, "2024-05-04", True)], cursor, 1001.0, DAY, 3)
    assert requests == [{"run_key": "performance-2024-05-02-2024-05-04", "partitions": ["2024-05-02", "2024-05-03", "2024-05-04"]}]
    assert cursor["low_recall_partitions"] == [] and cursor["last_request_at"] == 1001.0
    # Already seen events change nothing; within the cooldown, more low days wait.
    assert performance_requests([(5, "2024-05-04", True)], cursor, 1002.0, DAY, 1)[0] == []
    requests, cursor = performance_requests([(6, "2024-05-05", True)], cursor, 1003.0, DAY, 1)
    assert requests == [] and cursor["low_recall_partitions"] == ["2024-05-05"]
    assert performance_requests([], cursor, 1003.0 + DAY, DAY, 1)[0][0]["partitions"] == ["2024-05-05"]


def test_a_recomputed_day_that_recovered_no_longer_counts():
    _, cursor = performance_requests([(1, "2024-05-01", True), (2, "2024-05-02", True)], {}, 0.0, DAY, 3)
    requests, cursor = performance_requests([(3, "2024-05-01", False), (4, "2024-05-03", True)], cursor, 0.0, DAY, 3)
    assert requests == [] and cursor["low_recall_partitions"] == ["2024-05-02", "2024-05-03"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.booleans()), max_size=30), st.integers(1, 4))
def test_never_more_than_one_request_per_cooldown(verdicts, days_needed):
    cursor: dict = {}
    total = 0
    for storage_id, (day, below) in enumerate(verdicts, start=1):
        requests, cursor = performance_requests([(storage_id, f"2024-05-0{day}", below)], cursor, 100.0, DAY, days_needed)
        total += len(requests)
        assert all(len(r["partitions"]) >= days_needed for r in requests)
    assert total <= 1
