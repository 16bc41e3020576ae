"""Resources: where the AWS clients point and what the platform's resources are called.

boto3 clients are built with default configuration, so AWS_ENDPOINT_URL (set by the embedded
local stack) or nothing (a real AWS account) decides where they go; the code is the same.
Configuration comes from resource fields; the `resources` definitions below fill them from
FRAUD_* variables through `dg.EnvVar` when those are set, so the launchpad shows and overrides them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated, Callable, Literal, Optional

import dagster as dg
from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import ResourceWithBoto3Configuration
from pydantic import Field, WrapValidator

from fraud_assets.lib.aws.clients import ClientSettings, make_client
from fraud_assets.lib.config import PlatformNames
from fraud_assets.lib.inference.investigator import DEFAULT_ALERT_BUDGET, validate_budget

_NAME_DEFAULTS = PlatformNames()


class FraudPlatform(ConfigurableResource):
    """The original design's resource names (buckets, table, topics, endpoint)."""

    data_bucket: str = _NAME_DEFAULTS.data_bucket
    workflow_bucket: str = _NAME_DEFAULTS.workflow_bucket
    models_bucket: str = _NAME_DEFAULTS.models_bucket
    config_bucket: str = _NAME_DEFAULTS.config_bucket
    metrics_bucket: str = _NAME_DEFAULTS.metrics_bucket
    scores_table: str = _NAME_DEFAULTS.scores_table
    scores_gsi: str = _NAME_DEFAULTS.scores_gsi
    aggregates_table: str = _NAME_DEFAULTS.aggregates_table
    alerts_topic: str = _NAME_DEFAULTS.alerts_topic
    monitoring_topic: str = _NAME_DEFAULTS.monitoring_topic
    failures_topic: str = _NAME_DEFAULTS.failures_topic
    endpoint_name: str = _NAME_DEFAULTS.endpoint_name
    sagemaker_role_arn: str = _NAME_DEFAULTS.sagemaker_role_arn
    xgboost_image_uri: str = _NAME_DEFAULTS.xgboost_image_uri
    endpoint_instance_type: str = _NAME_DEFAULTS.endpoint_instance_type

    @property
    def names(self) -> PlatformNames:
        return PlatformNames(**{f.name: getattr(self, f.name) for f in dataclasses.fields(PlatformNames)})


class AwsClients(ResourceWithBoto3Configuration):
    """boto3 clients for the services dagster-aws has no resource for (SageMaker, SageMaker
    Runtime, DynamoDB, SNS, SSM, CloudWatch, Glue). Every field is honoured (lib/aws/clients.py);
    what is left unset, boto3 resolves from the environment. `endpoint_url` applies to every
    service: per-service endpoints (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME) come from the environment."""

    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        default="standard", description="botocore's retry mode; max_attempts counts every attempt, the first included."
    )

    def client(self, service: str):
        return make_client(service, ClientSettings.from_resource(self))


class QualityGates(ConfigurableResource):
    """Floors of the blocking gates. FRAUD_GATE_<NAME> sets one, e.g. FRAUD_GATE_PR_AUC_FLOOR=1.0 to
    see a failing model held back."""

    accuracy_floor: float = Field(default=0.90, description="The original design's gate: accuracy >= 0.90.")
    pr_auc_floor: float = Field(default=0.60, description="Area under the precision-recall curve on the test split.")
    high_risk_precision_floor: float = Field(
        default=0.60, description="Precision of the high-risk bucket the alerts act on (calibrated score >= the model's threshold)."
    )
    regression_tolerance: float = Field(default=0.02, description="How far PR-AUC may fall below the production model's.")
    split_ratio_tolerance: float = Field(default=0.01, description="Allowed deviation of each split's share from 70/15/15.")


class RiskThresholds(ConfigurableResource):
    """The threshold policy a model is released with (FRAUD_RISK_<FIELD>): the original design's fixed 0.8/0.5 on
    calibrated scores, or the high-risk threshold chosen on validation by a target recall or precision."""

    high_risk_threshold: float = Field(default=0.8, description="High-risk threshold on the calibrated score (fixed policy).")
    medium_risk_threshold: float = Field(default=0.5, description="Medium-risk threshold on the calibrated score.")
    target_recall: Optional[float] = Field(
        default=None, description="Choose the highest high-risk threshold reaching this recall on validation."
    )
    target_precision: Optional[float] = Field(
        default=None, description="Choose the lowest high-risk threshold reaching this precision on validation."
    )

    def policy(self):
        from fraud_assets.lib.training.calibration import ThresholdPolicy

        return ThresholdPolicy(
            high=self.high_risk_threshold,
            medium=self.medium_risk_threshold,
            target_recall=self.target_recall,
            target_precision=self.target_precision,
        )


def checked_once_resolved(check: Callable[[int], int]) -> WrapValidator:
    """An int field's check that waits for its value: bound to an environment variable (dg.EnvVar.int)
    the field holds a placeholder, an int subclass reading 0, until the run resolves it to a plain int,
    which is checked then. Field(ge=...) would refuse the placeholder when the code location loads."""

    def validate(value, handler):
        placeholder = isinstance(value, int) and type(value) not in (int, bool)
        return handler(value) if placeholder else check(handler(value))

    return WrapValidator(validate)


def int_range(name: str, minimum: int, maximum: int | None = None) -> Callable[[int], int]:
    def check(value: int) -> int:
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
            raise ValueError(f"{name} must be {bounds}, not {value}")
        return value

    return check


class TrainingEngine(ConfigurableResource):
    """Where fraud_model trains (FRAUD_TRAINING_<FIELD>): as a SageMaker training job (the default;
    the built-in XGBoost algorithm's contract, one or more hosts, optionally managed spot), or
    xgboost in the Dagster process. The embedded local stack runs training jobs for real."""

    engine: Literal["sagemaker", "in-process"] = Field(default="sagemaker", description="sagemaker or in-process.")
    instance_type: str = Field(default="ml.m5.xlarge", description="Training instance type (the original design's).")
    instance_count: Annotated[int, checked_once_resolved(int_range("instance_count", 1, 100))] = Field(
        default=1, description="Hosts (1..100); > 1 shards the channels (ShardedByS3Key)."
    )
    max_runtime_seconds: Annotated[int, checked_once_resolved(int_range("max_runtime_seconds", 1))] = Field(
        default=3600, description="MaxRuntimeInSeconds: the job is stopped beyond it."
    )
    use_spot: bool = Field(default=False, description="Managed spot training (up to ~70% cheaper; may be interrupted).")
    max_wait_seconds: Optional[int] = Field(default=None, description="Spot: runtime plus waiting for capacity (>= max runtime).")
    checkpoint_s3_uri: Optional[str] = Field(default=None, description="Spot: where checkpoints go, so an interrupted job resumes.")

    def settings(self):
        from fraud_assets.lib.training.training_job import TrainingSettings

        return TrainingSettings(
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            max_runtime_seconds=self.max_runtime_seconds,
            use_spot=self.use_spot,
            max_wait_seconds=self.max_wait_seconds,
            checkpoint_s3_uri=self.checkpoint_s3_uri,
        ).validate()


class FeatureEngineering(ConfigurableResource):
    """Whether the model trains on engineered features (FRAUD_FEATURE_ENGINEERING=1 / 0; unset: when the
    data carries customers) and the label delay the terminal risk features respect (FRAUD_LABEL_DELAY_DAYS)."""

    enabled: Optional[bool] = Field(
        default=None,
        description="Train on time, amount and history features as well; unset: on when the training data carries "
        "customers and terminals (the simulated world), off for the Kaggle schema.",
    )
    label_delay_days: int = Field(
        default=1,
        ge=0,
        description="Days after a transaction's day before its label is known: terminal risk features count only "
        "labelled days at least this many days (plus one) before the transaction's day.",
    )


class RetrainingPolicy(ConfigurableResource):
    """When drift triggers a retraining: score drift on a day, or realised recall (model_performance,
    once labels arrive) below a floor on enough labelled days; at most once per cooldown
    (FRAUD_DRIFT_COOLDOWN_HOURS, FRAUD_REALISED_RECALL_FLOOR, FRAUD_PERFORMANCE_DRIFT_DAYS)."""

    drift_cooldown_hours: float = Field(default=24.0, description="At most one drift-triggered training run per this many hours.")
    realised_recall_floor: float = Field(
        default=0.5,
        description="A labelled day whose realised recall at the high-risk threshold is below this counts towards a retraining.",
    )
    performance_drift_days: int = Field(
        default=10,
        description="Labelled days below the recall floor before a retraining is requested: a new pattern must be labelled "
        "on more days than the held-out recent window for the retraining to learn it.",
    )
    min_labelled_fraud: int = Field(
        default=20,
        description="A day with fewer confirmed frauds is too noisy a recall estimate to count (at 0.17% fraud: ~12,000 transactions).",
    )


class PerformanceFloors(ConfigurableResource):
    """Floors of the realised-quality warnings on model_performance (FRAUD_PERFORMANCE_<NAME>, e.g.
    FRAUD_PERFORMANCE_RECALL_FLOOR=0.7). Warnings, not gates: the day is measured either way."""

    recall_floor: float = Field(default=0.5, description="Realised recall at the high-risk threshold (0.8).")
    alert_precision_floor: float = Field(default=0.5, description="Share of the day's alerts confirmed as fraud.")
    accuracy_floor: float = Field(default=0.85, description="The original design's model-drift alarm: accuracy < 85%.")


class AlertBudget(ConfigurableResource):
    """How many alerts the investigators can examine a day, k (FRAUD_ALERT_BUDGET, default 100):
    model_performance measures precision and card precision at k; with cap_at_budget
    (FRAUD_ALERT_CAP_AT_BUDGET=1) fraud_alerts sends only the day's k highest-ranked alerts."""

    budget: Annotated[int, checked_once_resolved(validate_budget)] = Field(
        default=DEFAULT_ALERT_BUDGET, description="Alerts the investigators examine a day (k, at least 1)."
    )
    cap_at_budget: bool = Field(
        default=False, description="Send at most `budget` alerts a day, highest first, and count the rest as held back."
    )


def _from_env(resource_cls: type[ConfigurableResource], prefix: str, **fixed) -> ConfigurableResource:
    """The resource with each field whose <prefix><FIELD> variable is set bound to that variable
    (dg.EnvVar, resolved at run time; the launchpad names the variable)."""
    values = dict(fixed)
    for name, field in resource_cls.model_fields.items():
        var = f"{prefix}{name.upper()}"
        if var in os.environ and name not in values:
            values[name] = (
                dg.EnvVar.int(var)
                if field.annotation is int
                else dg.EnvVar(var)
                if field.annotation is str
                else _typed(field.annotation, os.environ[var])
            )
    return resource_cls(**values)


def _typed(annotation, raw: str):
    # EnvVar resolves to str or int only; floats and booleans are read here, at load time.
    if annotation is bool:
        return raw.lower() in ("1", "true", "yes")
    if annotation is float:
        return float(raw)
    return raw


def platform_from_env() -> FraudPlatform:
    names = PlatformNames.from_env()  # FRAUD_BUCKET_SUFFIX names two buckets at once
    return FraudPlatform(**dataclasses.asdict(names))


@dg.definitions
def resources() -> dg.Definitions:
    """Evaluated when the code location loads (never at import): the environment's FRAUD_*
    settings become resource configuration."""
    from fraud_assets.defs.engines import DataPrepEngine
    from fraud_assets.defs.io_manager import ExecutionsIOManager

    platform = platform_from_env()
    s3 = S3Resource()
    return dg.Definitions(
        resources={
            "io_manager": ExecutionsIOManager(s3=s3, bucket=platform.workflow_bucket),
            "s3": s3,
            "aws": AwsClients(),
            "platform": platform,
            "quality_gates": _from_env(QualityGates, "FRAUD_GATE_"),
            "risk_thresholds": _from_env(RiskThresholds, "FRAUD_RISK_"),
            "training_engine": _from_env(TrainingEngine, "FRAUD_TRAINING_"),
            "feature_engineering": FeatureEngineering(
                enabled=_typed(bool, os.environ["FRAUD_FEATURE_ENGINEERING"]) if "FRAUD_FEATURE_ENGINEERING" in os.environ else None,
                label_delay_days=int(os.environ.get("FRAUD_LABEL_DELAY_DAYS", "1")),
            ),
            "data_prep_engine": DataPrepEngine(engine=os.environ.get("FRAUD_DATA_PREP_ENGINE", "pandas")),
            "retraining_policy": _from_env(RetrainingPolicy, "FRAUD_"),
            "performance_floors": _from_env(PerformanceFloors, "FRAUD_PERFORMANCE_"),
            "alert_budget": _from_env(AlertBudget, "FRAUD_ALERT_"),
        }
    )
