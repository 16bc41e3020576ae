"""Experiments: optuna searches over several algorithms and feature sets, validated the way fraud
models are, and their records in S3.

An experiment runs one optuna study per (algorithm, feature set), each with its own search space
and `n_trials` trials, all with the same strategy (optuna's GridSampler, RandomSampler, or
TPESampler for "bayesian"), on the same data and folds (lib/experimentation/validation.py: the
random split, or prequential folds in time). A trial trains on every fold's train part and is
scored on its validation part the way training releases a model: isotonic calibration fitted on
the validation scores and the high-risk threshold chosen by the release policy
(lib/training/calibration.release_policy), then PR-AUC and ROC-AUC (on the raw scores), and
precision and recall of the high-risk bucket at that threshold (the gates' high_risk_precision),
plus the fit time and the model's size. A trial's value is its metric's mean across folds; the
spread (sample standard deviation across folds) is recorded beside it. A trial that fails (a
parameter refused, a library error, a non-finite metric) is recorded as failed with its error
and the search goes on.

Everything that can be refused is refused before the first trial: an unknown algorithm, feature
set, parameter name or metric, an empty search space, and a validation whose folds do not fit
the data or leave a part without fraud.

Records, under `s3://<workflow bucket>/experiments/<experiment id>/`:
  trials.json  every trial: number, algorithm, feature set, state, params, hyperparameters,
               metrics (mean), metrics_std, folds (metrics per fold), fit time, model size, error
  best.json    the best completed trial, with the full hyperparameters it trained with (what
               promotion writes to Parameter Store, so production trains exactly what was measured)
  config.json  strategy, algorithms, feature sets, validation, search spaces, metric, the best
               trial per algorithm, split URIs, timings; written last, so its presence means the
               experiment's records are complete

Search space format (JSON, so it fits Dagster config and config.json), one entry per parameter:
  {"type": "int",   "low": 3, "high": 10, "step": 1, "log": false}
  {"type": "float", "low": 0.01, "high": 0.3, "log": true}
  {"type": "categorical", "choices": ["hist", "approx"]}
For several algorithms the space is keyed by algorithm ({"lightgbm": {...}}); an algorithm it does
not name searches its default space (lib/experimentation/algorithms.py). For the grid strategy a
numeric entry takes `grid` (explicit values) or `grid_points` (how many evenly spaced values,
geometric when log; default 3); with fewer trials than grid points the sampler visits a seeded
random subset of the grid.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import secrets
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.aws.storage import get_json, object_exists, put_json, validate_bucket
from fraud_assets.lib.config import LABEL_COLUMN
from fraud_assets.lib.experimentation import feature_sets as fsets
from fraud_assets.lib.experimentation.algorithms import ALGORITHMS, SERVABLE, XGBOOST, ParameterError, default_search_space, get_algorithm
from fraud_assets.lib.experimentation.validation import ValidationSpec, make_folds
from fraud_assets.lib.training.calibration import ThresholdPolicy, calibrate, release_policy
from fraud_assets.lib.training.hyperparameters import HyperparameterError, canonical_name, validate_experiment_id
from fraud_assets.lib.training.metrics import evaluate_scores

if TYPE_CHECKING:  # optuna and the learners load where a search runs, not with the code location
    import optuna


def _version(module: str) -> str:
    import importlib

    return importlib.import_module(module).__version__


EXPERIMENTS_PREFIX = "experiments"
CONFIG_FILE = "config.json"
TRIALS_FILE = "trials.json"
BEST_FILE = "best.json"
# What the serving path serves (the endpoint runs SageMaker's built-in XGBoost container).
ALGORITHM = XGBOOST

STRATEGIES = ("grid", "random", "bayesian")
# Every metric we search on is "higher is better"; the threshold-free PR-AUC is the default
# because at 0.17% fraud accuracy barely moves between a good and a useless model.
# high_risk_precision / high_risk_recall are measured at the released threshold, as the gates do.
MAXIMISED_METRICS = ("pr_auc", "roc_auc", "f1", "accuracy", "precision", "recall", "high_risk_precision", "high_risk_recall")
# What each fold records: the gates' metrics and what goes with them.
FOLD_METRICS = (*MAXIMISED_METRICS, "threshold", "high_risk_count")
DEFAULT_GRID_POINTS = 3

DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = default_search_space(XGBOOST)
TRIAL_DEFAULTS: dict[str, Any] = get_algorithm(XGBOOST).defaults


class SearchSpaceError(ValueError):
    pass


class ExperimentNotFound(LookupError):
    pass


class TrialError(RuntimeError):
    """A trial that ran but produced nothing usable (e.g. a NaN metric)."""


@dataclasses.dataclass
class ExperimentResult:
    experiment_id: str
    strategy: str
    sampler: str
    metric: str
    n_trials: int
    seed: int
    algorithms: list[str]
    feature_sets: list[str]
    validation: dict[str, Any]
    search_spaces: dict[str, dict[str, dict[str, Any]]]
    base_hyperparameters: dict[str, dict[str, Any]]
    threshold_policy: dict[str, Any]
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    started_at: str
    finished_at: str
    duration_seconds: float
    rows: dict[str, Any]
    grid_sizes: dict[str, int] | None = None

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["state"] == "COMPLETE"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["state"] == "FAIL"]

    @property
    def status(self) -> str:
        return "completed" if self.best is not None else "no_successful_trials"

    def best_record(self) -> dict[str, Any] | None:
        if self.best is None:
            return None
        b = self.best
        servable = best_trials(self.trials, by=("algorithm",)).get((XGBOOST,))
        return {
            "experiment_id": self.experiment_id,
            "algorithm": b["algorithm"],
            "feature_set": b["feature_set"],
            "validation": self.validation,
            "servable": b["algorithm"] in SERVABLE,
            "best_servable": None if servable is None else {"trial_number": servable["number"], "value": servable["value"]},
            "metric": self.metric,
            "value": b["value"],
            "trial_number": b["number"],
            "params": b["params"],
            "hyperparameters": b["hyperparameters"],
            "metrics": b["metrics"],
            "metrics_std": b["metrics_std"],
            "best_iteration": b["best_iteration"],
        }

    def config_record(self, splits: Mapping[str, str] | None = None, origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`origin`: who ran it and from what (e.g. the Dagster run id, where the base came from)."""
        durations = [t["duration_seconds"] for t in self.trials]
        libraries = sorted({get_algorithm(a).library for a in self.algorithms} | {"optuna"})
        return {
            "experiment_id": self.experiment_id,
            "algorithms": self.algorithms,
            "servable_algorithms": list(SERVABLE),
            "feature_sets": self.feature_sets,
            "validation": self.validation,
            "status": self.status,
            "strategy": self.strategy,
            "sampler": self.sampler,
            "seed": self.seed,
            "metric": self.metric,
            "direction": "maximize",
            "n_trials": self.n_trials,
            "trials_run": len(self.trials),
            "completed": len(self.completed),
            "failed": len(self.failed),
            "grid_sizes": self.grid_sizes,
            "search_spaces": self.search_spaces,
            "base_hyperparameters": self.base_hyperparameters,
            "threshold_policy": self.threshold_policy,
            "splits": dict(splits or {}),
            "rows": self.rows,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_seconds": self.duration_seconds,
            "mean_trial_seconds": round(sum(durations) / len(durations), 3) if durations else None,
            "best": None
            if self.best is None
            else {"trial_number": self.best["number"], "value": self.best["value"], "algorithm": self.best["algorithm"]},
            "best_per_algorithm": comparison_rows(self.trials, self.metric),
            "versions": {name: _version(name) for name in libraries},
            "origin": dict(origin or {}),
        }


def new_experiment_id(strategy: str, now: dt.datetime | None = None, suffix: str | None = None) -> str:
    """`<UTC time>-<strategy>-<suffix>`: sorts by start time, readable in a listing, unique."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return validate_experiment_id(f"{now:%Y%m%dT%H%M%SZ}-{strategy}-{suffix or secrets.token_hex(3)}")


def validate_search_space(space: Mapping[str, Mapping[str, Any]], algorithm: str = XGBOOST) -> dict[str, dict[str, Any]]:
    """Structure and names only: every name must be one of the algorithm's parameters (for xgboost
    a known hyperparameter: what cannot be promoted is not worth searching). Whether a sampled
    value is in range is each trial's business, so a space that reaches past a limit costs failed
    trials, not the experiment."""
    learner = get_algorithm(algorithm)
    if not isinstance(space, Mapping) or not space:
        raise SearchSpaceError(f"search space for {algorithm!r} is empty: it needs a mapping of parameter name to range")
    result: dict[str, dict[str, Any]] = {}
    for name, spec in space.items():
        if algorithm == XGBOOST:
            canonical = canonical_name(name)  # HyperparameterError naming an unknown one
        else:
            learner.check_names([name], "search space")
            canonical = name
        if canonical in result:
            raise SearchSpaceError(f"search space for {algorithm!r} names {canonical!r} twice")
        if not isinstance(spec, Mapping):
            raise SearchSpaceError(f"search space entry {name!r} must be a mapping, got {spec!r}")
        result[canonical] = _validate_dimension(name, dict(spec))
    return result


def _validate_dimension(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec.get("type")
    known_keys = {
        "int": {"type", "low", "high", "step", "log", "grid", "grid_points"},
        "float": {"type", "low", "high", "log", "grid", "grid_points"},
        "categorical": {"type", "choices"},
    }
    if kind not in known_keys:
        raise SearchSpaceError(f"search space entry {name!r}: type must be int, float or categorical, got {kind!r}")
    unknown = set(spec) - known_keys[kind]
    if unknown:
        raise SearchSpaceError(f"search space entry {name!r}: unknown keys {sorted(unknown)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or not all(isinstance(c, (str, int, float)) for c in choices):
            raise SearchSpaceError(f"search space entry {name!r}: choices must be a non-empty list of strings or numbers")
        return {"type": kind, "choices": list(choices)}
    number = int if kind == "int" else (int, float)
    low, high = spec.get("low"), spec.get("high")
    if (
        not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high))
        or not math.isfinite(low)
        or not math.isfinite(high)
        or low > high
    ):
        raise SearchSpaceError(f"search space entry {name!r}: needs {kind} low <= high, got low={low!r} high={high!r}")
    out: dict[str, Any] = {"type": kind, "low": low, "high": high, "log": bool(spec.get("log", False))}
    if out["log"] and low <= 0:
        raise SearchSpaceError(f"search space entry {name!r}: a log range needs low > 0")
    if kind == "int":
        step = spec.get("step", 1)
        if not isinstance(step, int) or isinstance(step, bool) or step < 1 or (out["log"] and step != 1):
            raise SearchSpaceError(f"search space entry {name!r}: step must be an integer >= 1 (and 1 on a log range)")
        out["step"] = step
    if "grid" in spec:
        grid = spec["grid"]
        if (
            not isinstance(grid, list)
            or not grid
            or not all(isinstance(v, number) and not isinstance(v, bool) and low <= v <= high for v in grid)
        ):
            raise SearchSpaceError(f"search space entry {name!r}: grid must be a non-empty list of {kind} values within [{low}, {high}]")
        out["grid"] = list(grid)
    points = spec.get("grid_points", DEFAULT_GRID_POINTS)
    if not isinstance(points, int) or isinstance(points, bool) or points < 1:
        raise SearchSpaceError(f"search space entry {name!r}: grid_points must be a positive integer")
    if "grid_points" in spec:
        out["grid_points"] = points
    return out


def grid_values(spec: Mapping[str, Any]) -> list[Any]:
    """The values GridSampler visits for one dimension."""
    if spec["type"] == "categorical":
        return list(spec["choices"])
    if "grid" in spec:
        return sorted(set(spec["grid"]))
    points = spec.get("grid_points", DEFAULT_GRID_POINTS)
    low, high = spec["low"], spec["high"]
    if spec["type"] == "int":
        candidates = list(range(low, high + 1, spec.get("step", 1)))
        if len(candidates) <= points:
            return candidates
        picks = np.geomspace(low, high, points) if spec["log"] else np.linspace(low, high, points)
        return sorted({min(candidates, key=lambda c: abs(c - p)) for p in picks})
    if points == 1 or low == high:
        return [float(low)]
    picks = np.geomspace(low, high, points) if spec["log"] else np.linspace(low, high, points)
    # Six significant digits keep records readable; clamping keeps rounding inside the range.
    return sorted({min(max(float(f"{p:.6g}"), low), high) for p in picks})


def _suggest(trial: optuna.Trial, name: str, spec: Mapping[str, Any]) -> Any:
    if spec["type"] == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec["log"])
    return trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=spec["log"])


def _sampler(strategy: str, space: Mapping[str, Mapping[str, Any]], seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    if strategy == "grid":
        return optuna.samplers.GridSampler({name: grid_values(spec) for name, spec in space.items()}, seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE's default waits 10 random trials before modelling; a short search would never get
    # there, so start modelling after a quarter of the budget (at least 2 random trials).
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n_trials // 4)))


def _per_algorithm(value: Mapping[str, Any] | None, algorithms: Sequence[str], what: str, flat_to: str | None) -> dict[str, Any]:
    """A setting given flat (for one algorithm) or keyed by algorithm, as {algorithm: setting}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SearchSpaceError(f"{what} must be a mapping, got {value!r}")
    if value and all(k in ALGORITHMS for k in value):
        extra = [k for k in value if k not in algorithms]
        if extra:
            raise SearchSpaceError(f"{what} names {extra[0]!r}, which this experiment does not run (algorithms: {list(algorithms)})")
        return {k: v for k, v in value.items()}
    if flat_to is None:
        if len(algorithms) > 1:
            raise SearchSpaceError(f"with several algorithms {what} must be keyed by algorithm, e.g. {{'lightgbm': {{...}}}}")
        flat_to = algorithms[0]
    return {flat_to: value}


def base_hyperparameters(
    algorithms: Sequence[str], production: Mapping[str, Any] | None, given: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Per algorithm, what its trials start from: Parameter Store's production values are
    xgboost's only; `given` (flat for one algorithm, else keyed by algorithm; flat with several
    is xgboost's) is laid over them."""
    names = _check_algorithms(algorithms)
    bases: dict[str, dict[str, Any]] = {n: {} for n in names}
    if production and XGBOOST in bases:
        bases[XGBOOST].update(production)
    for name, values in _per_algorithm(given, names, "base_hyperparameters", XGBOOST if len(names) > 1 else None).items():
        bases[name].update(values or {})
    return {n: b for n, b in bases.items() if b}


def _check_algorithms(algorithms: Sequence[str]) -> list[str]:
    if isinstance(algorithms, str) or not algorithms:
        raise ParameterError(f"algorithms must be a non-empty list of {ALGORITHMS}, got {algorithms!r}")
    names = list(algorithms)
    for name in names:
        get_algorithm(name)  # raises naming an unknown one
    if len(set(names)) != len(names):
        raise ParameterError(f"algorithms names one twice: {names}")
    return names


def score_fold(labels: np.ndarray, raw_scores: np.ndarray, policy: ThresholdPolicy) -> dict[str, Any]:
    """A fold's metrics as training measures a released model: calibration and threshold fitted
    on these (validation) rows by the release policy, AUCs ranked on the raw scores."""
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return {m: float("nan") for m in FOLD_METRICS}
    calibration, thresholds = release_policy(raw_scores, labels, policy)
    metrics = evaluate_scores(labels, calibrate(raw_scores, calibration), high_risk_threshold=thresholds["high"], ranking_scores=raw_scores)
    return {
        **{m: metrics[m] for m in MAXIMISED_METRICS},
        "threshold": float(thresholds["high"]),
        "high_risk_count": metrics["high_risk_count"],
    }


def run_experiment(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    strategy: str,
    n_trials: int,
    algorithms: Sequence[str] = (XGBOOST,),
    feature_sets: Sequence[str] = (fsets.RAW,),
    label_delay_days: int = 1,
    validation_spec: ValidationSpec | None = None,
    search_space: Mapping[str, Any] | None = None,
    metric: str = "pr_auc",
    seed: int = 0,
    base_hyperparameters: Mapping[str, Any] | None = None,
    threshold_policy: ThresholdPolicy | None = None,
    experiment_id: str | None = None,
    nthread: int | None = None,
    timeout_seconds: float | None = None,
) -> ExperimentResult:
    """Run the search and return its result; writes nothing (see record_experiment).

    `n_trials` per (algorithm, feature set); `label_delay_days` is the history feature set's label
    delay. `search_space` and `base_hyperparameters` are flat (one algorithm) or keyed by
    algorithm; a flat base with several algorithms is xgboost's (the production hyperparameters
    are xgboost's). `timeout_seconds` bounds the whole experiment."""
    import optuna

    # --- everything that can be refused, before the first trial -------------------------------
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if metric not in MAXIMISED_METRICS:
        raise ValueError(f"metric must be one of {MAXIMISED_METRICS}, got {metric!r}")
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    names = _check_algorithms(algorithms)
    given_spaces = _per_algorithm(search_space, names, "search_space", None)
    given_bases = _per_algorithm(base_hyperparameters, names, "base_hyperparameters", XGBOOST if len(names) > 1 else None)
    learners = {name: get_algorithm(name) for name in names}
    spaces, bases = {}, {}
    for name, learner in learners.items():
        spaces[name] = validate_search_space(given_spaces[name] if name in given_spaces else learner.search_space, name)
        base = dict(given_bases.get(name) or {})
        if name != XGBOOST:  # xgboost's base is checked by its allowlist, aliases included
            learner.check_names(base, "base_hyperparameters")
        # The base is checked once, up front: if it is bad every trial would fail for the same reason.
        bases[name] = learner.parameters(base, {})
    sets = fsets.check_feature_sets(feature_sets, train)
    spec = validation_spec or ValidationSpec()
    data, folds = make_folds(train, validation, spec)
    policy = threshold_policy or ThresholdPolicy()
    experiment_id = new_experiment_id(strategy) if experiment_id is None else validate_experiment_id(experiment_id)

    records: list[dict[str, Any]] = []
    started_at, clock = _now_iso(), time.perf_counter()
    deadline = None if timeout_seconds is None else clock + timeout_seconds
    sampler_name = None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial is noise in run logs
    try:
        for feature_set in sets:
            # Built once per feature set and fold, shared by every algorithm and trial.
            prepared = [fsets.build(feature_set, data.iloc[f.train], data.iloc[f.validation], label_delay_days) for f in folds]
            for name, learner in learners.items():
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    break
                sampler = _sampler(strategy, spaces[name], seed, n_trials)
                sampler_name = type(sampler).__name__
                study_records = _run_study(
                    spec.kind,
                    learner,
                    feature_set,
                    spaces[name],
                    bases[name],
                    prepared,
                    sampler,
                    experiment_id,
                    n_trials,
                    metric,
                    policy,
                    seed,
                    nthread,
                    remaining,
                )
                for record in study_records:
                    record["number"] = len(records)
                    records.append(record)
            del prepared
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = [_ordered(r) for r in records]
    completed = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(completed, key=lambda t: (t["value"], -t["number"])) if completed else None
    return ExperimentResult(
        experiment_id=experiment_id,
        strategy=strategy,
        sampler=sampler_name or type(_sampler(strategy, spaces[names[0]], seed, n_trials)).__name__,
        metric=metric,
        n_trials=n_trials,
        seed=seed,
        algorithms=names,
        feature_sets=sets,
        validation=spec.record(),
        search_spaces=spaces,
        base_hyperparameters=bases,
        threshold_policy=dataclasses.asdict(policy),
        trials=trials,
        best=best,
        started_at=started_at,
        finished_at=_now_iso(),
        duration_seconds=round(time.perf_counter() - clock, 3),
        rows={"train": len(train), "validation": len(validation), "folds": [f.describe() for f in folds]},
        grid_sizes={n: math.prod(len(grid_values(s)) for s in spaces[n].values()) for n in names} if strategy == "grid" else None,
    )


def _run_study(
    validation_kind, learner, feature_set, space, base, prepared, sampler, experiment_id, n_trials, metric, policy, seed, nthread, timeout
):
    """One optuna study: `learner` on `feature_set` over every fold. Returns its trial records."""
    import optuna

    records: dict[int, dict[str, Any]] = {}

    def objective(trial: optuna.Trial) -> float:
        record = records.setdefault(trial.number, {"started_at": _now_iso()})
        started = time.perf_counter()
        try:
            params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
            hyperparameters = learner.parameters(base, params)
            record["hyperparameters"] = hyperparameters
            folds = []
            for index, (train_part, validation_part, names) in enumerate(prepared):
                fitted = learner.fit(train_part, validation_part, names, dict(hyperparameters), nthread, seed)
                scores = score_fold(validation_part[LABEL_COLUMN].to_numpy(), fitted.validation_scores, policy)
                folds.append(
                    {
                        "fold": index,
                        **_finite_or_none(scores),
                        "fit_seconds": round(fitted.fit_seconds, 3),
                        "model_size": fitted.model_size,
                        "best_iteration": fitted.best_iteration,
                        "rows": {"train": len(train_part), "validation": len(validation_part)},
                    }
                )
                record["folds"] = folds
                if not math.isfinite(scores[metric]):
                    raise TrialError(f"{metric} is {scores[metric]} on fold {index}'s validation part (does it hold both classes?)")
            means, spreads = _across_folds(folds)
            record.update(metrics=means, metrics_std=spreads, best_iteration=folds[0]["best_iteration"])
            record["fit_seconds"] = round(float(np.mean([f["fit_seconds"] for f in folds])), 3)
            record["model_size"] = int(round(float(np.mean([f["model_size"] for f in folds]))))
            return float(means[metric])
        except (HyperparameterError, TrialError) as err:
            # Anticipated failures: NaN makes optuna mark the trial FAIL with a one-line warning
            # instead of a traceback; the reason is in the record.
            record["error"] = f"{type(err).__name__}: {err}"
            return float("nan")
        except Exception as err:
            record["error"] = f"{type(err).__name__}: {err}"
            raise
        finally:
            record["duration_seconds"] = round(time.perf_counter() - started, 3)

    study = optuna.create_study(direction="maximize", sampler=sampler, study_name=f"{experiment_id}/{learner.name}/{feature_set}")
    # catch=(Exception,): optuna marks the trial FAIL and carries on; the error is in `records`.
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,), gc_after_trial=False)
    out = []
    for t in study.trials:
        record = records.get(t.number, {})
        out.append(
            {
                **record,
                "algorithm": learner.name,
                "feature_set": feature_set,
                "validation": validation_kind,
                "study_trial": t.number,
                "state": t.state.name,
                "value": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                "params": dict(t.params),
                "model_size_unit": learner.size_unit,
            }
        )
    return out


_TRIAL_KEYS = (
    "number",
    "algorithm",
    "feature_set",
    "validation",
    "study_trial",
    "state",
    "value",
    "params",
    "hyperparameters",
    "metrics",
    "metrics_std",
    "folds",
    "best_iteration",
    "fit_seconds",
    "model_size",
    "model_size_unit",
    "started_at",
    "duration_seconds",
    "error",
)


def _ordered(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in _TRIAL_KEYS}


def _across_folds(folds: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and sample standard deviation (None with one fold) of each metric across folds."""
    means, spreads = {}, {}
    for name in FOLD_METRICS:
        values = [f[name] for f in folds if f.get(name) is not None]
        means[name] = float(np.mean(values)) if values else None
        spreads[name] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return means, spreads


def _finite_or_none(value: Any) -> Any:
    # NaN is not JSON; a metric that could not be computed is recorded as null.
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


# --- S3 records -------------------------------------------------------------------------------


def experiment_prefix(experiment_id: str) -> str:
    return f"{EXPERIMENTS_PREFIX}/{validate_experiment_id(experiment_id)}/"


def record_experiment(
    s3, bucket: str, result: ExperimentResult, splits: Mapping[str, str] | None = None, origin: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Write trials.json, best.json (when a trial completed), then config.json. Refuses to
    overwrite an existing experiment: records are an audit trail."""
    validate_bucket(bucket)
    prefix = experiment_prefix(result.experiment_id)
    if object_exists(s3, bucket, prefix + CONFIG_FILE):
        raise FileExistsError(f"experiment {result.experiment_id} is already recorded in s3://{bucket}/{prefix}")
    uris = {
        "trials": str(
            put_json(
                s3, bucket, prefix + TRIALS_FILE, {"experiment_id": result.experiment_id, "metric": result.metric, "trials": result.trials}
            )
        )
    }
    best = result.best_record()
    if best is not None:
        uris["best"] = str(put_json(s3, bucket, prefix + BEST_FILE, best))
    uris["config"] = str(put_json(s3, bucket, prefix + CONFIG_FILE, result.config_record(splits, origin)))
    uris["prefix"] = f"s3://{bucket}/{prefix}"
    return uris


def load_experiment(s3, bucket: str, experiment_id: str) -> dict[str, Any]:
    """{"experiment_id", "config", "trials", "best"} ("best" is None when no trial completed)."""
    prefix = experiment_prefix(experiment_id)
    base = f"s3://{validate_bucket(bucket)}/{prefix}"
    if not object_exists(s3, bucket, prefix + CONFIG_FILE):
        raise ExperimentNotFound(f"no experiment {experiment_id!r} recorded at {base}")
    config = get_json(s3, base + CONFIG_FILE)
    trials = get_json(s3, base + TRIALS_FILE)["trials"]
    best = get_json(s3, base + BEST_FILE) if object_exists(s3, bucket, prefix + BEST_FILE) else None
    return {"experiment_id": experiment_id, "uri": base, "config": config, "trials": trials, "best": best}


def list_experiments(s3, bucket: str) -> list[dict[str, Any]]:
    """One summary row per recorded experiment (from its config.json), newest first. An
    experiment whose config.json is missing (still running, or crashed while writing) is listed
    last with status "incomplete"."""
    validate_bucket(bucket)
    rows = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=EXPERIMENTS_PREFIX + "/", Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            experiment_id = common["Prefix"][len(EXPERIMENTS_PREFIX) + 1 :].rstrip("/")
            key = f"{common['Prefix']}{CONFIG_FILE}"
            if not object_exists(s3, bucket, key):
                rows.append({"experiment_id": experiment_id, "status": "incomplete"})
                continue
            config = get_json(s3, f"s3://{bucket}/{key}")
            best = config.get("best") or {}
            rows.append(
                {
                    "experiment_id": experiment_id,
                    "status": config.get("status"),
                    "strategy": config.get("strategy"),
                    "algorithms": config.get("algorithms") or [config.get("algorithm", XGBOOST)],
                    "validation": (config.get("validation") or {}).get("kind", "random"),
                    "metric": config.get("metric"),
                    "best_value": best.get("value"),
                    "best_trial": best.get("trial_number"),
                    "best_algorithm": best.get("algorithm", XGBOOST),
                    "trials_run": config.get("trials_run"),
                    "completed": config.get("completed"),
                    "failed": config.get("failed"),
                    "started_at": config.get("started_at"),
                    "finished_at": config.get("finished_at"),
                    "duration_seconds": config.get("duration_seconds"),
                }
            )
    return sorted(rows, key=lambda r: (r.get("started_at") or "", r["experiment_id"]), reverse=True)


# --- Readable output (CLI and asset metadata) -------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.{digits}g}"
    return str(value)


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def format_experiment_table(experiments: Sequence[Mapping[str, Any]]) -> str:
    """The `experiments list` view: one line per experiment."""
    if not experiments:
        return "no experiments recorded"
    rows = [
        (
            e["experiment_id"],
            e.get("status"),
            e.get("strategy"),
            ",".join(e.get("algorithms") or []) or None,
            e.get("validation"),
            e.get("metric"),
            e.get("best_value"),
            None if e.get("best_trial") is None else f"#{e['best_trial']} {e.get('best_algorithm') or ''}".rstrip(),
            None
            if e.get("trials_run") is None
            else f"{e.get('completed', 0)}/{e['trials_run']}" + (f" ({e['failed']} failed)" if e.get("failed") else ""),
            (e.get("started_at") or "")[:19].replace("T", " ") or None,
            None if e.get("duration_seconds") is None else f"{e['duration_seconds']:.1f}s",
        )
        for e in experiments
    ]
    return _text_table(
        [
            "EXPERIMENT",
            "STATUS",
            "STRATEGY",
            "ALGORITHMS",
            "VALIDATION",
            "METRIC",
            "BEST",
            "TRIAL",
            "TRIALS OK",
            "STARTED (UTC)",
            "DURATION",
        ],
        rows,
    )


def _algorithm(trial: Mapping[str, Any]) -> str:
    return trial.get("algorithm") or XGBOOST  # records from before the comparison are xgboost's


def ranked_trials(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Completed trials best first, then failed ones in order."""
    done = sorted((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: (-t["value"], t["number"]))
    return done + [t for t in trials if t["state"] != "COMPLETE"]


def best_trials(trials: Sequence[Mapping[str, Any]], by: Sequence[str] = ("algorithm", "feature_set")) -> dict[tuple, Mapping[str, Any]]:
    """The best completed trial per group (e.g. per algorithm and feature set), in order of first
    appearance."""
    out: dict[tuple, Mapping[str, Any]] = {}
    for t in ranked_trials(trials):
        if t["state"] != "COMPLETE":
            continue
        key = tuple(_algorithm(t) if k == "algorithm" else t.get(k) or "raw" for k in by)
        out.setdefault(key, t)
    order = {tuple(_algorithm(t) if k == "algorithm" else t.get(k) or "raw" for k in by): t["number"] for t in reversed(trials)}
    return dict(sorted(out.items(), key=lambda kv: order[kv[0]]))


def comparison_rows(trials: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The best trial per algorithm and feature set, with the gates' metrics as mean and spread
    across folds, fit time, time per trial and model size: the experiment's comparison table."""
    rows = []
    for (algorithm, feature_set), t in best_trials(trials).items():
        m, sd = t.get("metrics") or {}, t.get("metrics_std") or {}
        group = [x for x in trials if _algorithm(x) == algorithm and (x.get("feature_set") or "raw") == feature_set]
        rows.append(
            {
                "algorithm": algorithm,
                "feature_set": feature_set,
                "trial": t["number"],
                "metric": metric,
                "value": t["value"],
                **{k: m.get(k) for k in ("pr_auc", "roc_auc", "high_risk_precision", "high_risk_recall", "threshold")},
                **{f"{k}_std": sd.get(k) for k in ("pr_auc", "roc_auc", "high_risk_precision", "high_risk_recall")},
                "folds": len(t.get("folds") or []) or 1,
                "fit_seconds": t.get("fit_seconds"),
                "mean_trial_seconds": round(
                    float(np.mean([x["duration_seconds"] for x in group if x.get("duration_seconds") is not None])), 3
                ),
                "trials": len(group),
                "completed": sum(x["state"] == "COMPLETE" for x in group),
                "model_size": t.get("model_size"),
                "model_size_unit": t.get("model_size_unit"),
                "servable": algorithm in SERVABLE,
            }
        )
    return rows


def _pm(mean: Any, spread: Any) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f}" + ("" if spread is None else f" ± {spread:.4f}")


def _size(value: Any, unit: str | None) -> str:
    if value is None:
        return "-"
    if unit and unit.startswith("bytes"):
        return f"{value / 1024:,.0f} KiB" + unit[len("bytes") :]
    return f"{value:,} {unit or ''}".rstrip()


COMPARISON_HEADERS = (
    "ALGORITHM",
    "FEATURES",
    "TRIAL",
    "PR-AUC",
    "ROC-AUC",
    "PRECISION@THR",
    "RECALL@THR",
    "THR",
    "FIT S",
    "S/TRIAL",
    "MODEL SIZE",
    "SERVABLE",
)


def comparison_cells(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            r["algorithm"],
            r["feature_set"],
            f"#{r['trial']}",
            _pm(r.get("pr_auc"), r.get("pr_auc_std")),
            _pm(r.get("roc_auc"), r.get("roc_auc_std")),
            _pm(r.get("high_risk_precision"), r.get("high_risk_precision_std")),
            _pm(r.get("high_risk_recall"), r.get("high_risk_recall_std")),
            _fmt(r.get("threshold"), 3),
            _fmt(r.get("fit_seconds"), 2),
            _fmt(r.get("mean_trial_seconds"), 1),
            _size(r.get("model_size"), r.get("model_size_unit")),
            "yes" if r.get("servable") else "no",
        ]
        for r in rows
    ]


def format_comparison(rows: Sequence[Mapping[str, Any]]) -> str:
    """The best trial per algorithm (and feature set) as text: mean ± spread across folds."""
    if not rows:
        return "no trial completed"
    return _text_table(COMPARISON_HEADERS, comparison_cells(rows))


def comparison_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    out = ["| " + " | ".join(COMPARISON_HEADERS) + " |", "|" + "---|" * len(COMPARISON_HEADERS)]
    out.extend("| " + " | ".join(cells) + " |" for cells in comparison_cells(rows))
    return "\n".join(out)


def _params_text(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v, 4) if isinstance(v, float) else v}" for k, v in params.items())


def _trial_rows(trials: Sequence[Mapping[str, Any]], metric: str) -> tuple[list[str], list[list[Any]]]:
    columns = [m for m in ("pr_auc", "roc_auc", "high_risk_precision", "high_risk_recall") if m != metric]
    headers = ["TRIAL", "ALGORITHM", "FEATURES", "STATE", metric.upper(), *[c.upper() for c in columns], "ITER", "SECONDS", "PARAMS"]
    rows = []
    for t in trials:
        m = t.get("metrics") or {}
        rows.append(
            [
                f"#{t['number']}",
                _algorithm(t),
                t.get("feature_set") or "raw",
                t["state"],
                t.get("value"),
                *[m.get(c) for c in columns],
                t.get("best_iteration"),
                None if t.get("duration_seconds") is None else f"{t['duration_seconds']:.2f}",
                _params_text(t.get("params") or {}),
            ]
        )
    return headers, rows


def _describe_validation(validation: Mapping[str, Any] | None) -> str:
    if not validation:
        return "random split (train / validation)"
    return validation.get("description") or validation.get("kind", "?")


def format_experiment_detail(record: Mapping[str, Any], top: int | None = None) -> str:
    """The `experiments show` view of load_experiment's record: settings, the best trial per
    algorithm, the best trial, all trials ranked, and the errors of failed trials."""
    config, trials, best = record["config"], record["trials"], record.get("best")
    metric = config["metric"]
    spaces = config.get("search_spaces") or {config.get("algorithm", XGBOOST): config.get("search_space", {})}
    grid_sizes = config.get("grid_sizes") or ({XGBOOST: config["grid_size"]} if config.get("grid_size") else {})
    lines = [
        f"Experiment {record['experiment_id']}  ({config.get('status')})",
        f"  records     {record.get('uri', '-')}",
        f"  algorithms  {', '.join(spaces)}   feature sets {', '.join(config.get('feature_sets') or ['raw'])}",
        f"  strategy    {config['strategy']} ({config.get('sampler')}, seed {config.get('seed')}), {config.get('n_trials')} trials each"
        + (f", grids of {', '.join(f'{a} {n}' for a, n in grid_sizes.items())}" if grid_sizes else ""),
        f"  validation  {_describe_validation(config.get('validation'))}",
        f"  metric      {metric} (maximise; mean across folds)",
        f"  trials      {config.get('trials_run')} run: {config.get('completed')} complete, {config.get('failed')} failed",
        f"  started     {config.get('started_at')}   duration {_fmt(config.get('duration_seconds'), 1)} s"
        f"   mean per trial {_fmt(config.get('mean_trial_seconds'), 2)} s",
    ]
    for name, uri in (config.get("splits") or {}).items():
        lines.append(f"  {'split':<11} {name}: {uri}  ({config.get('rows', {}).get(name, '?')} rows)")
    for algorithm, space in spaces.items():
        lines.append(f"  space       {algorithm}: " + ", ".join(f"{n}: {_describe_dimension(s)}" for n, s in space.items()))
    lines.append("\nBest trial per algorithm (mean ± spread across folds; precision and recall at the released threshold):")
    lines.append(format_comparison(comparison_rows(trials, metric)))
    if best is None:
        lines.append("\nNo trial completed: nothing to promote.")
    else:
        algorithm = best.get("algorithm", XGBOOST)
        lines.append(
            f"\nBest trial #{best['trial_number']} ({algorithm}, {best.get('feature_set') or 'raw'} features): "
            f"{metric} = {_fmt(best['value'])} (best iteration {best.get('best_iteration')})"
        )
        if algorithm not in SERVABLE:
            lines.append(f"  not servable: the endpoint runs the built-in XGBoost container; only {', '.join(SERVABLE)} can be promoted")
        lines.append("  hyperparameters" + (" (what promotion writes):" if algorithm in SERVABLE else ":"))
        lines.extend(f"    {k:<22} {v}" for k, v in best["hyperparameters"].items())
        m = best.get("metrics") or {}
        lines.append(
            "  validation: "
            + ", ".join(f"{k} {_fmt(m.get(k))}" for k in ("pr_auc", "roc_auc", "high_risk_precision", "high_risk_recall", "threshold"))
        )
    ranked = ranked_trials(trials)
    shown = ranked if top is None else ranked[:top]
    headers, rows = _trial_rows(shown, metric)
    lines.append(f"\nTrials, best first ({len(shown)} of {len(trials)}):")
    lines.append(_text_table(headers, rows))
    failed = [t for t in trials if t["state"] == "FAIL"]
    if failed:
        lines.append("\nFailed trials:")
        lines.extend(f"  #{t['number']} ({_algorithm(t)}): {t.get('error') or 'no error recorded'}" for t in failed)
    return "\n".join(lines)


def _describe_dimension(spec: Mapping[str, Any]) -> str:
    if spec["type"] == "categorical":
        return "{" + ", ".join(map(str, spec["choices"])) + "}"
    return f"{spec['low']}..{spec['high']}" + (" log" if spec.get("log") else "") + (f" grid {spec['grid']}" if "grid" in spec else "")


def trials_markdown(trials: Sequence[Mapping[str, Any]], metric: str, top: int = 10) -> str:
    """A markdown table of the best `top` trials (for the asset's metadata in the Dagster UI)."""
    headers, rows = _trial_rows(ranked_trials(trials)[:top], metric)
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out.extend("| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows)
    return "\n".join(out)


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def metric_plot_svg(trials: Sequence[Mapping[str, Any]], metric: str, width: int = 640, height: int = 300) -> str:
    """`metric` against trial number, one colour per algorithm (and feature set), the spread across
    folds as a bar: a self-contained SVG (no plotting library; the Dagster UI shows it inline)."""
    from xml.sax.saxutils import escape

    done = [t for t in trials if t["state"] == "COMPLETE" and t.get("value") is not None]
    left, right, top, bottom = 50, 180, 20, 35
    inner_w, inner_h = width - left - right, height - top - bottom
    n = max([t["number"] for t in trials] + [1])
    values = [t["value"] for t in done] + [
        t["value"] + s
        for t in done
        for s in (((t.get("metrics_std") or {}).get(metric) or 0.0), -((t.get("metrics_std") or {}).get(metric) or 0.0))
    ]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max((high - low) * 0.1, 0.01)
    low, high = max(0.0, low - pad), min(1.0, high + pad)

    def x(number: float) -> float:
        return left + inner_w * number / n

    def y(value: float) -> float:
        return top + inner_h * (1 - (value - low) / (high - low or 1.0))

    groups = list(dict.fromkeys(f"{_algorithm(t)}/{t.get('feature_set') or 'raw'}" for t in trials))
    colour = {g: _COLOURS[i % len(_COLOURS)] for i, g in enumerate(groups)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{left}" y1="{top + inner_h}" x2="{left + inner_w}" y2="{top + inner_h}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + inner_h}" stroke="#444"/>',
        f'<text x="{left + inner_w / 2}" y="{height - 5}" text-anchor="middle">trial</text>',
        f'<text x="12" y="{top + inner_h / 2}" transform="rotate(-90 12 {top + inner_h / 2})" text-anchor="middle">{escape(metric)}</text>',
    ]
    for i in range(5):
        v = low + (high - low) * i / 4
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
    for number in sorted({0, n // 2, n}):
        parts.append(f'<text x="{x(number):.1f}" y="{top + inner_h + 14}" text-anchor="middle">{number}</text>')
    for t in done:
        g = f"{_algorithm(t)}/{t.get('feature_set') or 'raw'}"
        cx, cy = x(t["number"]), y(t["value"])
        spread = (t.get("metrics_std") or {}).get(metric)
        if spread:
            parts.append(
                f'<line x1="{cx:.1f}" y1="{y(t["value"] - spread):.1f}" x2="{cx:.1f}" y2="{y(t["value"] + spread):.1f}" stroke="{colour[g]}"/>'
            )
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour[g]}"><title>#{t["number"]} {escape(g)}: {t["value"]:.4f}</title></circle>'
        )
    for i, g in enumerate(groups):
        parts.append(f'<circle cx="{width - right + 15}" cy="{top + 10 + 16 * i}" r="4" fill="{colour[g]}"/>')
        parts.append(f'<text x="{width - right + 24}" y="{top + 14 + 16 * i}">{escape(g)}</text>')
    parts.append("</svg>")
    return "".join(parts)
