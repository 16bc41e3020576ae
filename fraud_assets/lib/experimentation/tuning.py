"""tuning_experiment's decisions around the search (experiments.run_experiment): what every trial
starts from, where the experiment came from, what is reported of it and the trials as a table."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pandas as pd

from fraud_assets.lib.experimentation.experiments import ExperimentResult
from fraud_assets.lib.training.hyperparameters import HyperparameterSet
from fraud_assets.lib.training.metrics import HEADLINE_METRICS


def experiment_origin(run_id: str, production: HyperparameterSet | None) -> dict[str, Any]:
    """Who ran the experiment and from what base: recorded in its config.json."""
    return {
        "dagster_run_id": run_id,
        "base": "production" if production is not None else "defaults",
        "base_source": production.source if production is not None else None,
        "base_experiment_id": production.experiment_id if production is not None else None,
    }


def no_completed_trials(result: ExperimentResult) -> str | None:
    """Why the experiment has no winner (none of its trials completed), or None when it has one."""
    if result.best is not None:
        return None
    errors = sorted({t["error"] for t in result.failed if t.get("error")})
    return f"experiment {result.experiment_id}: none of {len(result.trials)} trials completed; first errors: {errors[:3]}"


def describe_search(config: Mapping[str, Any]) -> str:
    """The experiment in one log line."""
    return (
        f"{config['strategy']} search of {', '.join(config['algorithms'])} on {', '.join(config['feature_sets'])} features, "
        f"{config['n_trials']} trials each, {config['validation']} validation, maximising {config['metric']}"
    )


def run_figures(result: ExperimentResult, record: Mapping[str, Any]) -> dict[str, Any]:
    """How the search went (`record`: result.config_record), whatever its outcome."""
    return {
        "experiment_id": result.experiment_id,
        "strategy": result.strategy,
        "metric": result.metric,
        "trials_run": len(result.trials),
        "trials_completed": len(result.completed),
        "trials_failed": len(result.failed),
        "duration_seconds": result.duration_seconds,
        "mean_trial_seconds": record["mean_trial_seconds"] or 0.0,
    }


# What a trial reports beyond its value: the training gates' metrics at the released threshold.
FRAME_METRICS = (*HEADLINE_METRICS, "high_risk_precision", "high_risk_recall", "threshold")


def best_figures(result: ExperimentResult) -> dict[str, Any]:
    """The winning trial's number and validation figures (none without a winner)."""
    best = result.best
    if best is None:
        return {}
    return {
        "best_trial": best["number"],
        f"best_{result.metric}": best["value"],
        **{f"best_{m}": float(best["metrics"][m]) for m in FRAME_METRICS if best["metrics"].get(m) is not None},
    }


def promote_hint(result: ExperimentResult) -> str:
    """How to promote the winner, or why it cannot be served."""
    from fraud_assets.lib.experimentation.algorithms import SERVABLE

    best = result.best
    if best is None:
        return "no winner"
    if best["algorithm"] in SERVABLE:
        return f"fraud-assets promote {result.experiment_id}"
    return f"not servable ({best['algorithm']}): only {', '.join(SERVABLE)} can be promoted"


def trials_frame(result: ExperimentResult) -> pd.DataFrame:
    """One row per trial; params as JSON text because a categorical dimension may mix types,
    which a parquet column cannot."""
    rows = []
    for t in result.trials:
        metrics, spread = t.get("metrics") or {}, t.get("metrics_std") or {}
        rows.append(
            {
                "number": t["number"],
                "algorithm": t["algorithm"],
                "feature_set": t["feature_set"],
                "state": t["state"],
                "value": t["value"],
                **{m: metrics.get(m) for m in FRAME_METRICS},
                **{f"{m}_std": spread.get(m) for m in FRAME_METRICS},
                "best_iteration": t.get("best_iteration"),
                "fit_seconds": t.get("fit_seconds"),
                "model_size": t.get("model_size"),
                "model_size_unit": t.get("model_size_unit"),
                "duration_seconds": t.get("duration_seconds"),
                "params": json.dumps(t["params"], sort_keys=True),
                "error": t.get("error"),
            }
        )
    frame = pd.DataFrame(rows)
    floats = ("value", *FRAME_METRICS, *(f"{m}_std" for m in FRAME_METRICS), "fit_seconds", "duration_seconds")
    for column in floats:
        frame[column] = frame[column].astype("float64")
    for column in ("best_iteration", "model_size"):
        frame[column] = frame[column].astype("Int64")
    return frame
