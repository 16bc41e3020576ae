"""Names of the platform's AWS resources (the original design's names), overridable from the environment.

The same names serve the embedded local stack and a real AWS account; only where boto3 points
changes (AWS_ENDPOINT_URL and friends), never the code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

FEATURE_COLUMNS: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
LABEL_COLUMN = "Class"
RAW_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, LABEL_COLUMN)
TRANSACTION_ID = "transactionId"
# Who paid where and when: the fields the history features need. The daily batches always carry
# them (a value may be null); a training CSV carries them when it comes from the simulated world.
CUSTOMER_FIELDS: tuple[str, ...] = ("customerId", "merchant", "timestamp")

HIGH_RISK_THRESHOLD = 0.8
MEDIUM_RISK_THRESHOLD = 0.5

# The first daily partition (YYYY-MM-DD), where the data starts; see defs/common.first_partition_day.
FIRST_DAY_VARIABLE = "FRAUD_FIRST_DAY"
# Without the variable: a fixed date, so every process that loads the location (webserver, daemon,
# code server, run workers, `make run`) sees the same days whenever it loads.
DEFAULT_FIRST_DAY = "2026-01-01"

# What `fraud-assets seed` generates: "kaggle", the Kaggle schema (no customers; or a real file with
# --csv), or "world", simulated customers and terminals whose history reveals fraud
# (seeding/world.py). Here, not in seeding, so the CLI's parser names them without importing numpy.
SEED_DATA: tuple[str, ...] = ("kaggle", "world")
DEFAULT_SEED_DATA = "kaggle"
DEFAULT_HISTORY_DAYS = 56  # the world's training history: days before the first daily batch

DEFAULT_REGION = "us-east-1"
HYPERPARAMETER_PATH = "/fraud-detection/hyperparameters"
RAW_DATA_KEY = "raw/creditcard.csv"
DAILY_BATCH_PREFIX = "daily-batches"
LABELS_PREFIX = "labels"
ENDPOINT_METADATA_KEY = "endpoint/current.json"
ENDPOINT_HISTORY_PREFIX = "endpoint/history"
PRODUCTION_MODEL_CONFIG_KEY = "production-model-config.yaml"


def daily_batch_key(date: str) -> str:
    return f"{DAILY_BATCH_PREFIX}/{date}.json"


def label_file_key(date: str) -> str:
    """`labels/{date}.json`: the confirmed outcomes (chargebacks, analyst decisions) of that day's
    transactions. The date is checked, since it becomes an S3 key."""
    try:
        ok = isinstance(date, str) and dt.date.fromisoformat(date).isoformat() == date
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"label file date must be YYYY-MM-DD, not {date!r}")
    return f"{LABELS_PREFIX}/{date}.json"


@dataclasses.dataclass(frozen=True)
class PlatformNames:
    data_bucket: str = "fraud-detection-data"
    workflow_bucket: str = "fraud-detection-workflow-local"
    models_bucket: str = "fraud-detection-models"
    config_bucket: str = "fraud-detection-config"
    metrics_bucket: str = "fraud-detection-metrics-local"
    scores_table: str = "FraudScores"
    scores_gsi: str = "BatchDateIndex"
    aggregates_table: str = "FraudFeatureAggregates"
    alerts_topic: str = "fraud-detection-alerts"
    monitoring_topic: str = "fraud-detection-monitoring"
    failures_topic: str = "fraud-detection-failures"
    endpoint_name: str = "fraud-detection-prod"
    # SageMaker needs a role and an image to create a model; the local stack accepts any.
    sagemaker_role_arn: str = "arn:aws:iam::123456789012:role/fraud-detection-sagemaker"
    xgboost_image_uri: str = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    endpoint_instance_type: str = "ml.m5.large"

    @property
    def buckets(self) -> tuple[str, ...]:
        return (self.data_bucket, self.workflow_bucket, self.models_bucket, self.config_bucket, self.metrics_bucket)

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.alerts_topic, self.monitoring_topic, self.failures_topic)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "PlatformNames":
        """FRAUD_<FIELD> overrides a name, e.g. FRAUD_WORKFLOW_BUCKET; FRAUD_BUCKET_SUFFIX names
        the workflow and metrics buckets the way the original design do (`...-{suffix}`)."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        suffix = env.get("FRAUD_BUCKET_SUFFIX")
        if suffix:
            values["workflow_bucket"] = f"fraud-detection-workflow-{suffix}"
            values["metrics_bucket"] = f"fraud-detection-metrics-{suffix}"
        for field in dataclasses.fields(cls):
            override = env.get(f"FRAUD_{field.name.upper()}")
            if override:
                values[field.name] = override
        return cls(**values)
