"""The main job behind `fraud-assets run`: the training graph, then the daily partitions, through
Dagster on a persistent instance (so `dagster dev` shows the runs afterwards)."""

from __future__ import annotations

import math
from typing import Callable

from dagster import DagsterInstance

from fraud_assets.lib.training.metrics import HEADLINE_METRICS

Announce = Callable[[str], None]
# Dagster's console logger prints every event at DEBUG; the CLI prints its own summary instead.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _materializations(result) -> dict[str, dict]:
    """asset name -> {metadata key: raw value} for what this run materialised."""
    found: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        partition = materialization.partition
        key = materialization.asset_key.to_user_string() + (f"[{partition}]" if partition else "")
        found[key] = {k: v.value for k, v in materialization.metadata.items()}
    return found


def _failures(result) -> list[str]:
    lines = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the user's exception, not Dagster's wrapper
                error = error.cause
            lines.append(f"{event.step_key}: {error.message.strip() if error else 'failed'}")
    return lines


def _check_lines(result) -> tuple[list[str], list[str]]:
    passed, failed = [], []
    for evaluation in result.get_asset_check_evaluations():
        line = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}: {evaluation.description or ''}".rstrip(": ")
        (passed if evaluation.passed else failed).append(line)
    return passed, failed


def _definitions(defs):
    if defs is not None:
        return defs
    from fraud_assets.definitions import location_defs

    return location_defs()


def run_training(instance: DagsterInstance, announce: Announce, defs=None) -> dict:
    defs = _definitions(defs)
    announce("Materialising the training graph (training_job) ...")
    result = defs.resolve_job_def("training_job").execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    mats = _materializations(result)
    passed, failed = _check_lines(result)
    evaluation = mats.get("evaluation_metrics", {})
    deployed = mats.get("deployed_endpoint")
    model = mats.get("fraud_model", {})
    summary = {
        "run_id": result.run_id,
        "succeeded": bool(result.success),
        "metrics": {m: evaluation.get(m) for m in HEADLINE_METRICS},
        "model_version": model.get("model_version"),
        "model_uri": (deployed or {}).get("model_uri") or model.get("model.tar.gz_uri".replace(".", "_")),
        "endpoint_name": (deployed or {}).get("endpoint_name"),
        "feature_names": model.get("feature_names"),
        "deployed": deployed is not None,
        "failed_checks": failed,
        "errors": _failures(result),
    }
    announce(_training_report(summary, passed))
    return summary


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _training_report(summary: dict, passed: list[str]) -> str:
    lines = [f"Training run {summary['run_id']}: {'succeeded' if summary['succeeded'] else 'FAILED'}"]
    if summary["metrics"].get("accuracy") is not None:
        lines.append("  test metrics: " + ", ".join(f"{m}={_fmt(v)}" for m, v in summary["metrics"].items()))
    lines.append(f"  model {summary['model_version']} -> {summary['model_uri']}")
    lines.append(f"  quality gates: {len(passed)} passed, {len(summary['failed_checks'])} failed")
    lines += [f"    FAILED {line}" for line in summary["failed_checks"]]
    lines += [f"    ERROR {line}" for line in summary["errors"]]
    if summary["deployed"]:
        lines.append(f"  deployed to endpoint {summary['endpoint_name']}")
    else:
        lines.append("  not deployed: the endpoint keeps serving the previous model")
    return "\n".join(lines)


# What `--summary-json` shows of a day's model_performance (the contract of issue 8).
PERFORMANCE_SUMMARY = ("model_version", "labelled", "fraud", "precision_at_0_8", "recall_at_0_8", "alert_precision")


def day_performance(metadata: dict) -> dict | None:
    """The day's measured quality from model_performance's metadata; None until labels have arrived.
    Undefined figures (NaN in metadata, so the UI can plot the rest) become null."""
    if not metadata.get("labelled"):
        return None
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v
        for k, v in ((k, metadata.get(k)) for k in PERFORMANCE_SUMMARY)
    }


def _performance_note(performance: dict | None) -> str:
    if performance is None:
        return ", no labels yet"
    return (f", labels {performance['labelled']} ({performance['fraud']} fraud): realised recall@0.8 "
            f"{_fmt(performance['recall_at_0_8'])}, alert precision {_fmt(performance['alert_precision'])}")


def run_days(instance: DagsterInstance, dates: list[str], announce: Announce) -> list[dict]:
    from fraud_assets.definitions import location_defs

    try:
        job = location_defs().resolve_job_def("inference_job")
    except Exception:
        return []
    days = []
    for date in dates:
        result = job.execute_in_process(instance=instance, partition_key=date, run_config=QUIET, raise_on_error=False)
        mats = {k.split("[")[0]: v for k, v in _materializations(result).items()}
        tx, scores = mats.get("daily_transactions", {}), mats.get("daily_scores", {})
        alerts, drift = mats.get("fraud_alerts", {}), mats.get("drift_metrics", {})
        day = {
            "date": date,
            "run_id": result.run_id,
            "succeeded": bool(result.success),
            "transactions": tx.get("received"),
            "scored": scores.get("scored"),
            "quarantined": tx.get("quarantined"),
            "high_risk": scores.get("high_risk"),
            "alerts_sent": alerts.get("messages_sent"),
            "avg_score": scores.get("avg_score"),
            "drift_detected": drift.get("drift_detected"),
            "performance": day_performance(mats.get("model_performance", {})),
            "errors": _failures(result),
        }
        days.append(day)
        announce(
            f"  {date}: {day['transactions']} received, {day['scored']} scored, {day['quarantined']} quarantined, "
            f"{day['high_risk']} high-risk, {day['alerts_sent']} alert messages, avg score {_fmt(day['avg_score'])}, "
            f"drift {'YES' if day['drift_detected'] else 'no'}" + _performance_note(day["performance"])
            + ("" if day["succeeded"] else f" FAILED: {day['errors']}")
        )
    return days


def evaluate_drift_sensor(instance: DagsterInstance, announce: Announce) -> list[dict]:
    """Ticks the drift sensor once, as the daemon would, and reports what it asks for."""
    from dagster import build_sensor_context

    from fraud_assets.definitions import location_defs

    defs = location_defs()
    try:
        sensor = defs.resolve_sensor_def("drift_retraining_sensor")
    except Exception:
        return []
    context = build_sensor_context(instance=instance, definitions=defs, resources={"retraining_policy": defs.resources["retraining_policy"]})
    result = sensor(context)
    requests = list(getattr(result, "run_requests", None) or ([] if result is None else [r for r in result] if isinstance(result, list) else []))
    found = [{"job": r.job_name or sensor.job_name, "run_key": r.run_key, "tags": dict(r.tags)} for r in requests]
    for request in found:
        announce(f"drift_retraining_sensor requests a {request['job']} run (run key {request['run_key']})")
    if not found:
        announce("drift_retraining_sensor: no retraining requested")
    return found


def run_main_job(dates: list[str], announce: Announce = print) -> dict:
    instance = DagsterInstance.get()
    training = run_training(instance, announce)
    days: list[dict] = []
    retraining: list[dict] = []
    if training["succeeded"] and dates:
        announce(f"Materialising {len(dates)} daily partitions (inference_job) ...")
        days = run_days(instance, dates, announce)
        retraining = evaluate_drift_sensor(instance, announce)
    return {"training": training, "days": days, "retraining_requests": retraining}


def promote_and_maybe_retrain(experiment_id: str, retrain: bool, announce: Announce = print, defs=None) -> dict:
    import boto3

    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.experimentation.promotion import promote_to_production

    result = promote_to_production(experiment_id, s3=boto3.client("s3"), ssm=boto3.client("ssm"), names=PlatformNames.from_env())
    if retrain:
        announce("Retraining with the promoted hyperparameters ...")
        result["retraining"] = run_training(DagsterInstance.get(), announce, defs)
    return result


__all__ = ["run_main_job", "promote_and_maybe_retrain"]
