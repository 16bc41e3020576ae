"""The model artifact loads in the SageMaker XGBoost container's version to the same scores.

The container (sagemaker-xgboost:1.7-1) reads with XGBoost 1.7; training writes with XGBoost 3.x,
whose JSON holds base_score as a vector that 1.7 misreads without an error (measured: 0.8029 instead
of 0.8061 for the same row). `container_model_json` writes the scalar every version reads.

The format test always runs. The side-by-side test needs XGBoost 1.7 importable from a directory
of its own (it cannot share the project's environment with 3.x):
    uv pip install --target /tmp/xgb17 --no-deps xgboost==1.7.6
    FRAUD_CONTAINER_XGBOOST_SITE=/tmp/xgb17 pytest fraud_assets_tests/test_container_model.py
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from fraud_assets.lib.training.model import MODEL_FILE, container_model_json, load_model_package, package_model

ROWS = np.random.default_rng(7).normal(size=(64, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def booster():
    import xgboost as xgb

    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=500) > 1.0).astype(int)  # base rate far from 0.5
    return xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3}, xgb.DMatrix(x, label=y), 10)


def test_the_artifact_holds_a_scalar_base_score_and_scores_the_same(booster):
    archive = package_model(booster, {"model_version": "v1", "feature_names": ["a", "b", "c", "d"]})
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        doc = json.loads(tar.extractfile(MODEL_FILE).read())
    base_score = doc["learner"]["learner_model_param"]["base_score"]
    assert not base_score.startswith("[") and 0.0 < float(base_score) < 1.0  # what 1.7 parses as its float
    assert json.loads(bytes(booster.save_raw("json")))["learner"]["learner_model_param"]["base_score"].startswith("[")
    loaded, _ = load_model_package(archive)
    assert np.array_equal(loaded.inplace_predict(ROWS), booster.inplace_predict(ROWS))


@pytest.mark.skipif(not os.environ.get("FRAUD_CONTAINER_XGBOOST_SITE"), reason="needs FRAUD_CONTAINER_XGBOOST_SITE (see the docstring)")
def test_the_containers_xgboost_reads_the_artifact_to_the_same_scores(booster, tmp_path):
    (tmp_path / "container.json").write_bytes(container_model_json(booster))
    (tmp_path / "raw.json").write_bytes(bytes(booster.save_raw("json")))
    np.save(tmp_path / "rows.npy", ROWS)
    code = (
        "import sys, json, numpy as np; sys.path.insert(0, sys.argv[1]); import xgboost as xgb\n"
        "rows = np.load(sys.argv[2]); out = {'version': xgb.__version__}\n"
        "for name in ('container', 'raw'):\n"
        "    b = xgb.Booster(); b.load_model(sys.argv[3] + '/' + name + '.json')\n"
        "    out[name] = b.predict(xgb.DMatrix(rows)).tolist()\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, os.environ["FRAUD_CONTAINER_XGBOOST_SITE"], str(tmp_path / "rows.npy"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout)
    assert result["version"].startswith("1.7.")
    ours = booster.inplace_predict(ROWS)
    assert np.array_equal(np.asarray(result["container"], dtype=np.float32), ours)
    assert not np.allclose(result["raw"], ours, atol=1e-4)  # what the container would have served unconverted
