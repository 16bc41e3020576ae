"""XGBoost training and the SageMaker model artifact.

`model.tar.gz` holds `xgboost-model` in XGBoost's JSON format: the SageMaker built-in XGBoost
container loads it as is, the local model server loads it the same way, and no pickle is involved.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import tarfile
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN

if TYPE_CHECKING:  # imported where used: loading the code location must stay cheap
    import xgboost as xgb

MODEL_FILE = "xgboost-model"
METADATA_FILE = "fraud-model-metadata.json"

# The original design's hyperparameters (TrainHandler); SSM values override them.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {"max_depth": 5, "eta": 0.1, "objective": "binary:logistic"}
# Not xgboost booster parameters: they steer the boosting loop (as in the SageMaker container).
LOOP_PARAMETERS = ("num_round", "early_stopping_rounds")
DEFAULT_NUM_ROUND = 200
DEFAULT_EARLY_STOPPING_ROUNDS = 20


@dataclasses.dataclass
class TrainedModel:
    booster: xgb.Booster
    feature_names: list[str]
    best_iteration: int
    best_validation_score: float
    eval_metric: str
    num_round: int

    def predict(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        return predict(self.booster, features, self.feature_names)


def booster_params(hyperparameters: dict[str, Any], nthread: int | None = None) -> dict[str, Any]:
    params = {k: v for k, v in {**DEFAULT_HYPERPARAMETERS, **hyperparameters}.items() if k not in LOOP_PARAMETERS}
    # Area under the PR curve is the stopping metric that means something at 0.17% fraud.
    params.setdefault("eval_metric", "aucpr")
    if nthread:
        params["nthread"] = nthread
    return params


def train_model(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    hyperparameters: dict[str, Any],
    feature_names: Sequence[str] = FEATURE_COLUMNS,
    nthread: int | None = None,
) -> TrainedModel:
    """xgboost.train with early stopping on the validation split; the returned booster is cut at
    the best iteration so every consumer (evaluation, endpoint, container) predicts alike."""
    feature_names = list(feature_names)
    params = booster_params(hyperparameters, nthread)
    num_round = int(hyperparameters.get("num_round", DEFAULT_NUM_ROUND))
    early_stopping = int(hyperparameters.get("early_stopping_rounds", DEFAULT_EARLY_STOPPING_ROUNDS))
    dtrain = _dmatrix(train, feature_names)
    dvalid = _dmatrix(validation, feature_names)
    import xgboost as xgb

    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=num_round,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=early_stopping,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    best_score = float(booster.best_score)
    return TrainedModel(
        booster=booster[: best + 1],
        feature_names=feature_names,
        best_iteration=best,
        best_validation_score=best_score,
        eval_metric=str(params["eval_metric"]),
        num_round=num_round,
    )


def _dmatrix(frame: pd.DataFrame, feature_names: list[str]) -> xgb.DMatrix:
    missing = [c for c in [*feature_names, LABEL_COLUMN] if c not in frame.columns]
    if missing:
        raise ValueError(f"training frame lacks columns {missing}")
    import xgboost as xgb

    return xgb.DMatrix(
        frame[feature_names].to_numpy(dtype=np.float32),
        label=frame[LABEL_COLUMN].to_numpy(),
        feature_names=feature_names,
        nthread=-1,
    )


def model_inputs(frame: pd.DataFrame, metadata: dict[str, Any]) -> np.ndarray:
    """The model's input matrix for raw rows (a split, a daily batch): engineered with the
    training split's statistics saved in the package, when the model was trained on them, so
    training, evaluation, the health check and daily scoring all compute features the same way.
    History features (lib/features/history.py), when the model uses them, are read as columns
    `frame` already has: they need the rows' past, which the frame alone does not hold."""
    stats = metadata.get("feature_stats")
    if stats:
        from fraud_assets.lib.training.features import add_features

        frame = add_features(frame, stats)
    names = list(metadata["feature_names"])
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise MissingModelInputs(missing)
    return frame[names].to_numpy(dtype=np.float32)


class MissingModelInputs(ValueError):
    """A batch that lacks fields the model was trained on: refused rather than scored without them."""

    def __init__(self, fields: Sequence[str]):
        self.fields = list(fields)
        super().__init__(f"the batch lacks {len(self.fields)} field(s) the model was trained on: {', '.join(self.fields)}")


def predict(booster: xgb.Booster, features: pd.DataFrame | np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
    if isinstance(features, pd.DataFrame):
        features = features[list(feature_names)].to_numpy(dtype=np.float32)
    return booster.inplace_predict(np.asarray(features, dtype=np.float32), validate_features=False)


def package_model(booster: xgb.Booster, metadata: dict[str, Any]) -> bytes:
    """model.tar.gz: `xgboost-model` (JSON) plus our metadata (feature names, version, stats)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        _add(tar, MODEL_FILE, container_model_json(booster))
        _add(tar, METADATA_FILE, json.dumps(metadata, sort_keys=True, default=str).encode())
    return buffer.getvalue()


# The SageMaker built-in XGBoost container the endpoint runs (PlatformNames.xgboost_image_uri,
# sagemaker-xgboost:1.7-1) reads models with XGBoost 1.7.
CONTAINER_XGBOOST = (1, 7)


def container_model_json(booster: xgb.Booster) -> bytes:
    """The model as JSON that the container's XGBoost 1.7 reads to the same scores. XGBoost >= 3.1
    writes base_score as a vector ("[5E-1]", one value per target); 1.7 parses that field as one
    float and, without an error, scores with a different intercept. A single-target model's vector
    holds one value: write it as the scalar every version reads. The rest of the document is
    unchanged (1.7 ignores the keys it does not know)."""
    doc = json.loads(bytes(booster.save_raw("json")))
    params = doc["learner"]["learner_model_param"]
    base_score = str(params["base_score"])
    if base_score.startswith("["):
        values = [v for v in base_score.strip("[]").split(",") if v.strip()]
        if len(values) != 1:
            raise ValueError(f"a model with {len(values)} targets cannot be served by the XGBoost {CONTAINER_XGBOOST} container")
        params["base_score"] = values[0].strip()
    return json.dumps(doc, separators=(",", ":")).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def load_model_package(data: bytes) -> tuple[xgb.Booster, dict[str, Any]]:
    """Reads only the two known members by name: nothing in the archive is extracted to disk."""
    import xgboost as xgb

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        if MODEL_FILE not in names:
            raise ValueError(f"model archive has no {MODEL_FILE!r} (members: {names})")
        booster = xgb.Booster()
        booster.load_model(bytearray(tar.extractfile(MODEL_FILE).read()))
        metadata = json.loads(tar.extractfile(METADATA_FILE).read()) if METADATA_FILE in names else {}
    if not metadata.get("feature_names") and booster.feature_names:
        metadata["feature_names"] = list(booster.feature_names)
    return booster, metadata


def feature_importance(booster: xgb.Booster, top: int = 10) -> list[tuple[str, float]]:
    gains = booster.get_score(importance_type="gain")
    return sorted(gains.items(), key=lambda kv: kv[1], reverse=True)[:top]


REFERENCE_SAMPLE = 5_000
REFERENCE_FEATURES = 5  # the top features by gain whose training values drift monitoring compares


def reference_features(booster: xgb.Booster) -> list[str]:
    """The columns of the training split that the model's drift reference samples."""
    return [name for name, _ in feature_importance(booster)[:REFERENCE_FEATURES]]


def drift_reference(trained: TrainedModel, validation: pd.DataFrame, train: pd.DataFrame, top_features: Sequence[str]) -> dict:
    """What drift monitoring compares a day against, saved inside the model package so it always
    matches the model that scored the day: a sample of the model's raw validation scores (the
    endpoint's output, before calibration: isotonic calibration maps most rows onto a few tied
    values, which no binning can compare) and of the top features' training values (evenly spaced
    rows, so the sample is deterministic), both at the precision PSI compares them."""
    from fraud_assets.lib.inference.psi import comparable

    def sample(values: np.ndarray) -> list[float | None]:
        step = max(1, len(values) // REFERENCE_SAMPLE)
        # A missing value (a history feature without customer) is JSON null, read back as NaN.
        return [None if np.isnan(v) else v for v in comparable(values[::step][:REFERENCE_SAMPLE]).tolist()]

    return {
        "validation_raw_scores": sample(trained.predict(validation)),
        "features": {name: sample(train[name].to_numpy()) for name in top_features},
    }


def model_version(now: dt.datetime, run_id: str) -> str:
    """`<UTC time>-<run id prefix>`: sortable, and it names the run that trained the model."""
    return f"{now.astimezone(dt.timezone.utc):%Y%m%d-%H%M%S}-{run_id[:8]}"


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What fraud_model knows about the model it trained, built once: the package metadata (inside
    model.tar.gz, what evaluation, deployment and scoring read), the stage summary and the UI
    metadata (defs) are all derived from it."""

    model_version: str
    feature_names: list[str]
    hyperparameters: dict[str, Any]
    experiment_id: str | None
    best_iteration: int
    eval_metric: str
    validation_score: float  # eval_metric on the validation split at the best iteration
    train_rows: int
    feature_stats: dict | None
    training_seconds: float
    calibration: dict
    thresholds: dict
    top_features: list[tuple[str, float]]
    reference: dict
    # Where it trained: {"engine": "in-process"} or the SageMaker training job's name, ARN, hosts, time.
    training: dict[str, Any] = dataclasses.field(default_factory=lambda: {"engine": "in-process"})

    @classmethod
    def of(
        cls,
        trained: TrainedModel,
        *,
        model_version: str,
        hyperparameters: dict[str, Any],
        experiment_id: str | None,
        train: pd.DataFrame,
        validation: pd.DataFrame,
        feature_stats: dict | None,
        training_seconds: float,
        calibration: dict,
        thresholds: dict,
        training: dict[str, Any] | None = None,
        train_rows: int | None = None,
    ) -> ModelFacts:
        """`train`: the training split, or only its `reference_features` columns (every row) with
        `train_rows` its row count, which is what a job-trained model's facts read back."""
        importance = feature_importance(trained.booster)
        return cls(
            model_version=model_version,
            feature_names=list(trained.feature_names),
            hyperparameters=hyperparameters,
            experiment_id=experiment_id,
            best_iteration=trained.best_iteration,
            eval_metric=trained.eval_metric,
            validation_score=trained.best_validation_score,
            train_rows=len(train) if train_rows is None else int(train_rows),
            feature_stats=feature_stats,
            training_seconds=training_seconds,
            calibration=calibration,
            thresholds=thresholds,
            top_features=importance,
            reference=drift_reference(trained, validation, train, [n for n, _ in importance[:REFERENCE_FEATURES]]),
            training=training or {"engine": "in-process"},
        )

    def package_metadata(self) -> dict[str, Any]:
        """fraud-model-metadata.json inside model.tar.gz."""
        return {
            "model_version": self.model_version,
            "feature_names": self.feature_names,
            "hyperparameters": self.hyperparameters,
            "experiment_id": self.experiment_id,
            "best_iteration": self.best_iteration,
            "validation_aucpr": self.validation_score,
            "train_rows": self.train_rows,
            "feature_stats": self.feature_stats,
            # The label delay serving computes the history features with (None: the model has none).
            "history_features": (self.feature_stats or {}).get("history_features"),
            "training_seconds": self.training_seconds,
            "calibration": self.calibration,
            "thresholds": self.thresholds,
            "reference": self.reference,
            "training": self.training,
        }

    def to_summary(self) -> dict[str, Any]:
        """fraud_model's output.json."""
        return {
            "model_version": self.model_version,
            "feature_names": self.feature_names,
            "best_iteration": self.best_iteration,
            "validation_score": {self.eval_metric: self.validation_score},
            "hyperparameters": self.hyperparameters,
            "experiment_id": self.experiment_id,
            "training_seconds": self.training_seconds,
            "top_features": self.top_features,
            "thresholds": self.thresholds,
            "train_rows": self.train_rows,
            "training": self.training,
        }
