"""Hyperparameter experiments: an optuna search over xgboost settings, and its records in S3.

A search is optuna's own samplers (GridSampler, RandomSampler, TPESampler for "bayesian"); every
trial trains with early stopping on the validation split (training.train_model) and is scored on
that split with metrics.evaluate_scores. A trial that fails (parameters refused by
hyperparameters.validate_hyperparameters, an xgboost error, a non-finite metric) is recorded as
failed with its error and the search goes on.

Records, under `s3://<workflow bucket>/experiments/<experiment id>/`:
  trials.json  every trial: number, state, params, hyperparameters, metrics, duration, error
  best.json    the best completed trial, with the full hyperparameters it trained with (what
               promotion writes to Parameter Store, so production trains exactly what was measured)
  config.json  strategy, sampler, trial counts, search space, metric, split URIs, timings; written
               last, so its presence means the experiment's records are complete

Search space format (JSON, so it fits Dagster config and config.json), one entry per parameter:
  {"type": "int",   "low": 3, "high": 10, "step": 1, "log": false}
  {"type": "float", "low": 0.01, "high": 0.3, "log": true}
  {"type": "categorical", "choices": ["hist", "approx"]}
For the grid strategy a numeric entry takes `grid` (explicit values) or `grid_points` (how many
evenly spaced values, geometric when log; default 3); with fewer trials than grid points the
sampler visits a seeded random subset of the grid.
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
from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN
from fraud_assets.lib.training.hyperparameters import HyperparameterError, canonical_name, validate_experiment_id, validate_hyperparameters
from fraud_assets.lib.training.metrics import evaluate_scores
from fraud_assets.lib.training.model import (
    DEFAULT_EARLY_STOPPING_ROUNDS,
    DEFAULT_HYPERPARAMETERS,
    DEFAULT_NUM_ROUND,
    train_model,
)

if TYPE_CHECKING:  # optuna and xgboost load where a search runs, not with the code location
    import optuna


def _version(module: str) -> str:
    import importlib

    return importlib.import_module(module).__version__


EXPERIMENTS_PREFIX = "experiments"
CONFIG_FILE = "config.json"
TRIALS_FILE = "trials.json"
BEST_FILE = "best.json"
ALGORITHM = "xgboost"

STRATEGIES = ("grid", "random", "bayesian")
# Every metric we search on is "higher is better"; the threshold-free PR-AUC is the default
# because at 0.17% fraud accuracy barely moves between a good and a useless model.
MAXIMISED_METRICS = ("pr_auc", "roc_auc", "f1", "accuracy", "precision", "recall", "high_risk_precision", "high_risk_recall")
DEFAULT_GRID_POINTS = 3

# The default search: tree shape (max_depth, min_child_weight), learning rate, row and column
# subsampling, and the fraud-class weight, which matters most at this imbalance (~1:580; the
# range stops at 100 because higher weights trade too much precision for recall).
DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "max_depth": {"type": "int", "low": 3, "high": 10},
    "eta": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
    "min_child_weight": {"type": "float", "low": 1.0, "high": 10.0, "log": True},
    "subsample": {"type": "float", "low": 0.5, "high": 1.0},
    "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0},
    "scale_pos_weight": {"type": "float", "low": 1.0, "high": 100.0, "log": True},
}
# What a trial trains with before base and sampled values are laid over it: the seeds' defaults
# plus training's loop settings, written out so best.json holds the complete configuration.
TRIAL_DEFAULTS: dict[str, Any] = {
    **DEFAULT_HYPERPARAMETERS,
    "eval_metric": "aucpr",
    "num_round": DEFAULT_NUM_ROUND,
    "early_stopping_rounds": DEFAULT_EARLY_STOPPING_ROUNDS,
}


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
    search_space: dict[str, dict[str, Any]]
    base_hyperparameters: dict[str, Any]
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    started_at: str
    finished_at: str
    duration_seconds: float
    rows: dict[str, int]
    grid_size: int | None = None

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
        return {
            "experiment_id": self.experiment_id,
            "algorithm": ALGORITHM,
            "metric": self.metric,
            "value": b["value"],
            "trial_number": b["number"],
            "params": b["params"],
            "hyperparameters": b["hyperparameters"],
            "metrics": b["metrics"],
            "best_iteration": b["best_iteration"],
        }

    def config_record(self, splits: Mapping[str, str] | None = None, origin: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`origin`: who ran it and from what (e.g. the Dagster run id, where the base came from)."""
        durations = [t["duration_seconds"] for t in self.trials]
        return {
            "experiment_id": self.experiment_id,
            "algorithm": ALGORITHM,
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
            "grid_size": self.grid_size,
            "search_space": self.search_space,
            "base_hyperparameters": self.base_hyperparameters,
            "splits": dict(splits or {}),
            "rows": self.rows,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_seconds": self.duration_seconds,
            "mean_trial_seconds": round(sum(durations) / len(durations), 3) if durations else None,
            "best": None if self.best is None else {"trial_number": self.best["number"], "value": self.best["value"]},
            "versions": {"optuna": _version("optuna"), "xgboost": _version("xgboost")},
            "origin": dict(origin or {}),
        }


def new_experiment_id(strategy: str, now: dt.datetime | None = None, suffix: str | None = None) -> str:
    """`<UTC time>-<strategy>-<suffix>`: sorts by start time, readable in a listing, unique."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return validate_experiment_id(f"{now:%Y%m%dT%H%M%SZ}-{strategy}-{suffix or secrets.token_hex(3)}")


def validate_search_space(space: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Structure and names only: every name must be a known hyperparameter (what cannot be
    promoted is not worth searching). Whether a sampled value is in range is each trial's
    business, so a space that reaches past a limit costs failed trials, not the experiment."""
    if not isinstance(space, Mapping) or not space:
        raise SearchSpaceError("search space must be a non-empty mapping of parameter name to range")
    result: dict[str, dict[str, Any]] = {}
    for name, spec in space.items():
        canonical = canonical_name(name)
        if canonical in result:
            raise SearchSpaceError(f"search space names {canonical!r} twice")
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


def run_experiment(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    *,
    strategy: str,
    n_trials: int,
    search_space: Mapping[str, Mapping[str, Any]] | None = None,
    metric: str = "pr_auc",
    seed: int = 0,
    base_hyperparameters: Mapping[str, Any] | None = None,
    experiment_id: str | None = None,
    feature_names: Sequence[str] = FEATURE_COLUMNS,
    nthread: int | None = None,
    timeout_seconds: float | None = None,
) -> ExperimentResult:
    """Run the search and return its result; writes nothing (see record_experiment)."""
    import optuna

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if metric not in MAXIMISED_METRICS:
        raise ValueError(f"metric must be one of {MAXIMISED_METRICS}, got {metric!r}")
    if not isinstance(n_trials, int) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    space = validate_search_space(DEFAULT_SEARCH_SPACE if search_space is None else search_space)
    # The base is validated once, up front: if it is bad every trial would fail for the same reason.
    base = validate_hyperparameters({**TRIAL_DEFAULTS, **(base_hyperparameters or {})})
    experiment_id = new_experiment_id(strategy) if experiment_id is None else validate_experiment_id(experiment_id)
    sampler = _sampler(strategy, space, seed, n_trials)
    labels = validation[LABEL_COLUMN].to_numpy()
    records: dict[int, dict[str, Any]] = {}

    def objective(trial: optuna.Trial) -> float:
        record = records.setdefault(trial.number, {"started_at": _now_iso()})
        started = time.perf_counter()
        try:
            params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
            hyperparameters = validate_hyperparameters({**base, **params})
            record["hyperparameters"] = hyperparameters
            model = train_model(train, validation, hyperparameters, feature_names, nthread)
            scores = evaluate_scores(labels, model.predict(validation))
            record["metrics"] = _finite_or_none(scores)
            record["best_iteration"] = model.best_iteration
            value = scores[metric]
            if not math.isfinite(value):
                raise TrialError(f"{metric} is {value} on the validation split (does it hold both classes?)")
            return float(value)
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

    started_at, clock = _now_iso(), time.perf_counter()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial is noise in run logs
    try:
        study = optuna.create_study(direction="maximize", sampler=sampler, study_name=experiment_id)
        # catch=(Exception,): optuna marks the trial FAIL and carries on; the error is in `records`.
        study.optimize(objective, n_trials=n_trials, timeout=timeout_seconds, catch=(Exception,), gc_after_trial=False)
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = [_trial_record(t, records.get(t.number, {})) for t in study.trials]
    completed = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(completed, key=lambda t: (t["value"], -t["number"])) if completed else None
    return ExperimentResult(
        experiment_id=experiment_id,
        strategy=strategy,
        sampler=type(sampler).__name__,
        metric=metric,
        n_trials=n_trials,
        seed=seed,
        search_space=space,
        base_hyperparameters=base,
        trials=trials,
        best=best,
        started_at=started_at,
        finished_at=_now_iso(),
        duration_seconds=round(time.perf_counter() - clock, 3),
        rows={"train": len(train), "validation": len(validation)},
        grid_size=math.prod(len(grid_values(s)) for s in space.values()) if strategy == "grid" else None,
    )


def _trial_record(trial: optuna.trial.FrozenTrial, record: Mapping[str, Any]) -> dict[str, Any]:
    import optuna

    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None,
        "params": dict(trial.params),
        "hyperparameters": record.get("hyperparameters"),
        "metrics": record.get("metrics"),
        "best_iteration": record.get("best_iteration"),
        "started_at": record.get("started_at"),
        "duration_seconds": record.get("duration_seconds"),
        "error": record.get("error"),
    }


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
                    "metric": config.get("metric"),
                    "best_value": best.get("value"),
                    "best_trial": best.get("trial_number"),
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
            e.get("metric"),
            e.get("best_value"),
            None if e.get("best_trial") is None else f"#{e['best_trial']}",
            None
            if e.get("trials_run") is None
            else f"{e.get('completed', 0)}/{e['trials_run']}" + (f" ({e['failed']} failed)" if e.get("failed") else ""),
            (e.get("started_at") or "")[:19].replace("T", " ") or None,
            None if e.get("duration_seconds") is None else f"{e['duration_seconds']:.1f}s",
        )
        for e in experiments
    ]
    return _text_table(["EXPERIMENT", "STATUS", "STRATEGY", "METRIC", "BEST", "TRIAL", "TRIALS OK", "STARTED (UTC)", "DURATION"], rows)


def ranked_trials(trials: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Completed trials best first, then failed ones in order."""
    done = sorted((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: (-t["value"], t["number"]))
    return done + [t for t in trials if t["state"] != "COMPLETE"]


def _trial_rows(trials: Sequence[Mapping[str, Any]], metric: str, params: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    columns = [m for m in ("pr_auc", "roc_auc", "f1", "precision", "recall") if m != metric]
    headers = ["TRIAL", "STATE", metric.upper(), *[c.upper() for c in columns], "ITER", "SECONDS", *params]
    rows = []
    for t in trials:
        m = t.get("metrics") or {}
        rows.append(
            [
                f"#{t['number']}",
                t["state"],
                t.get("value"),
                *[m.get(c) for c in columns],
                t.get("best_iteration"),
                None if t.get("duration_seconds") is None else f"{t['duration_seconds']:.2f}",
                *[t.get("params", {}).get(p) for p in params],
            ]
        )
    return headers, rows


def format_experiment_detail(record: Mapping[str, Any], top: int | None = None) -> str:
    """The `experiments show` view of load_experiment's record: settings, best trial, all trials
    ranked, and the errors of failed trials."""
    config, trials, best = record["config"], record["trials"], record.get("best")
    metric = config["metric"]
    lines = [
        f"Experiment {record['experiment_id']}  ({config.get('status')})",
        f"  records    {record.get('uri', '-')}",
        f"  strategy   {config['strategy']} ({config.get('sampler')}, seed {config.get('seed')})"
        + (f", grid of {config['grid_size']}" if config.get("grid_size") else ""),
        f"  metric     {metric} (maximise, validation split)",
        f"  trials     {config.get('trials_run')} run of {config.get('n_trials')} requested: "
        f"{config.get('completed')} complete, {config.get('failed')} failed",
        f"  started    {config.get('started_at')}   duration {_fmt(config.get('duration_seconds'), 1)} s"
        f"   mean per trial {_fmt(config.get('mean_trial_seconds'), 2)} s",
    ]
    for name, uri in (config.get("splits") or {}).items():
        lines.append(f"  {'split':<10} {name}: {uri}  ({config.get('rows', {}).get(name, '?')} rows)")
    lines.append("  space      " + ", ".join(f"{n}: {_describe_dimension(s)}" for n, s in config.get("search_space", {}).items()))
    if best is None:
        lines.append("\nNo trial completed: nothing to promote.")
    else:
        lines.append(
            f"\nBest trial #{best['trial_number']}: {metric} = {_fmt(best['value'])} (best iteration {best.get('best_iteration')})"
        )
        lines.append("  hyperparameters (what promotion writes):")
        lines.extend(f"    {k:<22} {v}" for k, v in best["hyperparameters"].items())
        m = best.get("metrics") or {}
        lines.append(
            "  validation: " + ", ".join(f"{k} {_fmt(m.get(k))}" for k in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"))
        )
    ranked = ranked_trials(trials)
    shown = ranked if top is None else ranked[:top]
    headers, rows = _trial_rows(shown, metric, list(config.get("search_space", {})))
    lines.append(f"\nTrials, best first ({len(shown)} of {len(trials)}):")
    lines.append(_text_table(headers, rows))
    failed = [t for t in trials if t["state"] == "FAIL"]
    if failed:
        lines.append("\nFailed trials:")
        lines.extend(f"  #{t['number']}: {t.get('error') or 'no error recorded'}" for t in failed)
    return "\n".join(lines)


def _describe_dimension(spec: Mapping[str, Any]) -> str:
    if spec["type"] == "categorical":
        return "{" + ", ".join(map(str, spec["choices"])) + "}"
    return f"{spec['low']}..{spec['high']}" + (" log" if spec.get("log") else "") + (f" grid {spec['grid']}" if "grid" in spec else "")


def trials_markdown(trials: Sequence[Mapping[str, Any]], metric: str, params: Sequence[str], top: int = 10) -> str:
    """A markdown table of the best `top` trials (for the asset's metadata in the Dagster UI)."""
    headers, rows = _trial_rows(ranked_trials(trials)[:top], metric, params)
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out.extend("| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows)
    return "\n".join(out)
