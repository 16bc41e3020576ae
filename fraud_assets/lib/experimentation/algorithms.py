"""The algorithms an experiment compares: each with its search space, fixed defaults, parameter
check, class-imbalance handling, fit and model size.

| algorithm       | library                    | imbalance (a weight, never resampling) | model size counted as          |
|-----------------|----------------------------|----------------------------------------|--------------------------------|
| `xgboost`       | xgboost (training's code)  | `scale_pos_weight`                     | bytes of the container's JSON  |
| `lightgbm`      | lightgbm                   | `scale_pos_weight`                     | bytes of `model_to_string()`   |
| `random_forest` | scikit-learn               | `fraud_weight` -> class_weight {1: w}  | tree nodes                     |
| `mlp`           | scikit-learn, scaled input | `fraud_weight` -> sample_weight        | weights and biases             |

xgboost trains through lib/training/model.train_model, the very code production trains with, so a
trial measures what promotion would deploy. Boosters stop early on the validation part's PR-AUC,
as training does. Only xgboost can be served: the endpoint runs SageMaker's built-in XGBoost
container (SERVABLE). Nothing is pickled: a trial keeps metrics and parameters, never a model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from fraud_assets.lib.config import LABEL_COLUMN
from fraud_assets.lib.training.hyperparameters import validate_hyperparameters
from fraud_assets.lib.training.model import DEFAULT_EARLY_STOPPING_ROUNDS, DEFAULT_HYPERPARAMETERS, DEFAULT_NUM_ROUND

XGBOOST, LIGHTGBM, RANDOM_FOREST, MLP = "xgboost", "lightgbm", "random_forest", "mlp"
SERVABLE = (XGBOOST,)


class ParameterError(ValueError):
    """A parameter name an algorithm does not have (refused before any trial)."""


@dataclasses.dataclass
class Fitted:
    validation_scores: np.ndarray  # raw (uncalibrated) fraud probability per validation row
    fit_seconds: float
    model_size: int
    best_iteration: int | None = None


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    library: str  # module whose version goes into config.json
    search_space: dict[str, dict[str, Any]]
    defaults: dict[str, Any]
    known: frozenset[str]  # accepted parameter names (checked before any trial)
    size_unit: str
    fit: Callable[[pd.DataFrame, pd.DataFrame, list[str], dict[str, Any], int | None, int], Fitted]
    # Types and ranges: xgboost's are the platform's allowlist (what promotion accepts); the
    # others' are the library's own, checked when a trial fits (a bad value fails that trial).
    check: Callable[[dict[str, Any]], dict[str, Any]] = dict

    @property
    def servable(self) -> bool:
        return self.name in SERVABLE

    def parameters(self, base: Mapping[str, Any], sampled: Mapping[str, Any]) -> dict[str, Any]:
        return self.check({**self.defaults, **base, **sampled})

    def check_names(self, names, what: str) -> None:
        unknown = sorted(set(names) - self.known)
        if unknown:
            raise ParameterError(f"{what} for {self.name!r} names {unknown[0]!r}, which {self.name} does not have")


def _xy(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return frame[names].to_numpy(dtype=np.float32), frame[LABEL_COLUMN].to_numpy()


@contextlib.contextmanager
def _threads(nthread: int | None):
    # BLAS and OpenMP pools inside scikit-learn follow the trial's thread budget.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=nthread) if nthread else contextlib.nullcontext():
        yield


# --- xgboost -----------------------------------------------------------------------------------


def _fit_xgboost(train, validation, names, params, nthread, seed) -> Fitted:
    from fraud_assets.lib.training.model import container_model_json, train_model

    started = time.perf_counter()
    model = train_model(train, validation, params, names, nthread)
    seconds = time.perf_counter() - started
    return Fitted(model.predict(validation), seconds, len(container_model_json(model.booster)), model.best_iteration)


def _xgboost_known() -> frozenset[str]:
    from fraud_assets.lib.training.hyperparameters import ALIASES, RULES

    return frozenset(RULES) | frozenset(ALIASES)


# --- lightgbm ----------------------------------------------------------------------------------

# Core parameters the scikit-learn wrapper passes through but does not list in get_params().
_LIGHTGBM_EXTRA = {"scale_pos_weight", "is_unbalance", "max_bin", "extra_trees", "path_smooth", "min_sum_hessian_in_leaf", "metric"}


def _fit_lightgbm(train, validation, names, params, nthread, seed) -> Fitted:
    import lightgbm as lgb

    params = dict(params)
    stopping = int(params.pop("early_stopping_rounds"))
    x, y = _xy(train, names)
    xv, yv = _xy(validation, names)
    model = lgb.LGBMClassifier(**{"random_state": seed, "n_jobs": nthread or -1, **params})
    started = time.perf_counter()
    model.fit(x, y, eval_X=xv, eval_y=yv, callbacks=[lgb.early_stopping(stopping, first_metric_only=True, verbose=False)])
    seconds = time.perf_counter() - started
    best = model.best_iteration_ or model.n_estimators
    scores = model.predict_proba(xv, num_iteration=best)[:, 1]
    return Fitted(scores, seconds, len(model.booster_.model_to_string(num_iteration=best)), int(best) - 1)


# --- scikit-learn ------------------------------------------------------------------------------


def _class_weight(params: dict[str, Any]) -> float:
    weight = float(params.pop("fraud_weight", 1.0))
    if not weight > 0:
        raise ValueError(f"fraud_weight must be > 0, got {weight}")
    return weight


def _fit_random_forest(train, validation, names, params, nthread, seed) -> Fitted:
    from sklearn.ensemble import RandomForestClassifier

    params = dict(params)
    weight = _class_weight(params)
    x, y = _xy(train, names)
    xv, _ = _xy(validation, names)
    model = RandomForestClassifier(**{"random_state": seed, "n_jobs": nthread or -1, "class_weight": {0: 1.0, 1: weight}, **params})
    started = time.perf_counter()
    with _threads(nthread):
        model.fit(x, y)
    seconds = time.perf_counter() - started
    with _threads(nthread):
        scores = model.predict_proba(xv)[:, 1]
    return Fitted(scores, seconds, int(sum(tree.tree_.node_count for tree in model.estimators_)))


def hidden_layers(value: Any) -> tuple[int, ...]:
    """ "64-32" (JSON-friendly, so it fits a categorical search dimension) -> (64, 32)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    try:
        sizes = tuple(int(v) for v in str(value).split("-"))
    except ValueError:
        raise ValueError(f"hidden_layer_sizes must read like '64-32', got {value!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be positive sizes like '64-32', got {value!r}")
    return sizes


def _fit_mlp(train, validation, names, params, nthread, seed) -> Fitted:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    params = dict(params)
    weight = _class_weight(params)
    params["hidden_layer_sizes"] = hidden_layers(params["hidden_layer_sizes"])
    x, y = _xy(train, names)
    xv, _ = _xy(validation, names)
    model = make_pipeline(StandardScaler(), MLPClassifier(**{"random_state": seed, **params}))
    started = time.perf_counter()
    with _threads(nthread), warnings.catch_warnings():
        # A capped epoch budget is the search's choice, not a fault worth a warning per trial.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, mlpclassifier__sample_weight=np.where(y == 1, weight, 1.0))
    seconds = time.perf_counter() - started
    with _threads(nthread):
        scores = model.predict_proba(xv)[:, 1]
    net = model[-1]
    return Fitted(scores, seconds, int(sum(w.size for w in net.coefs_) + sum(b.size for b in net.intercepts_)))


def _sklearn_known(estimator: str, extra: set[str]) -> Callable[[], frozenset[str]]:
    def known() -> frozenset[str]:
        if estimator == RANDOM_FOREST:
            from sklearn.ensemble import RandomForestClassifier as cls
        else:
            from sklearn.neural_network import MLPClassifier as cls
        return frozenset(cls().get_params()) | extra

    return known


def _lightgbm_known() -> frozenset[str]:
    import lightgbm as lgb

    return frozenset(lgb.LGBMClassifier().get_params()) | _LIGHTGBM_EXTRA | {"early_stopping_rounds"}


# --- the registry ------------------------------------------------------------------------------

# xgboost's search is the one the project has tuned with all along (tree shape, learning rate,
# row/column subsampling, and the fraud weight, which matters most at ~1:580; stopping at 100
# because higher weights trade too much precision for recall). The others mirror it: shape,
# learning rate or regularisation, and the same fraud-weight range. Random forest and MLP bounds
# keep a trial on 200K rows within tens of seconds on two cores (bootstrap samples of at most
# half the rows, at most 200 trees, at most 30 epochs).
_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    XGBOOST: {
        "max_depth": {"type": "int", "low": 3, "high": 10},
        "eta": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "min_child_weight": {"type": "float", "low": 1.0, "high": 10.0, "log": True},
        "subsample": {"type": "float", "low": 0.5, "high": 1.0},
        "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0},
        "scale_pos_weight": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
    },
    LIGHTGBM: {
        "num_leaves": {"type": "int", "low": 8, "high": 128, "log": True},
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "min_child_samples": {"type": "int", "low": 5, "high": 200, "log": True},
        "subsample": {"type": "float", "low": 0.5, "high": 1.0},
        "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0},
        "reg_lambda": {"type": "float", "low": 0.001, "high": 10.0, "log": True},
        "scale_pos_weight": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
    },
    RANDOM_FOREST: {
        "n_estimators": {"type": "int", "low": 50, "high": 200, "step": 50},
        "max_depth": {"type": "int", "low": 4, "high": 16},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 50, "log": True},
        "max_features": {"type": "float", "low": 0.1, "high": 0.6},
        "max_samples": {"type": "float", "low": 0.1, "high": 0.5},
        "fraud_weight": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
    },
    MLP: {
        "hidden_layer_sizes": {"type": "categorical", "choices": ["32", "64", "64-32", "128-64"]},
        "alpha": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        "learning_rate_init": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "batch_size": {"type": "categorical", "choices": [256, 1024]},
        "fraud_weight": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
    },
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    # The original design's defaults plus training's loop settings, written out so best.json holds the
    # complete configuration promotion writes.
    XGBOOST: {
        **DEFAULT_HYPERPARAMETERS,
        "eval_metric": "aucpr",
        "num_round": DEFAULT_NUM_ROUND,
        "early_stopping_rounds": DEFAULT_EARLY_STOPPING_ROUNDS,
    },
    LIGHTGBM: {
        "objective": "binary",
        "metric": "average_precision",  # early stopping on PR-AUC, as xgboost's aucpr
        "n_estimators": DEFAULT_NUM_ROUND,
        "early_stopping_rounds": DEFAULT_EARLY_STOPPING_ROUNDS,
        "subsample_freq": 1,  # bagging only happens with a frequency
        "verbose": -1,
    },
    RANDOM_FOREST: {"n_estimators": 100, "max_depth": 10, "max_samples": 0.3, "fraud_weight": 1.0},
    MLP: {"hidden_layer_sizes": "64-32", "max_iter": 30, "n_iter_no_change": 5, "fraud_weight": 1.0},
}

_LIBRARIES = {XGBOOST: "xgboost", LIGHTGBM: "lightgbm", RANDOM_FOREST: "sklearn", MLP: "sklearn"}
_UNITS = {XGBOOST: "bytes (XGBoost JSON)", LIGHTGBM: "bytes (LightGBM model text)", RANDOM_FOREST: "tree nodes", MLP: "weights"}
_FITS = {XGBOOST: _fit_xgboost, LIGHTGBM: _fit_lightgbm, RANDOM_FOREST: _fit_random_forest, MLP: _fit_mlp}
_KNOWN = {
    XGBOOST: _xgboost_known,
    LIGHTGBM: _lightgbm_known,
    RANDOM_FOREST: _sklearn_known(RANDOM_FOREST, {"fraud_weight"}),
    MLP: _sklearn_known(MLP, {"fraud_weight"}),
}
ALGORITHMS: tuple[str, ...] = (XGBOOST, LIGHTGBM, RANDOM_FOREST, MLP)


def get_algorithm(name: str) -> Algorithm:
    """The algorithm by name; unknown names are refused naming the known ones."""
    if name not in ALGORITHMS:
        raise ParameterError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    return Algorithm(
        name=name,
        library=_LIBRARIES[name],
        search_space={k: dict(v) for k, v in _SPACES[name].items()},
        defaults=dict(_DEFAULTS[name]),
        known=_KNOWN[name](),
        size_unit=_UNITS[name],
        fit=_FITS[name],
        check=validate_hyperparameters if name == XGBOOST else dict,
    )


def default_search_space(name: str) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in _SPACES[name].items()}
