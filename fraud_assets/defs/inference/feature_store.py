"""The history features' aggregates (DynamoDB FraudFeatureAggregates) kept current a day at a time:
customers from the day's transactions (feature_aggregates), terminals from the day's labels once
they come back (terminal_risk_aggregates). Each day's write replaces that day, so a retry, a
re-materialisation or a backfill never counts a day twice; the first partition also loads the raw
training history's last days, so a backfill from the first day rebuilds the table from history."""

from dagster import AssetDep as Dep
from dagster import AssetExecutionContext, TimeWindowPartitionMapping, asset
from dagster_aws.s3 import S3Resource

from fraud_assets.defs.common import AWS_RETRY_POLICY, daily_partitions
from fraud_assets.defs.resources import AwsClients, FeatureEngineering, FraudPlatform
from fraud_assets.lib.aws.clients import s3_client
from fraud_assets.lib.aws.storage import StageResult
from fraud_assets.lib.features import aggregates, store
from fraud_assets.lib.features.training_history import load_raw_customer_columns

_COMMON = dict(partitions_def=daily_partitions, retry_policy=AWS_RETRY_POLICY, kinds={"dynamodb"})
# Each day after the one before: a backfill runs in date order, never two days of one item at once.
_DAY_BEFORE = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)


def _raw_tail(context: AssetExecutionContext, s3: S3Resource, platform: FraudPlatform, days: int):
    """The raw history's last `days` days before the first partition, for the first partition only."""
    if context.partition_key != daily_partitions.get_first_partition_key():
        return None
    raw = load_raw_customer_columns(s3_client(s3), platform.data_bucket)
    return None if raw is None else aggregates.raw_history_tail(raw, context.partition_key, days)


@asset(
    **_COMMON,
    deps=[Dep("feature_aggregates", partition_mapping=_DAY_BEFORE)],
    description="Per customer, the transactions of the last 31 days (time and amount) in DynamoDB "
    "FraudFeatureAggregates (`customer#<id>`), from the day's accepted transactions: what daily_scores reads to compute "
    "a transaction's customer history features (counts and mean amounts over 1, 7 and 30 days, velocity across "
    "midnight). Idempotent per day; the first day also loads the raw training history's last 31 days.",
)
def feature_aggregates(
    context: AssetExecutionContext, daily_transactions: StageResult, aws: AwsClients, platform: FraudPlatform, s3: S3Resource
) -> StageResult:
    tail = _raw_tail(context, s3, platform, store.RETENTION_DAYS)
    result = aggregates.store_customer_day(
        aws.client("dynamodb"), platform.aggregates_table, daily_transactions.tables["transactions"], context.partition_key, tail
    )
    context.add_output_metadata(result.metadata())
    return StageResult(summary={"date": context.partition_key, "table": platform.aggregates_table, **result.metadata()})


@asset(
    **_COMMON,
    deps=[Dep("terminal_risk_aggregates", partition_mapping=_DAY_BEFORE)],
    description="Per terminal (merchant), each labelled day's transactions and confirmed frauds in DynamoDB "
    "FraudFeatureAggregates (`terminal#<merchant>`), from the day's labels as they come back (labelled_scores, recomputed "
    "when the label file appears or changes): the terminal risk over 1, 7 and 30 days that scoring a later day reads, "
    "shifted back by the label delay. The first day also loads the raw training history's labelled days.",
)
def terminal_risk_aggregates(
    context: AssetExecutionContext,
    labelled_scores: StageResult,
    daily_transactions: StageResult,
    aws: AwsClients,
    platform: FraudPlatform,
    s3: S3Resource,
    feature_engineering: FeatureEngineering,
) -> StageResult:
    delay = feature_engineering.label_delay_days
    dynamodb, table = aws.client("dynamodb"), platform.aggregates_table
    labels = labelled_scores.tables["labelled_scores"].set_index("transactionId")["isFraud"]
    labelled = aggregates.labelled_rows(daily_transactions.tables["transactions"], labels)
    result = aggregates.store_terminal_days(dynamodb, table, labelled, context.partition_key, delay)
    tail = _raw_tail(context, s3, platform, delay + store.RETENTION_DAYS)
    if tail is not None:
        history = aggregates.store_terminal_days(dynamodb, table, tail, None, delay)
        context.log.info(f"loaded {history.entities} terminal-days of the raw training history")
    context.add_output_metadata({**result.metadata(), "label_delay_days": delay})
    return StageResult(summary={"date": context.partition_key, "table": table, "label_delay_days": delay, **result.metadata()})
