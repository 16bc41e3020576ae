"""Hyperparameter searches end to end on small synthetic splits, with their records in S3."""

from __future__ import annotations

import boto3
import numpy as np
import pandas as pd
import pytest

from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import LABEL_COLUMN, PlatformNames
from fraud_assets.lib.experimentation.experiments import (
    DEFAULT_SEARCH_SPACE,
    ExperimentNotFound,
    SearchSpaceError,
    format_experiment_detail,
    format_experiment_table,
    grid_values,
    list_experiments,
    load_experiment,
    record_experiment,
    run_experiment,
    trials_markdown,
    validate_search_space,
)
from fraud_assets.lib.experimentation.validation import ValidationError
from fraud_assets.lib.training.hyperparameters import HyperparameterError, validate_hyperparameters

NAMES = PlatformNames()
# Short boosting loops and one thread: the machine is shared and a trial must stay well under a second.
FAST = {"num_round": 40, "early_stopping_rounds": 10}
SPLIT_URIS = {
    "train": "s3://fraud-detection-workflow-local/executions/run-1/train_split/output.json",
    "validation": "s3://fraud-detection-workflow-local/executions/run-1/validation_split/output.json",
}


def synthetic_split(rows: int, seed: int, fraud_rate: float = 0.03) -> pd.DataFrame:
    """Kaggle-schema rows where a few V columns carry the fraud signal, so searches have
    something to find; a higher fraud rate than the real 0.17% keeps PR-AUC stable on few rows."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < fraud_rate).astype(int)
    v = rng.normal(size=(rows, 28))
    v[:, :4] += labels[:, None] * 1.5
    frame = pd.DataFrame(v, columns=[f"V{i}" for i in range(1, 29)])
    frame.insert(0, "Time", rng.uniform(0, 172_800, rows))
    frame["Amount"] = rng.exponential(80.0, rows)
    frame[LABEL_COLUMN] = labels
    frame.insert(0, "transactionId", [f"txn-{seed}-{i:09d}" for i in range(rows)])
    return frame


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_split(4000, 1), synthetic_split(1000, 2)


def _run(splits, **kwargs):
    train, validation = splits
    options = {"n_trials": 4, "seed": 7, "base_hyperparameters": FAST, "nthread": 1, **kwargs}
    return run_experiment(train, validation, **options)


@pytest.mark.parametrize("strategy, sampler", [("grid", "GridSampler"), ("random", "RandomSampler"), ("bayesian", "TPESampler")])
def test_each_strategy_searches_and_records_in_s3(aws, splits, strategy, sampler):
    result = _run(splits, strategy=strategy)
    assert result.sampler == sampler
    assert len(result.trials) == 4 and all(t["state"] == "COMPLETE" for t in result.trials)
    best = max(result.trials, key=lambda t: t["value"])
    assert result.best["number"] == best["number"]
    for trial in result.trials:
        assert set(trial["params"]) == set(DEFAULT_SEARCH_SPACE)
        assert trial["value"] == trial["metrics"]["pr_auc"]
        assert 0 < trial["value"] <= 1 and trial["duration_seconds"] > 0 and trial["error"] is None
        # The full configuration each trial trained with: base + sampled, validated.
        assert trial["hyperparameters"] == validate_hyperparameters({**trial["hyperparameters"]})
        assert trial["hyperparameters"]["num_round"] == 40
        assert all(trial["hyperparameters"][name] == value for name, value in trial["params"].items())

    s3 = boto3.client("s3")
    uris = record_experiment(s3, NAMES.workflow_bucket, result, SPLIT_URIS)
    prefix = f"experiments/{result.experiment_id}/"
    assert uris["prefix"] == f"s3://{NAMES.workflow_bucket}/{prefix}"
    listing = s3.list_objects_v2(Bucket=NAMES.workflow_bucket, Prefix=prefix)["Contents"]
    assert sorted(o["Key"] for o in listing) == [prefix + f for f in ("best.json", "config.json", "trials.json")]
    for obj in listing:
        assert s3.head_object(Bucket=NAMES.workflow_bucket, Key=obj["Key"])["ServerSideEncryption"] == "AES256"

    record = load_experiment(s3, NAMES.workflow_bucket, result.experiment_id)
    config = record["config"]
    assert config["strategy"] == strategy and config["metric"] == "pr_auc" and config["n_trials"] == 4
    assert config["splits"] == SPLIT_URIS and (config["rows"]["train"], config["rows"]["validation"]) == (4000, 1000)
    assert config["algorithms"] == ["xgboost"] and config["feature_sets"] == ["raw"] and config["validation"]["kind"] == "random"
    assert config["search_spaces"] == {"xgboost": validate_search_space(DEFAULT_SEARCH_SPACE)}
    assert config["completed"] == 4 and config["failed"] == 0 and config["status"] == "completed"
    assert config["started_at"] <= config["finished_at"] and config["duration_seconds"] > 0
    assert len(record["trials"]) == 4
    assert record["best"]["trial_number"] == best["number"]
    assert record["best"]["hyperparameters"] == best["hyperparameters"]
    assert record["best"]["value"] == pytest.approx(best["value"])
    if strategy == "grid":
        grid = {name: grid_values(spec) for name, spec in config["search_spaces"]["xgboost"].items()}
        assert config["grid_sizes"] == {"xgboost": 3**6}
        assert all(t["params"][n] in grid[n] for t in record["trials"] for n in grid)


def test_failed_trials_are_recorded_with_their_error_and_the_search_goes_on(aws, splits):
    space = {
        "max_depth": {"type": "categorical", "choices": [3, 50]},  # 50 is past the allowlist's 20
        # xgboost itself refuses per-node column sampling with the exact tree method.
        "tree_method": {"type": "categorical", "choices": ["hist", "exact"]},
    }
    result = _run(splits, strategy="grid", n_trials=10, search_space=space, base_hyperparameters={**FAST, "colsample_bynode": 0.5})
    assert len(result.trials) == 4  # the grid is exhausted before n_trials
    by_params = {(t["params"]["max_depth"], t["params"]["tree_method"]): t for t in result.trials}
    assert by_params[(3, "hist")]["state"] == "COMPLETE"
    assert "'max_depth' = 50" in by_params[(50, "hist")]["error"]
    assert by_params[(3, "exact")]["error"].startswith("XGBoostError")
    assert all(t["state"] == "FAIL" and t["value"] is None for k, t in by_params.items() if k != (3, "hist"))
    assert result.best["params"] == {"max_depth": 3, "tree_method": "hist"}

    s3 = boto3.client("s3")
    record_experiment(s3, NAMES.workflow_bucket, result)
    record = load_experiment(s3, NAMES.workflow_bucket, result.experiment_id)
    assert record["config"]["failed"] == 3 and record["config"]["completed"] == 1
    assert sum(t["state"] == "FAIL" and bool(t["error"]) for t in record["trials"]) == 3
    detail = format_experiment_detail(record)
    assert "Failed trials:" in detail and "XGBoostError" in detail and "'max_depth' = 50" in detail


def test_a_validation_part_without_fraud_is_refused_before_any_trial(splits):
    train, validation = splits
    one_class = validation[validation[LABEL_COLUMN] == 0]
    with pytest.raises(ValidationError, match="validation fold 0: its validation part has no fraud"):
        run_experiment(train, one_class, strategy="random", n_trials=2, base_hyperparameters=FAST, nthread=1)


def test_when_every_trial_fails_no_best_is_recorded(aws, splits):
    space = {"max_depth": {"type": "categorical", "choices": [50]}}  # past the allowlist's 20
    result = _run(splits, strategy="random", n_trials=2, search_space=space)
    assert [t["state"] for t in result.trials] == ["FAIL", "FAIL"]
    assert all("'max_depth' = 50" in t["error"] for t in result.trials)
    assert result.best is None and result.status == "no_successful_trials"

    s3 = boto3.client("s3")
    uris = record_experiment(s3, NAMES.workflow_bucket, result)
    assert "best" not in uris
    record = load_experiment(s3, NAMES.workflow_bucket, result.experiment_id)
    assert record["best"] is None and record["config"]["best"] is None
    assert "nothing to promote" in format_experiment_detail(record)


def test_the_same_seed_samples_the_same_trials(splits):
    space = {"max_depth": {"type": "int", "low": 2, "high": 6}, "eta": {"type": "float", "low": 0.05, "high": 0.3, "log": True}}
    first = _run(splits, strategy="random", n_trials=2, search_space=space)
    second = _run(splits, strategy="random", n_trials=2, search_space=space)
    assert [t["params"] for t in first.trials] == [t["params"] for t in second.trials]


def test_listing_is_newest_first_and_formats_as_a_table(aws, splits):
    s3 = boto3.client("s3")
    space = {"max_depth": {"type": "int", "low": 2, "high": 4}}
    older = _run(splits, strategy="random", n_trials=1, search_space=space, experiment_id="20250101T000000Z-random-aaaaaa")
    newer = _run(splits, strategy="grid", n_trials=1, search_space=space, experiment_id="20250102T000000Z-grid-bbbbbb")
    for result in (older, newer):
        record_experiment(s3, NAMES.workflow_bucket, result)
    # A crashed experiment leaves records without config.json: listed, marked incomplete.
    put_bytes(s3, NAMES.workflow_bucket, "experiments/20250103T000000Z-random-cccccc/trials.json", b"{}")
    rows = list_experiments(s3, NAMES.workflow_bucket)
    assert [r["experiment_id"] for r in rows][:2] == [newer.experiment_id, older.experiment_id]
    assert rows[2] == {"experiment_id": "20250103T000000Z-random-cccccc", "status": "incomplete"}
    assert rows[0]["best_value"] == pytest.approx(newer.best["value"]) and rows[0]["trials_run"] == 1
    table = format_experiment_table(rows)
    assert table.splitlines()[0].split()[:3] == ["EXPERIMENT", "STATUS", "STRATEGY"]
    assert all(r["experiment_id"] in table for r in rows)
    assert format_experiment_table([]) == "no experiments recorded"


def test_records_are_never_overwritten_and_ids_are_validated(aws, splits):
    s3 = boto3.client("s3")
    result = _run(splits, strategy="random", n_trials=1, search_space={"max_depth": {"type": "int", "low": 2, "high": 4}})
    record_experiment(s3, NAMES.workflow_bucket, result)
    with pytest.raises(FileExistsError):
        record_experiment(s3, NAMES.workflow_bucket, result)
    for bad in ("../config", "a/b", "", ".hidden", "x" * 300):
        with pytest.raises(ValueError):
            load_experiment(s3, NAMES.workflow_bucket, bad)
        with pytest.raises(ValueError):
            _run(splits, strategy="random", n_trials=1, experiment_id=bad)
    with pytest.raises(ExperimentNotFound):
        load_experiment(s3, NAMES.workflow_bucket, "20250101T000000Z-random-missing")


@pytest.mark.parametrize(
    "space, error",
    [
        ({"max_dept": {"type": "int", "low": 1, "high": 3}}, HyperparameterError),
        ({"max_depth": {"type": "int", "low": 5, "high": 3}}, SearchSpaceError),
        ({"eta": {"type": "float", "low": 0.0, "high": 0.3, "log": True}}, SearchSpaceError),
        ({"eta": {"type": "uniform", "low": 0.1, "high": 0.3}}, SearchSpaceError),
        ({"eta": {"type": "float", "low": 0.1, "high": 0.3, "grid": [0.5]}}, SearchSpaceError),
        ({"eta": {"type": "float", "low": 0.1, "high": 0.3, "steps": 3}}, SearchSpaceError),
        (
            {"eta": {"type": "float", "low": 0.1, "high": 0.3}, "learning_rate": {"type": "float", "low": 0.1, "high": 0.3}},
            SearchSpaceError,
        ),
        ({}, SearchSpaceError),
    ],
)
def test_malformed_search_spaces_are_refused_before_any_trial(space, error):
    with pytest.raises(error):
        validate_search_space(space)


def test_bad_settings_are_refused_before_any_trial(splits):
    with pytest.raises(ValueError, match="strategy"):
        _run(splits, strategy="annealing")
    with pytest.raises(ValueError, match="metric"):
        _run(splits, strategy="random", metric="logloss")
    with pytest.raises(HyperparameterError, match="subsample"):
        _run(splits, strategy="random", base_hyperparameters={"subsample": 3})


def test_grid_values():
    assert grid_values({"type": "int", "low": 3, "high": 5, "step": 1, "log": False}) == [3, 4, 5]
    assert grid_values({"type": "int", "low": 3, "high": 10, "step": 1, "log": False}) == [3, 6, 10]
    assert grid_values({"type": "float", "low": 0.01, "high": 1.0, "log": True}) == [0.01, 0.1, 1.0]
    assert grid_values({"type": "float", "low": 0.5, "high": 1.0, "log": False, "grid_points": 2}) == [0.5, 1.0]
    assert grid_values({"type": "float", "low": 0.5, "high": 1.0, "log": False, "grid": [0.9, 0.6]}) == [0.6, 0.9]
    assert grid_values({"type": "categorical", "choices": ["hist", "approx"]}) == ["hist", "approx"]


def test_trials_markdown_ranks_completed_trials_first(splits):
    result = _run(splits, strategy="grid", n_trials=4, search_space={"max_depth": {"type": "categorical", "choices": [2, 4, 50]}})
    table = trials_markdown(result.trials, "pr_auc")
    lines = table.splitlines()
    assert lines[0].startswith("| TRIAL | ALGORITHM | FEATURES | STATE | PR_AUC")
    assert [line.split("|")[4].strip() for line in lines[2:]] == ["COMPLETE", "COMPLETE", "FAIL"]
