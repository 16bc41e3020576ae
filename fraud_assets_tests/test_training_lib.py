"""Training, the model artifact and the evaluation arithmetic, without Dagster."""

import io
import tarfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraud_assets.lib.config import FEATURE_COLUMNS
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training.gates import GateResult, gate_records
from fraud_assets.lib.training.metrics import compare_with_production, evaluate_scores
from fraud_assets.lib.training.model import MODEL_FILE, load_model_package, package_model, train_model
from fraud_assets.lib.training.registry import RegisteredModel, deployment_refusal, model_package_properties
from fraud_assets.lib.training.splits import prepare_splits


@pytest.fixture(scope="module")
def splits():
    return prepare_splits(generate_transactions(n_rows=40_000, seed=3), seed=42)


@pytest.fixture(scope="module")
def trained(splits):
    return train_model(splits["train"], splits["validation"], {"num_round": 60, "early_stopping_rounds": 10}, nthread=1)


def test_early_stopping_cuts_the_booster_at_the_best_iteration(trained):
    assert trained.booster.num_boosted_rounds() == trained.best_iteration + 1
    assert trained.feature_names == list(FEATURE_COLUMNS)


def test_model_package_round_trips_without_pickle(trained, splits):
    data = package_model(trained.booster, {"model_version": "v1", "feature_names": trained.feature_names})
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getnames()
        model_text = tar.extractfile(MODEL_FILE).read()
    assert MODEL_FILE in members
    assert model_text.startswith(b"{")  # xgboost JSON, which the SageMaker container loads as is
    booster, metadata = load_model_package(data)
    assert metadata["model_version"] == "v1"
    test = splits["test"]
    assert np.allclose(booster.inplace_predict(test[list(FEATURE_COLUMNS)].to_numpy(np.float32)), trained.predict(test))


def test_archive_without_model_is_refused():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("something-else")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="xgboost-model"):
        load_model_package(buffer.getvalue())


def test_unknown_hyperparameter_is_an_error(splits):
    import xgboost

    with pytest.raises(xgboost.core.XGBoostError, match="max_depth"):
        train_model(splits["train"], splits["validation"], {"max_depth": -3, "num_round": 2})


def test_evaluation_metrics_match_their_definitions():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.6, 0.05, 0.9, 0.55, 0.3, 0.85])
    m = evaluate_scores(labels, scores)
    cm = m["confusion_matrix"]
    assert (cm["tp"], cm["fp"], cm["fn"], cm["tn"]) == (2, 2, 1, 3)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["high_risk_count"] == 2 and m["high_risk_precision"] == pytest.approx(0.5)
    assert 0 < m["pr_auc"] < 1 and 0 < m["roc_auc"] < 1


def test_perfect_scores_score_perfectly():
    labels = np.array([0, 1, 0, 1])
    m = evaluate_scores(labels, labels.astype(float))
    assert m["accuracy"] == m["roc_auc"] == m["pr_auc"] == 1.0


def test_champion_challenger_flags_only_real_regressions():
    champion = {"accuracy": 0.99, "precision": 0.9, "recall": 0.8, "f1": 0.85, "roc_auc": 0.97, "pr_auc": 0.80}
    assert not compare_with_production({**champion, "pr_auc": 0.79}, champion, tolerance=0.02)["regression"]
    worse = compare_with_production({**champion, "pr_auc": 0.70}, champion, tolerance=0.02)
    assert worse["regression"] and "below production" in worse["reason"]
    assert not compare_with_production(champion, None, tolerance=0.02)["regression"]


def _registered(version: str, *passed: bool, status: str | None = None) -> RegisteredModel:
    gates = [GateResult(f"gate_{i}", ok, f"value {i}") for i, ok in enumerate(passed)]
    properties = model_package_properties(version, gate_records(gates), {}, {})
    return RegisteredModel(
        arn=f"arn:aws:sagemaker:us-east-1:123456789012:model-package/fraud-detection/{version}",
        model_version=version,
        approval_status=status or ("Approved" if all(passed) else "Rejected"),
        model_data_url="s3://models/m.tar.gz",
        gates={g.name: g.passed for g in gates},
        gate_messages={g.name: g.message for g in gates},
        metrics={},
        properties=properties,
    )


@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_deployment_refusal_names_exactly_the_failed_gates(passed):
    refusal = deployment_refusal("v2", _registered("v2", *passed))
    failed = [f"gate_{i}" for i, ok in enumerate(passed) if not ok]
    if not failed:
        assert refusal is None
    else:
        assert "\n" not in refusal and "failed its gates" in refusal
        assert [name for name in (f"gate_{i}" for i in range(len(passed))) if f"{name} (" in refusal] == failed


def test_deployment_refusal_needs_an_approved_registration_of_that_version():
    assert "has no recorded evaluation" in deployment_refusal("v3", None)
    assert "records no gate verdicts" in deployment_refusal("v2", _registered("v2"))
    assert "not Approved" in deployment_refusal("v2", _registered("v2", True, status="PendingManualApproval"))
