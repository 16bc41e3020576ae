"""The training and experimentation assets' decisions in lib/, without Dagster: the comparison
basis, the evaluation and its summary (the contract deployment reads), fraud_model's facts, the
typed summaries failing loudly, the recent window's hold-out and the experiment's base and origin."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, TRANSACTION_ID
from fraud_assets.lib.experimentation.tuning import experiment_origin, no_completed_trials
from fraud_assets.lib.metadata_keys import MissingMetadata, MissingSummaryKey
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training.calibration import release_policy
from fraud_assets.lib.training.evaluation import (
    RECENT_WINDOW,
    SIDE_BY_SIDE,
    SIDES,
    TEST_SPLIT,
    EvaluationSummary,
    GateFloors,
    PackagedModel,
    choose_comparison,
    evaluate_challenger,
    side_by_side_rows,
)
from fraud_assets.lib.training.extraction import LabelledDays, LabelledWindow, empty_daily_rows, hold_out, labelled_daily_rows
from fraud_assets.lib.training.features import EngineeredFeatures
from fraud_assets.lib.training.hyperparameters import HyperparameterSet
from fraud_assets.lib.training.model import ModelFacts, load_model_package, package_model, train_model
from fraud_assets.lib.training.splits import prepare_splits

FLOORS = GateFloors(accuracy=0.9, pr_auc=0.0, high_risk_precision=0.0, regression_tolerance=0.02)


def _metrics(pr_auc: float, positives: int = 5, rows: int = 100) -> dict:
    return {
        "accuracy": 0.99,
        "precision": 0.8,
        "recall": 0.7,
        "f1": 0.75,
        "roc_auc": 0.95,
        "pr_auc": pr_auc,
        "positives": positives,
        "test_samples": rows,
    }


@given(rows=st.integers(0, 50), positives=st.integers(0, 50))
def test_the_recent_window_judges_exactly_when_it_holds_both_classes(rows, positives):
    positives = min(positives, rows)
    recent = _metrics(0.1, positives, rows) if rows else None
    comparison = choose_comparison(
        challenger_test=_metrics(0.9),
        champion_test=_metrics(0.9),
        challenger_recent=recent,
        champion_recent=_metrics(0.9, positives, rows) if rows else None,
        window_dates=["2024-05-01"],
        window_rows=rows,
        champion_version="v1",
        tolerance=0.02,
    )
    on_recent = 0 < positives < rows
    assert comparison["basis"] == (RECENT_WINDOW if on_recent else TEST_SPLIT)
    # The recent window's challenger (0.1) loses to the champion (0.9); on the test split they tie.
    assert comparison["regression"] is on_recent
    assert comparison["production_model_version"] == "v1"
    if on_recent:
        assert comparison["reason"].endswith(f"on the recent window (2024-05-01; {rows} rows)")
    else:
        why = "has no rows" if not rows else "holds one class only"
        assert comparison["reason"].endswith(f"on the test split (the recent labelled window {why})")


def test_without_a_champion_nothing_regresses():
    comparison = choose_comparison(
        challenger_test=_metrics(0.1),
        champion_test=None,
        challenger_recent=None,
        champion_recent=None,
        window_dates=[],
        window_rows=0,
        champion_version=None,
        tolerance=0.02,
    )
    assert comparison["regression"] is False and comparison["production_model_version"] is None
    assert comparison["reason"].startswith("no model in production")


def test_side_by_side_rows_follow_the_columns():
    sides = {s: {name: f"{s}:{name}" for name in SIDE_BY_SIDE} for s in SIDES}
    rows = side_by_side_rows(sides)
    assert [r[0] for r in rows] == list(SIDE_BY_SIDE)
    assert all(r[1:] == tuple(f"{s}:{r[0]}" for s in SIDES) for r in rows)


@pytest.fixture(scope="module")
def splits():
    return prepare_splits(generate_transactions(n_rows=20_000, seed=5), seed=42)


@pytest.fixture(scope="module")
def facts_and_package(splits):
    train, validation = splits["train"], splits["validation"]
    trained = train_model(train, validation, {"num_round": 30, "early_stopping_rounds": 5}, nthread=1)
    calibration, thresholds = release_policy(trained.predict(validation), validation[LABEL_COLUMN].to_numpy())
    facts = ModelFacts.of(
        trained,
        model_version="20240501-000000-abcdef12",
        hyperparameters={"num_round": 30},
        experiment_id="exp-1",
        train=train,
        validation=validation,
        feature_stats=None,
        training_seconds=1.5,
        calibration=calibration,
        thresholds=thresholds,
    )
    return facts, package_model(trained.booster, facts.package_metadata())


def test_fraud_model_facts_are_the_same_in_the_package_and_the_summary(facts_and_package):
    facts, package = facts_and_package
    _, meta = load_model_package(package)
    summary = json.loads(json.dumps(facts.to_summary()))
    for key in ("model_version", "feature_names", "experiment_id", "best_iteration", "training_seconds", "thresholds"):
        assert summary[key] == meta[key] == json.loads(json.dumps(getattr(facts, key))), key
    assert summary["validation_score"] == {"aucpr": meta["validation_aucpr"]}
    assert meta["calibration"] == facts.calibration and meta["reference"]["features"]
    assert {name for name, _ in summary["top_features"][:5]} == set(meta["reference"]["features"])
    assert all(k == k.lower() for k in summary), "the summary's keys are snake_case"


def test_evaluating_against_itself_recommends_deployment_and_the_summary_is_what_deployment_reads(splits, facts_and_package):
    facts, package = facts_and_package
    challenger = PackagedModel(*load_model_package(package))
    test = splits["test"]
    window = test.iloc[: len(test) // 2].reset_index(drop=True)
    assert 0 < window[LABEL_COLUMN].sum() < len(window)
    evaluation = evaluate_challenger(challenger, challenger, test, window, ["2024-05-01"], FLOORS)
    assert evaluation.comparison["basis"] == RECENT_WINDOW and not evaluation.comparison["regression"]
    assert evaluation.sides["challenger_recent"] == evaluation.sides["champion_recent"]
    assert evaluation.window_rows == len(window) and evaluation.window_fraud == int(window[LABEL_COLUMN].sum())
    summary = json.loads(json.dumps(evaluation.summary().to_summary()))
    assert EvaluationSummary.from_summary(summary) == evaluation.summary()
    assert summary["deploy_recommended"] is evaluation.deploy_recommended
    assert [g["name"] for g in summary["gates"]] == [g.name for g in evaluation.gates]


def test_without_a_window_or_champion_the_test_split_judges(splits, facts_and_package):
    _, package = facts_and_package
    challenger = PackagedModel(*load_model_package(package))
    evaluation = evaluate_challenger(challenger, None, splits["test"], empty_daily_rows(), [], FLOORS)
    assert evaluation.comparison["basis"] == TEST_SPLIT and evaluation.champion_version is None
    assert set(evaluation.sides["champion_test"].values()) == {None}
    assert evaluation.summary().recent_window == {
        "dates": [],
        "rows": 0,
        "challenger": evaluation.sides["challenger_recent"],
        "champion": evaluation.sides["champion_recent"],
    }


_EVALUATION = EvaluationSummary(
    model_version="v1",
    metrics={"pr_auc": 0.8},
    test_samples=10,
    true_positives=1,
    false_positives=0,
    comparison={},
    recent_window={},
    gates=[],
    deploy_recommended=False,
    thresholds=None,
)
_SHAPES = [
    (_EVALUATION, "evaluation_metrics"),
    (EngineeredFeatures(enabled=False, feature_names=list(FEATURE_COLUMNS), feature_stats=None), "engineered_features"),
    (HyperparameterSet(values={"max_depth": 5}, versions={}, source="defaults", experiment_id=None), "model_hyperparameters"),
]


@pytest.mark.parametrize("shape, stage", _SHAPES)
@given(data=st.data())
def test_typed_summaries_round_trip_and_a_missing_key_is_named(shape, stage, data):
    summary = shape.to_summary()
    assert type(shape).from_summary(json.loads(json.dumps(summary))) == shape
    dropped = data.draw(st.sets(st.sampled_from(sorted(summary)), min_size=1))
    with pytest.raises(MissingSummaryKey) as err:
        type(shape).from_summary({k: v for k, v in summary.items() if k not in dropped})
    message = str(err.value)
    assert message.startswith(f"{stage}'s summary has no") and all(repr(k) in message for k in dropped)


def test_the_old_camel_case_summaries_fail_naming_the_key():
    with pytest.raises(MissingSummaryKey, match="'experiment_id'"):
        HyperparameterSet.from_summary({"hyperparameters": {}, "versions": {}, "source": "ssm", "experimentId": "e"})
    with pytest.raises(MissingSummaryKey, match="'feature_names', 'feature_stats'"):
        EngineeredFeatures.from_summary({"enabled": False, "featureNames": [], "featureStats": None})


def _day(date: str, ids: list[str], fraud: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame({TRANSACTION_ID: ids, **{c: 0.0 for c in FEATURE_COLUMNS}})
    return labelled_daily_rows(frame, pd.DataFrame({TRANSACTION_ID: ids, "isFraud": fraud}), date)


@given(st.sets(st.integers(0, 30)), st.sets(st.integers(0, 30)))
def test_the_recent_window_keeps_only_transactions_the_data_set_lacks(window_ids, dataset_ids):
    ordered = sorted(window_ids)
    recent = _day("2024-05-07", [f"T-{i}" for i in ordered], [i % 2 for i in ordered]) if ordered else empty_daily_rows()
    dataset = pa.table({TRANSACTION_ID: pa.array([f"T-{i}" for i in sorted(dataset_ids)], pa.string())})
    kept = hold_out(recent, dataset)
    assert kept[TRANSACTION_ID].tolist() == [f"T-{i}" for i in ordered if i not in dataset_ids]
    assert list(kept.columns) == list(recent.columns) and list(kept.index) == list(range(len(kept)))


def test_labelled_day_rows_note_the_recent_window_and_skipped_days():
    labelled = LabelledDays(
        window=LabelledWindow(["2024-05-01", "2024-05-02"], ["2024-05-03"], []),
        days=[
            {"date": "2024-05-01", "rows": 3, "fraud": 1},
            {"date": "2024-05-02", "rows": 0, "skipped": "no daily batch"},
            {"date": "2024-05-03", "rows": 2, "fraud": 0},
        ],
        daily=empty_daily_rows(),
        recent=empty_daily_rows(),
        recent_dates=["2024-05-03"],
    )
    assert labelled.day_rows() == [
        ("2024-05-01", 3, 1, ""),
        ("2024-05-02", 0, 0, "no daily batch"),
        ("2024-05-03", 2, 0, "recent window"),
    ]


def test_an_experiment_records_whether_it_started_from_production():
    production = HyperparameterSet(values={"max_depth": 5, "eta": 0.1}, versions={"max_depth": 3}, source="ssm", experiment_id="e-1")
    assert experiment_origin("run-1", production) == {
        "dagster_run_id": "run-1",
        "base": "production",
        "base_source": "ssm",
        "base_experiment_id": "e-1",
    }
    assert experiment_origin("run-1", None)["base"] == "defaults"


def test_an_experiment_without_a_completed_trial_says_why():
    @dataclasses.dataclass
    class Result:
        experiment_id: str
        trials: list
        best: dict | None

        @property
        def failed(self):
            return [t for t in self.trials if t["state"] == "FAIL"]

    failed = Result("exp-1", [{"state": "FAIL", "error": "boom"}, {"state": "FAIL", "error": "boom"}], None)
    assert no_completed_trials(failed) == "experiment exp-1: none of 2 trials completed; first errors: ['boom']"
    assert no_completed_trials(Result("exp-2", [], {"number": 0})) is None


def test_main_job_reads_a_materialised_asset_loudly_and_an_absent_one_as_none():
    from fraud_assets.main_job import _reader

    read = _reader({"fraud_model": {"model_version": "v1"}})
    assert read("fraud_model", "model_version") == "v1"
    assert read("deployed_endpoint", "model_uri") is None
    with pytest.raises(MissingMetadata, match="fraud_model: no 'feature_names'"):
        read("fraud_model", "feature_names")


def test_recent_window_figures_are_numbers_for_both_sides(splits, facts_and_package):
    _, package = facts_and_package
    model = PackagedModel(*load_model_package(package))
    evaluation = evaluate_challenger(model, model, splits["test"], splits["test"], ["d"], FLOORS)
    for s in SIDES:
        assert all(isinstance(v, float) and np.isfinite(v) for v in evaluation.sides[s].values()), s


def test_the_health_check_probes_a_known_fraud_and_the_record_carries_it(splits, facts_and_package):
    from fraud_assets.lib.training.endpoint import deployment_record, health_check_probe

    _, package = facts_and_package
    booster, meta = load_model_package(package)
    test = splits["test"]
    probe = health_check_probe(booster, meta, test)
    row = test[test[TRANSACTION_ID] == probe.transaction_id]
    assert row[LABEL_COLUMN].iloc[0] == 1 and probe.features == row[meta["feature_names"]].to_numpy(np.float32)[0].tolist()
    assert probe.expected_score == pytest.approx(float(booster.inplace_predict(np.array([probe.features], np.float32))[0]))
    record = deployment_record(
        {m: 0.5 for m in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "extra")}, meta, probe, "run-1"
    )
    assert record["health_check_transaction"] == probe.transaction_id and record["run_id"] == "run-1"
    assert "extra" not in record["metrics"] and record["experiment_id"] == "exp-1"
    assert record["health_check_calibrated_score"] == probe.calibrated_score
