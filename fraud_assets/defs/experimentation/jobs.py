"""Experimentation jobs: run a tuning experiment on demand, promote a winner, and the sensor that
retrains after a promotion that asked for it.

Why a run-status sensor launches the retraining rather than the promote op itself: an op has no
clean handle on the code location to submit another job's run from (instance.submit_run needs a
remote job origin, which an in-process run does not even have), and a retrain must only follow a
promotion that succeeded. The sensor fires on a *successful* promote_experiment run whose config
says retrain, launches training_job with run_key `promotion-<run id>` (at most once per
promotion) and tags that link the training run to the promotion. It runs wherever Dagster's
daemon runs sensors (`dagster dev` included); the CLI's `promote --retrain` trains in-process.
"""

from typing import Any

from dagster import (
    AssetSelection,
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    Failure,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RunRequest,
    RunStatusSensorContext,
    SkipReason,
    define_asset_job,
    job,
    op,
    run_status_sensor,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.common import markdown_table
from fraud_assets.defs.resources import AwsClients, FraudPlatform

# Modules, not their objects: Dagster collects every definition a defs module holds by name.
from fraud_assets.defs.training import jobs as training_jobs
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.experimentation.promotion import (
    ProductionChangeRefused,
    promote_to_production,
)

PROMOTE_OP = "promote"
TRIGGER_TAG = "fraud/trigger"
EXPERIMENT_TAG = "fraud/experiment_id"
PROMOTION_RUN_TAG = "fraud/promotion_run_id"

tuning_experiment_job = define_asset_job(
    "tuning_experiment_job",
    selection=AssetSelection.assets("tuning_experiment"),
    description="On demand: a hyperparameter search on the latest train/validation splits (no schedule).",
)


class PromotionConfig(Config):
    experiment_id: str = Field(description="The experiment whose best trial goes to production.")
    retrain: bool = Field(default=False, description="Launch training_job once this promotion has succeeded.")


def retraining_run_key(promotion_run_id: str) -> str:
    return f"promotion-{promotion_run_id}"


@op(
    name=PROMOTE_OP,
    out=Out(Nothing),  # the effect is in Parameter Store and S3; the summary travels as metadata
    description="promote_to_production: validate the best trial's hyperparameters, back up Parameter Store, write the "
    "new values, archive and regenerate production-model-config.yaml. A refusal changes nothing.",
)
def promote(context: OpExecutionContext, config: PromotionConfig, s3: S3Resource, aws: AwsClients, platform: FraudPlatform):
    def request_retraining(summary: dict[str, Any]) -> dict[str, Any]:
        # Recorded here, carried out by promotion_retraining_sensor once this run has succeeded.
        return {"job": "training_job", "via": "promotion_retraining_sensor", "run_key": retraining_run_key(context.run_id)}

    try:
        summary = promote_to_production(
            config.experiment_id,
            s3=s3_client(s3),
            ssm=aws.client("ssm"),
            names=platform.names,
            retrain_callback=request_retraining if config.retrain else None,
        )
    except ProductionChangeRefused as err:
        raise Failure(description=str(err), allow_retries=False) from err
    context.log.info(
        f"{summary['status']}: {config.experiment_id} (trial #{summary['trial_number']}, {summary['metric']} {summary['value']:.4f})"
    )
    rows = [(name, value, summary["versions"].get(name, "-")) for name, value in summary["hyperparameters"].items()]
    metadata: dict[str, Any] = {
        "status": summary["status"],
        "experiment_id": config.experiment_id,
        "previous_experiment_id": summary["previous_experiment_id"] or "none",
        f"validation_{summary['metric']}": float(summary["value"]),
        "hyperparameters": MetadataValue.md(markdown_table(["parameter", "value", "SSM version"], rows)),
        "config": MetadataValue.path(summary["config"]),
        "retrain": MetadataValue.json(summary["retrain"]) if summary["retrain"] else "not requested",
    }
    if summary["status"] == "promoted":
        metadata.update(
            {
                "backup": MetadataValue.path(summary["backup"]),
                "config_version": summary["config_version"],
                "archived_config": MetadataValue.path(summary["archived_config"])
                if summary["archived_config"]
                else "none (first promotion)",
                "removed_parameters": ", ".join(summary["removed"]) or "none",
            }
        )
    yield Output(None, metadata=metadata)


@job(
    name="promote_experiment",
    description="Promote an experiment's best hyperparameters to production (config: experiment_id, retrain). "
    "With retrain, promotion_retraining_sensor launches training_job after this run succeeds.",
    tags={"fraud/kind": "promotion"},
)
def promote_experiment():
    promote()


def promotion_retrain_request(run_id: str, run_config: dict[str, Any]) -> RunRequest | SkipReason:
    """Pure decision for the sensor: a training run for a succeeded promotion that asked for one."""
    config = (((run_config or {}).get("ops") or {}).get(PROMOTE_OP) or {}).get("config") or {}
    if not config.get("retrain"):
        return SkipReason(f"promotion run {run_id} did not ask for retraining")
    return RunRequest(
        run_key=retraining_run_key(run_id),
        tags={TRIGGER_TAG: "promotion", EXPERIMENT_TAG: str(config.get("experiment_id")), PROMOTION_RUN_TAG: run_id},
    )


@run_status_sensor(
    name="promotion_retraining_sensor",
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[promote_experiment],
    request_job=training_jobs.training_job,
    default_status=DefaultSensorStatus.RUNNING,
    description="Launches training_job after a successful promote_experiment run configured with retrain: true "
    "(once per promotion, run key promotion-<run id>).",
)
def promotion_retraining_sensor(context: RunStatusSensorContext):
    return promotion_retrain_request(context.dagster_run.run_id, context.dagster_run.run_config)
