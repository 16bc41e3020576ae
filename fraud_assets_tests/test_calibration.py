"""The threshold policy: isotonic calibration carried as JSON breakpoints, thresholds chosen by a
target recall or precision, and 0.8 meaning the same after a retraining."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import LABEL_COLUMN
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training.calibration import (
    ThresholdPolicy,
    calibrate,
    choose_thresholds,
    fit_isotonic,
    release_policy,
)
from fraud_assets.lib.training.model import train_model

# Two retrainings on the same data may flag shares of the test split above 0.8 that differ by at
# most this much (absolute; about 4 of 9,000 test rows, on a base rate near 0.2%).
SHARE_TOLERANCE = 0.0005


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(20, 400))
def test_json_breakpoints_reproduce_sklearns_isotonic_regression(seed, n):
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(seed)
    raw = rng.random(n)
    labels = (rng.random(n) < raw**2).astype(int)
    labels[:2] = [0, 1]  # both classes
    calibration = json.loads(json.dumps(fit_isotonic(raw, labels)))  # what the package carries
    probe = np.concatenate([rng.random(200), [-1.0, 0.0, 1.0, 2.0]])
    expected = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw, labels).predict(probe)
    np.testing.assert_allclose(calibrate(probe, calibration), expected, atol=1e-12)
    assert np.all(np.diff(calibrate(np.sort(probe), calibration)) >= 0)  # monotone


def test_a_package_without_calibration_scores_as_before():
    raw = np.array([0.1, 0.85])
    np.testing.assert_array_equal(calibrate(raw, None), raw)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), target=st.floats(0.05, 1.0))
def test_target_recall_picks_the_highest_threshold_that_reaches_it(seed, target):
    rng = np.random.default_rng(seed)
    labels = (rng.random(500) < 0.1).astype(int)
    labels[0] = 1
    scores = np.clip(rng.normal(0.2 + 0.5 * labels, 0.2), 0, 1)
    chosen = choose_thresholds(scores, labels, ThresholdPolicy(target_recall=target))
    recall = lambda t: ((scores >= t) & (labels == 1)).sum() / labels.sum()  # noqa: E731
    assert chosen["policy"] == "target_recall" and chosen["target_met"]
    assert recall(chosen["high"]) >= target
    higher = scores[scores > chosen["high"]]
    assert not len(higher) or recall(higher.min()) < target
    assert chosen["expected"]["high"]["recall"] == pytest.approx(recall(chosen["high"]))
    assert chosen["medium"] <= chosen["high"]


def test_target_precision_and_its_limits():
    labels = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    chosen = choose_thresholds(scores, labels, ThresholdPolicy(target_precision=1.0))
    assert chosen["high"] == 0.5 and chosen["expected"]["high"]["precision"] == 1.0
    unreachable = choose_thresholds(np.array([0.9, 0.9]), np.array([0, 1]), ThresholdPolicy(target_precision=0.99))
    assert (unreachable["target_met"], unreachable["high"]) == (False, 0.8)
    with pytest.raises(ValueError, match="not both"):
        ThresholdPolicy(target_recall=0.5, target_precision=0.5)


def test_two_retrainings_flag_the_same_share_above_0_8():
    data = generate_transactions(n_rows=60_000, seed=31)
    order = np.random.default_rng(0).permutation(len(data))
    train, validation, test = data.iloc[order[:42_000]], data.iloc[order[42_000:51_000]], data.iloc[order[51_000:]]
    shares = {}
    # A fast learner and a slow one whose raw probabilities never reach 0.8 at all.
    for name, hyperparameters in {
        "fast learner": {"max_depth": 4, "eta": 0.3, "seed": 1, "num_round": 60},
        "slow learner": {"max_depth": 3, "eta": 0.02, "subsample": 0.8, "seed": 7, "num_round": 60},
    }.items():
        trained = train_model(train, validation, hyperparameters)
        calibration, thresholds = release_policy(trained.predict(validation), validation[LABEL_COLUMN].to_numpy())
        raw = trained.predict(test)
        shares[name] = (float((raw >= 0.8).mean()), float((calibrate(raw, calibration) >= 0.8).mean()))
        assert thresholds["high"] == 0.8 and thresholds["expected"]["high"]["precision"] is not None
    (raw_a, calibrated_a), (raw_b, calibrated_b) = shares.values()
    assert abs(calibrated_a - calibrated_b) < SHARE_TOLERANCE, shares
    assert calibrated_a > 0 and calibrated_b > 0, shares
    # Without calibration the same two models disagree by more: the test can tell.
    assert abs(raw_a - raw_b) > SHARE_TOLERANCE, shares
