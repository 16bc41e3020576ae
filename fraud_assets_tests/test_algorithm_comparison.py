"""Algorithms and feature sets side by side, prequential folds, bad input refused before any trial,
and promotion refusing a winner the endpoint cannot serve."""

from __future__ import annotations

import datetime as dt

import boto3
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, PlatformNames
from fraud_assets.lib.experimentation.algorithms import ALGORITHMS, ParameterError
from fraud_assets.lib.experimentation.experiments import (
    SearchSpaceError,
    comparison_rows,
    format_comparison,
    format_experiment_detail,
    load_experiment,
    metric_plot_svg,
    record_experiment,
    run_experiment,
)
from fraud_assets.lib.experimentation.feature_sets import FeatureSetError
from fraud_assets.lib.experimentation.promotion import PromotionRefused, promote_to_production
from fraud_assets.lib.experimentation.validation import (
    SECONDS_PER_DAY,
    ValidationError,
    ValidationSpec,
    make_folds,
    prequential_folds,
)
from fraud_assets.lib.seeding.synthetic import generate_labelled_daily_batch
from fraud_assets.lib.training.hyperparameters import list_parameters
from fraud_assets_tests.test_experiments import synthetic_split

NAMES = PlatformNames()
PREQUENTIAL_KAGGLE = ValidationSpec("prequential", block_days=1 / 3)  # 6 blocks of 8 h in Kaggle's two days
# Small models: the machine is shared and every trial must stay around a second.
SMALL = {
    "xgboost": {"num_round": 30, "early_stopping_rounds": 5},
    "lightgbm": {"n_estimators": 30, "early_stopping_rounds": 5},
    "random_forest": {"n_estimators": 20},
    "mlp": {"max_iter": 15},
}
ONE_POINT = {  # one fixed value per algorithm: each trial trains exactly one known model
    "xgboost": {"max_depth": {"type": "int", "low": 3, "high": 3}},
    "lightgbm": {"num_leaves": {"type": "int", "low": 15, "high": 15}},
    "random_forest": {"max_depth": {"type": "int", "low": 6, "high": 6}},
    "mlp": {"hidden_layer_sizes": {"type": "categorical", "choices": ["16"]}},
}


def raw_rows(rows: int, seed: int, offset: int = 0) -> pd.DataFrame:
    """Kaggle-schema rows with the raw history's ids (`txn-<position>`), so Time is a time axis."""
    frame = synthetic_split(rows, seed)
    frame["transactionId"] = [f"txn-{offset + i:09d}" for i in range(rows)]
    return frame


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    return raw_rows(3000, 1), raw_rows(900, 2, offset=3000)


# --- prequential folds -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    block_hours=st.integers(1, 24 * 7),
    n_folds=st.integers(1, 5),
    train_blocks=st.integers(1, 3),
    delay_blocks=st.integers(0, 2),
    extra_hours=st.integers(0, 48),
    n_rows=st.integers(50, 400),
    seed=st.integers(0, 2**16),
)
def test_prequential_folds_are_time_ordered_disjoint_and_shifted_one_block(
    block_hours, n_folds, train_blocks, delay_blocks, extra_hours, n_rows, seed
):
    spec = ValidationSpec("prequential", block_days=block_hours / 24, n_folds=n_folds, train_blocks=train_blocks, delay_blocks=delay_blocks)
    span = spec.blocks_needed * block_hours * 3600 + extra_hours * 3600
    # The data covers the span: its first and last rows at its ends, the rest anywhere between.
    times = np.concatenate([[0.0, span - 1.0], np.random.default_rng(seed).uniform(0, span - 1, n_rows)])
    folds = prequential_folds(times, spec)
    block = block_hours * 3600
    assert [f.index for f in folds] == list(range(n_folds))
    for fold in folds:
        train_start, train_end = fold.train_range
        delay_start, delay_end = fold.delay_range
        valid_start, valid_end = fold.validation_range
        # train < delay < validation, contiguous, of the configured lengths
        assert train_end == delay_start and delay_end == valid_start
        assert train_end - train_start == pytest.approx(train_blocks * block)
        assert delay_end - delay_start == pytest.approx(delay_blocks * block)
        assert valid_end - valid_start == pytest.approx(block)
        assert set(fold.train).isdisjoint(fold.validation)
        if len(fold.train) and len(fold.validation):
            assert times[fold.train].max() < times[fold.validation].min()
        # no row of the delay gap is used
        gap = (times >= delay_start) & (times < delay_end)
        assert not gap[fold.train].any() and not gap[fold.validation].any()
        assert ((times[fold.validation] >= valid_start) & (times[fold.validation] < valid_end)).all()
        assert ((times[fold.train] >= train_start) & (times[fold.train] < train_end)).all()
    for newer, older in zip(folds, folds[1:]):
        assert newer.validation_range[0] - older.validation_range[0] == pytest.approx(block)
        assert newer.train_range[0] - older.train_range[0] == pytest.approx(block)
    # fold 0 validates on the most recent block: nothing later is left out
    assert (times < folds[0].validation_range[1]).all()


def test_folds_that_do_not_fit_name_the_block_size_and_the_data_span():
    times = np.linspace(0, 172_792, 1000)  # Kaggle's two days
    with pytest.raises(ValidationError, match=r"block\(s\) of 7 days need 42 days of data, and the data \(Time\) spans 2 days"):
        prequential_folds(times, ValidationSpec("prequential"))
    assert len(prequential_folds(times, PREQUENTIAL_KAGGLE)) == 4  # 8-hour blocks fit exactly


def test_a_fold_without_fraud_is_named():
    frame = raw_rows(2000, 3)
    frame.loc[frame["Time"] >= 172_800 * 5 / 6, LABEL_COLUMN] = 0  # no fraud in the last 8 hours
    with pytest.raises(ValidationError, match=r"validation fold 0: its validation part \(Time 144000..172800 s\) has no fraud"):
        make_folds(frame.iloc[:1500], frame.iloc[1500:], PREQUENTIAL_KAGGLE)


def test_time_of_day_in_daily_rows_is_not_taken_for_a_time_axis(splits):
    train, validation = splits
    daily = validation.assign(transactionId=[f"TXN-2025-01-02-{i:06d}" for i in range(len(validation))])
    with pytest.raises(ValidationError, match="labelled daily transactions whose Time is their time of day"):
        make_folds(train, daily, PREQUENTIAL_KAGGLE)


# --- algorithms and feature sets ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_trains_on_a_small_set_and_records_the_gates_metrics(splits, algorithm):
    train, validation = splits
    result = run_experiment(
        train,
        validation,
        strategy="random",
        n_trials=2,
        algorithms=[algorithm],
        base_hyperparameters=SMALL[algorithm],
        validation_spec=PREQUENTIAL_KAGGLE,
        nthread=1,
        seed=3,
    )
    assert [t["state"] for t in result.trials] == ["COMPLETE", "COMPLETE"], [t["error"] for t in result.trials]
    for trial in result.trials:
        assert trial["algorithm"] == algorithm and trial["feature_set"] == "raw" and trial["validation"] == "prequential"
        assert len(trial["folds"]) == 4
        for name in ("pr_auc", "roc_auc", "high_risk_precision", "high_risk_recall", "threshold"):
            values = [f[name] for f in trial["folds"]]
            assert trial["metrics"][name] == pytest.approx(np.mean(values))
            assert trial["metrics_std"][name] == pytest.approx(np.std(values, ddof=1))
        assert trial["value"] == trial["metrics"]["pr_auc"] and 0.3 < trial["value"] <= 1
        assert trial["metrics"]["threshold"] == 0.8  # the fixed release policy
        assert trial["model_size"] > 0 and trial["model_size_unit"] and trial["fit_seconds"] > 0
        assert set(trial["params"]) == set(result.search_spaces[algorithm])
    [row] = comparison_rows(result.trials, "pr_auc")
    assert row["algorithm"] == algorithm and row["folds"] == 4 and row["servable"] == (algorithm == "xgboost")


def test_algorithms_and_feature_sets_side_by_side_on_labelled_daily_data():
    # Eight labelled days with customers, merchants and timestamps: the history feature set exists.
    day0 = dt.date(2025, 3, 1)
    frames = []
    for d in range(8):
        batch = generate_labelled_daily_batch((day0 + dt.timedelta(days=d)).isoformat(), n_transactions=500, fraud_rate=0.03, seed=5)
        frame = pd.DataFrame([r["features"] for r in batch.records], columns=list(FEATURE_COLUMNS))
        frame["timestamp"] = [r["timestamp"] for r in batch.records]
        frame["customerId"] = [r["customerId"] for r in batch.records]
        frame["merchant"] = [r["merchant"] for r in batch.records]
        frame[LABEL_COLUMN] = batch.is_fraud.astype(int)
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    spec = ValidationSpec("prequential", block_days=1, n_folds=3, train_blocks=2, delay_blocks=1)
    result = run_experiment(
        data.iloc[::2],
        data.iloc[1::2],
        strategy="grid",
        n_trials=1,
        algorithms=["xgboost", "lightgbm"],
        feature_sets=["raw", "engineered", "history"],
        search_space={a: ONE_POINT[a] for a in ("xgboost", "lightgbm")},
        base_hyperparameters={a: SMALL[a] for a in ("xgboost", "lightgbm")},
        validation_spec=spec,
        nthread=1,
    )
    assert [(t["algorithm"], t["feature_set"], t["state"]) for t in result.trials] == [
        (a, f, "COMPLETE") for f in ("raw", "engineered", "history") for a in ("xgboost", "lightgbm")
    ]
    assert [t["number"] for t in result.trials] == list(range(6))
    rows = comparison_rows(result.trials, "pr_auc")
    assert [(r["algorithm"], r["feature_set"]) for r in rows] == [(t["algorithm"], t["feature_set"]) for t in result.trials]
    table = format_comparison(rows)
    assert table.splitlines()[0].split()[:4] == ["ALGORITHM", "FEATURES", "TRIAL", "PR-AUC"] and " ± " in table
    assert result.rows["folds"][0]["validation_range"][1] - result.rows["folds"][0]["validation_range"][0] == SECONDS_PER_DAY
    svg = metric_plot_svg(result.trials, "pr_auc")
    assert svg.startswith("<svg") and svg.count("<circle") == 6 + 6  # a point per trial, a legend dot per group


# --- bad input, refused before any trial -------------------------------------------------------


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"algorithms": ["xgboost", "catboost"]}, ParameterError, "unknown algorithm 'catboost'; known: xgboost, lightgbm"),
        ({"algorithms": []}, ParameterError, "algorithms must be a non-empty list"),
        ({"algorithms": ["lightgbm"], "search_space": {"lightgbm": {}}}, SearchSpaceError, "search space for 'lightgbm' is empty"),
        ({"algorithms": ["mlp"], "search_space": {"n_layers": {"type": "int", "low": 1, "high": 3}}}, ParameterError, "'n_layers'"),
        (
            {"algorithms": ["xgboost", "mlp"], "search_space": {"alpha": {"type": "float", "low": 0.1, "high": 1}}},
            SearchSpaceError,
            "keyed by",
        ),
        ({"algorithms": ["random_forest"], "base_hyperparameters": {"n_trees": 10}}, ParameterError, "'n_trees'"),
        ({"feature_sets": ["raw", "embeddings"]}, FeatureSetError, "unknown feature set 'embeddings'"),
        ({"feature_sets": ["history"]}, FeatureSetError, "feature set 'history' needs columns"),
        ({"validation_spec": ValidationSpec("prequential")}, ValidationError, "need 42 days of data"),
    ],
)
def test_bad_input_fails_at_once_naming_it(splits, monkeypatch, options, error, message):
    import fraud_assets.lib.experimentation.experiments as experiments

    def no_trial(*args, **kwargs):
        raise AssertionError("a trial ran")

    monkeypatch.setattr(experiments, "_run_study", no_trial)
    train, validation = splits
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        run_experiment(train, validation, strategy="random", n_trials=1, **options)


# --- promotion --------------------------------------------------------------------------------


def test_promotion_refuses_a_winner_the_endpoint_cannot_serve_and_changes_nothing(aws, splits):
    train, validation = splits
    s3, ssm = boto3.client("s3"), boto3.client("ssm")
    result = run_experiment(
        train,
        validation,
        strategy="grid",
        n_trials=1,
        algorithms=["lightgbm", "xgboost"],
        search_space={"lightgbm": ONE_POINT["lightgbm"], "xgboost": {"max_depth": {"type": "int", "low": 1, "high": 1}}},
        # A one-split stump boosted 3 times against a full LightGBM: LightGBM wins.
        base_hyperparameters={"lightgbm": SMALL["lightgbm"], "xgboost": {"num_round": 3, "early_stopping_rounds": 3, "eta": 0.01}},
        nthread=1,
    )
    assert result.best["algorithm"] == "lightgbm"
    record_experiment(s3, NAMES.workflow_bucket, result)
    before = list_parameters(ssm, "/fraud-detection/hyperparameters")
    xgb_trial = next(t for t in result.trials if t["algorithm"] == "xgboost")
    with pytest.raises(PromotionRefused) as refused:
        promote_to_production(result.experiment_id, s3=s3, ssm=ssm, names=NAMES)
    message = str(refused.value)
    assert "is 'lightgbm', which the serving path cannot serve" in message
    assert "built-in XGBoost container" in message and "only xgboost can be served" in message
    assert f"best xgboost trial is #{xgb_trial['number']}" in message
    assert list_parameters(ssm, "/fraud-detection/hyperparameters") == before
    assert "Contents" not in s3.list_objects_v2(Bucket=NAMES.config_bucket, Prefix="hyperparameter-backups/")
    detail = format_experiment_detail(load_experiment(s3, NAMES.workflow_bucket, result.experiment_id))
    assert "Best trial per algorithm" in detail and "not servable" in detail


def test_promoting_an_xgboost_winner_records_its_feature_set_and_validation(aws, splits):
    train, validation = splits
    s3, ssm = boto3.client("s3"), boto3.client("ssm")
    result = run_experiment(
        train,
        validation,
        strategy="random",
        n_trials=1,
        feature_sets=["engineered"],
        validation_spec=PREQUENTIAL_KAGGLE,
        base_hyperparameters=SMALL["xgboost"],
        nthread=1,
    )
    record_experiment(s3, NAMES.workflow_bucket, result)
    summary = promote_to_production(result.experiment_id, s3=s3, ssm=ssm, names=NAMES)
    assert summary["status"] == "promoted"
    import yaml

    config = yaml.safe_load(s3.get_object(Bucket=NAMES.config_bucket, Key="production-model-config.yaml")["Body"].read())
    assert config["algorithm"] == "xgboost" and config["feature_set"] == "engineered"
    assert config["validation"]["kind"] == "prequential" and config["validation"]["folds"] == 4


def test_production_hyperparameters_start_only_the_xgboost_trials():
    from fraud_assets.lib.experimentation.experiments import base_hyperparameters

    production = {"max_depth": 6, "eta": 0.2}
    assert base_hyperparameters(["lightgbm"], production, None) == {}
    assert base_hyperparameters(["lightgbm"], production, {"n_estimators": 50}) == {"lightgbm": {"n_estimators": 50}}
    assert base_hyperparameters(["xgboost", "mlp"], production, {"num_round": 30}) == {"xgboost": {**production, "num_round": 30}}
    assert base_hyperparameters(["xgboost", "mlp"], production, {"mlp": {"max_iter": 5}}) == {"xgboost": production, "mlp": {"max_iter": 5}}
