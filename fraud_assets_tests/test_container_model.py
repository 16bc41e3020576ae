"""The model artifact loads in the SageMaker XGBoost container's version to the same scores.

The container (sagemaker-xgboost:1.7-1) reads with XGBoost 1.7; training writes with XGBoost 3.x,
whose JSON holds base_score as a vector that 1.7 misreads without an error (measured: 0.8029 instead
of 0.8061 for the same row). `container_model_json` writes the scalar every version reads.

The side-by-side test loads the artifact with XGBoost 1.7.6 in the container's environment
(.venv-container, requirements-container.lock, built by `make install`: it cannot share .venv with
3.x and NumPy 2), the environment the local model server runs in too. Without that directory it
fails saying so, never skips.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import numpy as np
import pytest

from fraud_assets.lib.training.model import CONTAINER_XGBOOST, MODEL_FILE, container_model_json, load_model_package, package_model
from fraud_assets_local.processes import container_environ, container_python

ROWS = np.random.default_rng(7).normal(size=(64, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def booster():
    import xgboost as xgb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=500) > 1.0).astype(int)  # base rate far from 0.5
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}, xgb.DMatrix(x, label=y), 10)


@pytest.fixture(scope="module")
def project_model():
    """A model as the pipeline trains it (train_model: the default hyperparameters, early stopping on
    aucpr) on synthetic transactions at the original design's fraud rate, with rows to score."""
    from fraud_assets.lib.config import FEATURE_COLUMNS
    from fraud_assets.lib.seeding.synthetic import generate_transactions
    from fraud_assets.lib.training.model import train_model

    frame = generate_transactions(n_rows=12_000)
    trained = train_model(frame.iloc[:8000], frame.iloc[8000:10_000], {"num_round": 60, "early_stopping_rounds": 10}, nthread=1)
    return trained.booster, frame.iloc[10_000:][list(FEATURE_COLUMNS)].to_numpy(np.float32)


def test_the_artifact_holds_a_scalar_base_score_and_scores_the_same(booster):
    archive = package_model(booster, {"model_version": "v1", "feature_names": ["a", "b", "c", "d"]})
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        doc = json.loads(tar.extractfile(MODEL_FILE).read())
    base_score = doc["learner"]["learner_model_param"]["base_score"]
    assert not base_score.startswith("[") and 0.0 < float(base_score) < 1.0  # what 1.7 parses as its float
    assert json.loads(bytes(booster.save_raw("json")))["learner"]["learner_model_param"]["base_score"].startswith("[")
    loaded, _ = load_model_package(archive)
    assert np.array_equal(loaded.inplace_predict(ROWS), booster.inplace_predict(ROWS))


@pytest.mark.parametrize("which", ["small", "project"])
def test_the_containers_xgboost_reads_the_artifact_to_the_same_scores(which, request, tmp_path):
    booster, rows = (request.getfixturevalue("booster"), ROWS) if which == "small" else request.getfixturevalue("project_model")
    (tmp_path / "container.json").write_bytes(container_model_json(booster))
    (tmp_path / "raw.json").write_bytes(bytes(booster.save_raw("json")))
    np.save(tmp_path / "rows.npy", rows)
    code = (
        "import sys, json, numpy as np, xgboost as xgb\n"
        "rows = np.load(sys.argv[1]); out = {'version': xgb.__version__}\n"
        "for name in ('container', 'raw'):\n"
        "    b = xgb.Booster(); b.load_model(sys.argv[2] + '/' + name + '.json')\n"
        "    out[name] = b.predict(xgb.DMatrix(rows), validate_features=False).tolist()\n"  # as the container's serve_utils
        "print(json.dumps(out))\n"
    )
    python = container_python()  # fails naming the directory and `make install` when absent
    run = subprocess.run(
        [str(python), "-c", code, str(tmp_path / "rows.npy"), str(tmp_path)],
        env=container_environ(dict(os.environ)),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert tuple(int(p) for p in result["version"].split(".")[:2]) == CONTAINER_XGBOOST, result["version"]
    ours = booster.inplace_predict(rows)
    assert np.array_equal(np.asarray(result["container"], dtype=np.float32), ours)  # bit for bit
    assert not np.allclose(result["raw"], ours, atol=1e-4)  # what the container would have served unconverted
