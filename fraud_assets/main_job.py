"""The main job behind `fraud-assets run`: the training graph, then the daily partitions, through
Dagster on a persistent instance (so `dagster dev` shows the runs afterwards).

Every run executes as a launched run does (`execute`: `dagster.execute_job` over the code
location's job reconstructed by name, its in-process executor), not through `execute_in_process`,
which captures every step's output until the run ends: the training graph's frames (the data set,
three splits) would all be held at once in this process."""

from __future__ import annotations

import datetime as dt
import math
from typing import Callable, Mapping

from dagster import DagsterInstance, JobDefinition

from fraud_assets.lib import metadata_keys as keys
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


def location_job(job_name: str, resources: Mapping[str, Mapping] | None = None) -> JobDefinition:
    """A job of the code location, some resources' fields replaced (`resources`: resource name ->
    fields, plain JSON, so the job can be reconstructed from it by name)."""
    from fraud_assets.definitions import location_defs

    defs = location_defs()
    if resources:
        defs = location_defs(**{name: type(defs.resources[name])(**fields) for name, fields in resources.items()})
    return defs.resolve_job_def(job_name)


def execute(
    job_name: str,
    instance: DagsterInstance,
    *,
    run_config: dict | None = None,
    tags: Mapping[str, str] | None = None,
    partition_key: str | None = None,
    resources: Mapping[str, Mapping] | None = None,
):
    """Run a job of the code location in this process as a launched run executes it: the job
    reconstructed by name (`location_job`) and run by `dagster.execute_job` with the job's
    in-process executor. No step output is captured (execute_in_process keeps every one until the
    run ends), so a step's frames are freed when the step ends."""
    from dagster import build_reconstructable_job, execute_job

    from fraud_assets.lib.memory import release_freed_memory

    job = build_reconstructable_job(
        "fraud_assets.main_job", "location_job", reconstructable_kwargs={"job_name": job_name, "resources": dict(resources or {})}
    )
    run_tags = {**(tags or {}), **({"dagster/partition": partition_key} if partition_key else {})}
    result = execute_job(job, instance=instance, run_config=run_config or QUIET, tags=run_tags, raise_on_error=False)
    # What the run's last steps freed, handed back before the next run's first step (which loads
    # no input, so the IO manager's release between steps does not come first).
    release_freed_memory(collect_cycles=True)
    return result


def training_run_config(recent_window_days: int | None = None) -> dict:
    """QUIET, plus the recent labelled window's length when it is not the asset's default."""
    if recent_window_days is None:
        return QUIET
    return {**QUIET, "ops": {"data_extraction": {"config": {"recent_window_days": recent_window_days}}}}


def run_training(
    instance: DagsterInstance,
    announce: Announce,
    run_config: dict | None = None,
    tags: dict | None = None,
    resources: Mapping[str, Mapping] | None = None,
) -> dict:
    announce("Materialising the training graph (training_job) ...")
    result = execute("training_job", instance, run_config=run_config, tags=tags, resources=resources)
    mats = _materializations(result)
    passed, failed = _check_lines(result)
    read = _reader(mats)
    deployed = mats.get("deployed_endpoint")
    summary = {
        "run_id": result.run_id,
        "succeeded": bool(result.success),
        "metrics": {m: read("evaluation_metrics", m) for m in HEADLINE_METRICS},
        "model_version": read("fraud_model", keys.MODEL_VERSION),
        "model_uri": read("deployed_endpoint", keys.MODEL_URI) or read("fraud_model", keys.artifact_uri_key("model.tar.gz")),
        "endpoint_name": read("deployed_endpoint", keys.ENDPOINT_NAME),
        "feature_names": read("fraud_model", keys.FEATURE_NAMES),
        "deployed": deployed is not None,
        "failed_checks": failed,
        "errors": _failures(result),
        "dataset": _dataset_figures(mats.get("training_dataset")),
        "recent_window": {
            "dates": read("recent_labelled_window", keys.DATES) or [],
            **{
                side: {m: _finite(read("evaluation_metrics", keys.challenger_recent_key(side, m))) for m in RECENT_FIGURES}
                for side in ("champion", "challenger")
            },
        },
    }
    announce(_training_report(summary, passed))
    return summary


# What the run summary shows of each model on the recent labelled window.
RECENT_FIGURES = ("recall_at_threshold", "high_risk_threshold", "pr_auc")


def _reader(mats: dict[str, dict]) -> Callable[[str, str], object]:
    """read(asset, key): the key of the asset's materialization metadata; None when the run did not
    materialise the asset (a failed gate stops deployed_endpoint), MissingMetadata when it did and
    the key is not there (the asset and this reader disagree: loud, not a silent None)."""

    def read(asset: str, key: str):
        metadata = mats.get(asset)
        return None if metadata is None else keys.require(metadata, key, asset)

    return read


def _dataset_figures(metadata: dict | None) -> dict:
    """training_dataset's metadata as the summary shows it (every key; rows and rows_from_daily required)."""
    if metadata is None:
        return {}
    for key in (keys.ROWS, keys.ROWS_FROM_DAILY):
        keys.require(metadata, key, "training_dataset")
    return metadata


def _finite(value):
    """NaN (metadata's "undefined", so the UI plots the rest) as None, which JSON can say."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _training_report(summary: dict, passed: list[str]) -> str:
    lines = [f"Training run {summary['run_id']}: {'succeeded' if summary['succeeded'] else 'FAILED'}"]
    dataset, window = summary["dataset"], summary["recent_window"]
    if dataset:
        lines.append(f"  training data: {dataset.get('rows')} rows, {dataset.get('rows_from_daily')} from labelled daily batches")
    if window["dates"]:
        lines.append(
            f"  recent window {', '.join(window['dates'])}: recall at the high-risk threshold challenger "
            f"{_fmt(window['challenger']['recall_at_threshold'])} (at {_fmt(window['challenger']['high_risk_threshold'])}) "
            f"vs champion {_fmt(window['champion']['recall_at_threshold'])} (at {_fmt(window['champion']['high_risk_threshold'])}); PR-AUC {_fmt(window['challenger']['pr_auc'])} "
            f"vs {_fmt(window['champion']['pr_auc'])}"
        )
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
PERFORMANCE_SUMMARY = (
    keys.MODEL_VERSION,
    keys.LABELLED,
    keys.FRAUD,
    keys.HIGH_RISK_THRESHOLD,
    keys.REALISED_PRECISION_AT_THRESHOLD,
    keys.REALISED_RECALL_AT_THRESHOLD,
    keys.ALERT_PRECISION,
)


def day_performance(metadata: dict) -> dict | None:
    """The day's measured quality from model_performance's metadata (empty: not materialised);
    None until labels have arrived. Undefined figures (NaN in metadata, so the UI can plot the
    rest) become null; a materialization without one of the keys raises MissingMetadata."""
    if not metadata or not keys.require(metadata, keys.LABELLED, "model_performance"):
        return None
    return {k: _finite(keys.require(metadata, k, "model_performance")) for k in PERFORMANCE_SUMMARY}


def _figure(mats: dict[str, dict], asset: str, key: str):
    """A figure an asset of this run recorded; None when the asset did not materialise (a failed
    day), MissingMetadata when it did without the key (the asset and this reader disagree)."""
    return keys.require(mats[asset], key, f"{asset} in this run") if asset in mats else None


def _performance_note(performance: dict | None) -> str:
    if performance is None:
        return ", no labels yet"
    return (
        f", labels {performance['labelled']} ({performance['fraud']} fraud): realised recall "
        f"{_fmt(performance['realised_recall_at_threshold'])} at {_fmt(performance['high_risk_threshold'])}, alert precision {_fmt(performance['alert_precision'])}"
    )


def _inference_day(instance: DagsterInstance, date: str, announce: Announce) -> dict:
    result = execute("inference_job", instance, partition_key=date)
    mats = {k.split("[")[0]: v for k, v in _materializations(result).items()}
    day = {
        "date": date,
        "run_id": result.run_id,
        "succeeded": bool(result.success),
        "transactions": _figure(mats, "daily_transactions", keys.RECEIVED),
        "scored": _figure(mats, "daily_scores", keys.SCORED),
        "quarantined": _figure(mats, "daily_transactions", keys.QUARANTINED),
        "high_risk": _figure(mats, "daily_scores", keys.HIGH_RISK),
        "alerts_sent": _figure(mats, "fraud_alerts", keys.MESSAGES_SENT),
        "avg_score": _figure(mats, "daily_scores", keys.AVG_SCORE),
        "drift_detected": _figure(mats, "drift_metrics", keys.DRIFT_DETECTED),
        "performance": day_performance(mats.get("model_performance", {})),
        "errors": _failures(result),
    }
    announce(
        f"  {date}: {day['transactions']} received, {day['scored']} scored, {day['quarantined']} quarantined, "
        f"{day['high_risk']} high-risk, {day['alerts_sent']} alert messages, avg score {_fmt(day['avg_score'])}, "
        f"drift {'YES' if day['drift_detected'] else 'no'}"
        + _performance_note(day["performance"])
        + ("" if day["succeeded"] else f" FAILED: {day['errors']}")
    )
    return day


def _measure(instance: DagsterInstance, date: str) -> dict | None:
    """A day's realised quality once its labels arrived: model_performance_job for that day, as
    label_file_sensor would launch it."""
    result = execute("model_performance_job", instance, partition_key=date)
    return day_performance({k.split("[")[0]: v for k, v in _materializations(result).items()}.get("model_performance", {}))


def tick_drift_sensor(defs, instance: DagsterInstance, cursor: str | None) -> tuple[list[dict], str | None]:
    """One tick of drift_retraining_sensor, as the daemon would run it: (its run requests, new cursor)."""
    from dagster import build_sensor_context

    sensor = defs.resolve_sensor_def("drift_retraining_sensor")
    context = build_sensor_context(
        instance=instance, definitions=defs, cursor=cursor, resources={"retraining_policy": defs.resources["retraining_policy"]}
    )
    result = sensor(context)
    requests = result if isinstance(result, list) else []
    return [{"job": r.job_name or sensor.job_name, "run_key": r.run_key, "tags": dict(r.tags)} for r in requests], context.cursor


def flag_lost_in_restore(instance: DagsterInstance, snapshot_time: str, announce: Announce = print) -> list[tuple[str, str | None]]:
    """After the local stack came back from a snapshot taken at `snapshot_time` (ISO-8601): the
    materialisations recorded after it may have lost their stored objects and items (a crash
    loses what changed since the last snapshot), though Dagster still shows them. Each gets an
    observation saying so (visible on the asset in the UI), and the partitions to re-run are
    announced. Returns (asset, partition) pairs."""
    import datetime as dt

    from dagster import AssetObservation, AssetRecordsFilter

    since = dt.datetime.fromisoformat(snapshot_time).timestamp()
    lost: list[tuple[str, str | None]] = []
    for key in instance.get_asset_keys():
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, after_timestamp=since), limit=1000).records
        for partition in sorted({r.partition_key for r in records}, key=str):
            lost.append((key.to_user_string(), partition))
            instance.report_runless_asset_event(
                AssetObservation(
                    asset_key=key,
                    partition=partition,
                    description=f"materialised after the local stack's last snapshot ({snapshot_time}), then the stack was "
                    "restored from that snapshot: its stored objects/items may be gone. Re-run this partition.",
                    metadata={"lost_in_stack_restore": True, "snapshot_time": snapshot_time},
                )
            )
    if lost:
        days = sorted({p for _, p in lost if p})
        announce(
            f"The local stack was restored from its snapshot of {snapshot_time}: {len(lost)} materialisations after it "
            f"may have lost their data (flagged in Dagster). Re-run: {', '.join(days) if days else 'the training graph'}"
            + (" and the training graph" if days and any(p is None for _, p in lost) else "")
            + "."
        )
    return lost


def _retraining_summary(run: dict) -> dict:
    dataset = run["dataset"]
    return {
        "run_id": run["run_id"],
        "succeeded": run["succeeded"],
        "training_rows": dataset.get("rows"),
        "rows_from_daily": dataset.get("rows_from_daily"),
        "recent_window": run["recent_window"],
        "deployed": run["deployed"],
        "model_version": run["model_version"],
    }


def run_main_job(
    dates: list[str],
    announce: Announce = print,
    *,
    pending_labels: dict[str, bytes] | None = None,
    label_delay_days: int = 1,
    recent_window_days: int | None = None,
) -> dict:
    """Train and deploy, then live through `dates` one day at a time: the labels that are due arrive
    (`pending_labels`, published `label_delay_days` after their day) and their days' performance is
    measured, the drift sensor ticks (a retraining it requests runs then and there, with its tags),
    and the day is scored. After the last day the remaining labels arrive."""
    from fraud_assets.definitions import location_defs
    from fraud_assets.lib.aws.clients import make_client
    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.seeding.seed import labels_due, put_label_file

    instance = DagsterInstance.get()
    defs = location_defs()
    run_config = training_run_config(recent_window_days)
    training = run_training(instance, announce, run_config)
    summary: dict = {"training": training, "days": [], "retraining_requests": [], "retraining": None}
    if not (training["succeeded"] and dates):
        return summary
    pending = dict(pending_labels or {})
    s3, names = make_client("s3"), PlatformNames.from_env()
    by_date: dict[str, dict] = {}

    def labels_arrive(due: list[str]) -> None:
        for date in sorted(due):
            put_label_file(s3, names, date, pending.pop(date))
            performance = _measure(instance, date)
            if date in by_date:
                by_date[date]["performance"] = performance
            announce(f"  labels for {date} arrived" + _performance_note(performance))

    announce(f"Living through {len(dates)} days (inference_job per day; labels arrive {label_delay_days} day(s) late) ...")
    cursor = None
    for date in dates:
        labels_arrive(labels_due([d for d in pending if d < date], dt.date.fromisoformat(date), label_delay_days))
        # The sensor sees yesterday's drift and today's labels before the day is scored.
        requests, cursor = tick_drift_sensor(defs, instance, cursor)
        summary["retraining_requests"] += requests
        for request in requests:
            announce(f"drift_retraining_sensor requests a {request['job']} run ({request['run_key']}); running it now")
            retrained = run_training(instance, announce, run_config, tags=request["tags"])
            summary["retraining"] = _retraining_summary(retrained)
        by_date[date] = _inference_day(instance, date, announce)
        summary["days"].append(by_date[date])
    if pending:
        announce("The following days: the last labels arrive")
        labels_arrive(list(pending))
    if not summary["retraining_requests"]:
        announce("drift_retraining_sensor: no retraining requested")
    return summary


def promote_and_maybe_retrain(
    experiment_id: str, retrain: bool, announce: Announce = print, resources: Mapping[str, Mapping] | None = None
) -> dict:
    from fraud_assets.lib.aws.clients import make_client
    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.experimentation.promotion import promote_to_production

    result = promote_to_production(experiment_id, s3=make_client("s3"), ssm=make_client("ssm"), names=PlatformNames.from_env())
    if retrain:
        announce("Retraining with the promoted hyperparameters ...")
        result["retraining"] = run_training(DagsterInstance.get(), announce, resources=resources)
    return result


__all__ = ["run_main_job", "promote_and_maybe_retrain"]
