"""The rollback_model job: the original design's recovery step "rollback to previous model version" in one
launch from the UI (or `fraud-assets rollback-model [VERSION]`)."""

from typing import Optional

from dagster import Config, Failure, MetadataValue, Nothing, OpExecutionContext, Out, Output, job, op
from dagster_aws.s3 import S3Resource
from pydantic import Field

from fraud_assets.defs.common import markdown_table
from fraud_assets.defs.resources import AwsClients, FraudPlatform
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.training import endpoint as endpoint_lib
from fraud_assets.lib.training.registry import REGISTRY_COLUMNS, list_models, registry_rows


class RollbackConfig(Config):
    version: Optional[str] = Field(
        default=None, description="Model version to serve again (from the deployment history); default: the one before the current."
    )


def registry_table(sagemaker, s3, platform: FraudPlatform, serving: str | None) -> MetadataValue:
    """The registered versions: what rollback can restore (a version that served once) and each verdict."""
    rows = registry_rows(list_models(sagemaker), endpoint_lib.deployment_history(s3, platform.names), serving)
    return MetadataValue.md(markdown_table(REGISTRY_COLUMNS, rows))


def history_table(history: list[dict]) -> MetadataValue:
    return MetadataValue.md(markdown_table(endpoint_lib.HISTORY_COLUMNS, endpoint_lib.history_rows(history)))


@op(
    out=Out(Nothing),  # the effect is the endpoint and its pointer; the outcome travels as metadata
    description="Point the endpoint back at an earlier model version from the deployment history, health-checked like a "
    "deployment; pointer and history updated, nothing else touched. An unknown version is refused and changes nothing.",
)
def rollback_endpoint(context: OpExecutionContext, config: RollbackConfig, s3: S3Resource, aws: AwsClients, platform: FraudPlatform):
    client = s3_client(s3)
    try:
        deployed = endpoint_lib.rollback_model(
            sagemaker=aws.client("sagemaker"),
            runtime=aws.client("sagemaker-runtime"),
            s3=client,
            names=platform.names,
            version=config.version,
        )
    except endpoint_lib.RollbackRefused as err:
        raise Failure(
            description=str(err),
            metadata={"deployment_history": history_table(endpoint_lib.deployment_history(client, platform.names))},
            allow_retries=False,
        ) from err
    context.log.info(f"{deployed['endpoint_name']} serves {deployed['model_version']} again (was {deployed['rolled_back_from']})")
    yield Output(
        None,
        metadata={
            "endpoint_name": deployed["endpoint_name"],
            "model_version": deployed["model_version"],
            "rolled_back_from": deployed["rolled_back_from"],
            "model_uri": MetadataValue.path(deployed["model_uri"]),
            "health_check_score": deployed["health_check"]["served_score"],
            "deployment_history": history_table(endpoint_lib.deployment_history(client, platform.names)),
            "registered_versions": registry_table(aws.client("sagemaker"), client, platform, deployed["model_version"]),
        },
    )


@job(
    name="rollback_model",
    description="Roll the production endpoint back to an earlier model version (config: version; default the one "
    "before the current). Health-checked; the run's metadata shows the deployment history.",
    tags={"fraud/kind": "rollback"},
)
def rollback_model():
    rollback_endpoint()
