"""The fraud_assets code location: one graph, plain AWS code, local stack or real AWS alike.

Loading it needs no AWS account and no environment variables: nothing here talks to AWS until a
run starts.
"""

from __future__ import annotations

import os

from dagster import Definitions
from dagster_aws.s3 import S3Resource
from dagster_aws.ssm import SSMResource

from fraud_assets.defs.engines import DataPrepEngine
from fraud_assets.defs.io_manager import ExecutionsIOManager
from fraud_assets.defs.resources import AwsClients, FraudPlatform, feature_engineering_from_env, quality_gates_from_env
from fraud_assets.defs.experimentation import experimentation_assets, experimentation_jobs, experimentation_sensors
from fraud_assets.defs.inference import (
    daily_inference_schedule,
    inference_assets,
    inference_checks,
    inference_job,
    inference_sensors,
)
from fraud_assets.defs.training import training_assets, training_checks, training_job, weekly_training_schedule


def build_resources() -> dict:
    platform = FraudPlatform()
    s3 = S3Resource()
    return {
        "io_manager": ExecutionsIOManager(s3=s3, bucket=platform.workflow_bucket),
        "s3": s3,
        "ssm": SSMResource(),
        "aws": AwsClients(),
        "platform": platform,
        "quality_gates": quality_gates_from_env(),
        "feature_engineering": feature_engineering_from_env(),
        "data_prep_engine": DataPrepEngine(engine=os.environ.get("FRAUD_DATA_PREP_ENGINE", "pandas")),
    }


def build_definitions(**resource_overrides) -> Definitions:
    """The code location's definitions; tests override resources by name (e.g. quality_gates)."""
    return Definitions(
        assets=[*training_assets, *inference_assets, *experimentation_assets],
        asset_checks=[*training_checks, *inference_checks],
        jobs=[training_job, inference_job, *experimentation_jobs],
        schedules=[weekly_training_schedule, daily_inference_schedule],
        sensors=[*inference_sensors(training_job), *experimentation_sensors(training_job)],
        resources={**build_resources(), **resource_overrides},
    )


defs = build_definitions()
