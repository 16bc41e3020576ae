"""The platform's resources (buckets, scores table, topics), created idempotently wherever boto3
points."""

from __future__ import annotations

from typing import Any, Callable

from fraud_assets.lib.config import DEFAULT_REGION, PlatformNames

# --------------------------------------------------------------------------------------------
# Bootstrap: the platform's resources, created idempotently


def bootstrap(names: PlatformNames, region: str = DEFAULT_REGION) -> None:
    """Create the platform's buckets, scores table and topics wherever the default boto3
    configuration points (AWS_ENDPOINT_URL for the local stack). Safe to run again."""
    import boto3

    bootstrap_with(lambda service: boto3.client(service, region_name=region), names, region)


def bootstrap_with(client: Callable[[str], Any], names: PlatformNames, region: str) -> None:
    s3 = client("s3")
    for bucket in names.buckets:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    ddb = client("dynamodb")
    try:
        ddb.create_table(**scores_table_definition(names))
    except ddb.exceptions.ResourceInUseException:
        pass
    sns = client("sns")
    for topic in names.topics:
        sns.create_topic(Name=topic)  # CreateTopic is idempotent by name


def scores_table_definition(names: PlatformNames) -> dict[str, Any]:
    return {
        "TableName": names.scores_table,
        "AttributeDefinitions": [
            {"AttributeName": "transactionId", "AttributeType": "S"},
            {"AttributeName": "timestamp", "AttributeType": "S"},
            {"AttributeName": "batchDate", "AttributeType": "S"},
            {"AttributeName": "fraudScore", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "transactionId", "KeyType": "HASH"},
            {"AttributeName": "timestamp", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": names.scores_gsi,
                "KeySchema": [
                    {"AttributeName": "batchDate", "KeyType": "HASH"},
                    {"AttributeName": "fraudScore", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
