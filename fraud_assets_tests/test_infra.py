"""The infrastructure definition (infra/*.yaml): cfn-lint clean, deployed to moto's CloudFormation by
the local stack, and what it creates is what the code uses (PlatformNames) with the retention,
recovery and encryption settings the original design ask for."""

from __future__ import annotations

import collections
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from fraud_assets.lib.config import PlatformNames
from fraud_assets_local.bootstrap import (
    MOTO_GAPS,
    NOT_DEPLOYED_LOCALLY,
    STACK_NAME,
    TEMPLATE_PATH,
    Resolver,
    load_template,
    stack_parameters,
)
from fraud_assets_local.stack import LocalStack

INFRA = Path(__file__).resolve().parents[1] / "infra"
NAMES = PlatformNames()


@pytest.mark.parametrize("template", sorted(INFRA.glob("*.yaml")), ids=lambda p: p.name)
def test_cfn_lint_finds_nothing(template: Path) -> None:
    from cfnlint.api import ManualArgs, lint_file

    # Informational rules too: any finding at all fails.
    matches = lint_file(template, ManualArgs(include_checks=["I"]))
    assert not matches, "\n".join(str(m) for m in matches)


def test_template_is_what_the_code_names() -> None:
    template = load_template()
    resources = template["Resources"]
    defaults = {k: str(v.get("Default")) for k, v in template["Parameters"].items()}
    # With its defaults (suffix "local") and with the parameters the local stack passes.
    for parameters in (defaults, {**defaults, **stack_parameters(NAMES)}):
        resolver = Resolver(template, parameters, {}, "us-east-1", "123456789012")
        buckets = {resolver.resolve(r["Properties"]["BucketName"]) for r in resources.values() if r["Type"] == "AWS::S3::Bucket"}
        assert buckets == set(NAMES.buckets)
    tables = {r["Properties"]["TableName"]["Ref"]: r["Properties"] for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"}
    assert set(tables) == {"ScoresTableName", "AggregatesTableName"}
    table = tables["ScoresTableName"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"transactionId": "HASH", "timestamp": "RANGE"}
    aggregates = tables["AggregatesTableName"]
    assert {k["AttributeName"]: k["KeyType"] for k in aggregates["KeySchema"]} == {"entityId": "HASH"}
    assert aggregates["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert defaults["AggregatesTableName"] == NAMES.aggregates_table
    (gsi,) = table["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == NAMES.scores_gsi
    assert {k["AttributeName"]: k["KeyType"] for k in gsi["KeySchema"]} == {"batchDate": "HASH", "fraudScore": "RANGE"}
    assert defaults["ScoresTableName"] == NAMES.scores_table and defaults["EndpointName"] == NAMES.endpoint_name
    assert (defaults["AlertsTopicName"], defaults["MonitoringTopicName"], defaults["FailuresTopicName"]) == NAMES.topics
    assert NAMES.sagemaker_role_arn.endswith(f":role/{defaults['SageMakerRoleName']}")


def test_every_resource_moto_lacks_is_a_named_gap(aws: LocalStack) -> None:
    """moto lists a resource of a type it does not know without ids: each such type must be one the
    bootstrap handles (MOTO_GAPS) or leaves out on purpose (NOT_DEPLOYED_LOCALLY), and the template
    must say so where the resource is."""
    template = load_template()
    listed = aws.client("cloudformation").describe_stack_resources(StackName=STACK_NAME)["StackResources"]
    known = collections.Counter(r["ResourceType"] for r in listed if r.get("LogicalResourceId"))
    resolver = Resolver(template, {k: str(v.get("Default")) for k, v in template["Parameters"].items()}, {}, aws.region, "123456789012")
    wanted = collections.Counter(
        r["Type"] for r in template["Resources"].values() if "Condition" not in r or resolver.condition(r["Condition"])
    )
    handled = {t for (t, prop) in MOTO_GAPS if prop is None} | set(NOT_DEPLOYED_LOCALLY)
    missing = {t: n for t, n in (wanted - known).items()}
    assert set(missing) <= handled, f"moto's CloudFormation does not create {missing}: handle them in bootstrap.MOTO_GAPS"
    comments = "\n".join(line for line in TEMPLATE_PATH.read_text().splitlines() if line.strip().startswith("#"))
    assert "moto gap" in comments
    for kind, prop in [*MOTO_GAPS, *((kind, None) for kind in NOT_DEPLOYED_LOCALLY)]:
        assert (prop or kind) in comments, f"the template does not say that moto lacks {kind} {prop or ''}"


def test_the_deployed_stack_has_retention_recovery_and_encryption(aws: LocalStack) -> None:
    s3, ddb, sns = aws.client("s3"), aws.client("dynamodb"), aws.client("sns")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == set(NAMES.buckets)
    for bucket in NAMES.buckets:
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") for r in rules)
    days = {
        (b, r["Filter"].get("Prefix", "")): r["Expiration"]["Days"]
        for b in NAMES.buckets
        for r in s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
        if "Expiration" in r
    }
    assert days[(NAMES.data_bucket, "")] == 365  # raw data 1 year
    assert days[(NAMES.workflow_bucket, "executions/")] == 90  # prepared data (every stage's output) 90 days
    assert days[(NAMES.models_bucket, "models/")] == 365  # model artifacts 1 year
    assert days[(NAMES.metrics_bucket, "")] == 90  # metrics 90 days
    assert not [k for k in days if k[0] == NAMES.config_bucket]  # the recovery path never expires

    table = ddb.describe_table(TableName=NAMES.scores_table)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    backups = ddb.describe_continuous_backups(TableName=NAMES.scores_table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = ddb.describe_time_to_live(TableName=NAMES.scores_table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expiresAt")

    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert sorted(t.rsplit(":", 1)[-1] for t in topics) == sorted(NAMES.topics)
    for arn in topics:
        assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["KmsMasterKeyId"] == "alias/fraud-detection-sns"

    groups = aws.client("logs").describe_log_groups()["logGroups"]
    assert groups and all(g["retentionInDays"] == 30 for g in groups)
    alarms = {a["AlarmName"] for a in aws.client("cloudwatch").describe_alarms()["MetricAlarms"]}
    assert {
        "fraud-detection-high-fraud-rate",
        "fraud-detection-realised-accuracy",
        "fraud-detection-pipeline-failures",
        "fraud-detection-endpoint-errors",
        "fraud-detection-score-drift",
    } <= alarms
    assert aws.client("cloudwatch").get_dashboard(DashboardName="fraud-detection")["DashboardBody"]
    roles = {r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]}
    assert {"fraud-detection-sagemaker", "fraud-detection-glue", "fraud-detection-code-location"} <= roles


def test_the_tls_only_bucket_policy_denies_plain_http(aws: LocalStack) -> None:
    """Why the local stack (plain HTTP on 127.0.0.1) leaves the bucket policies out: moto enforces
    them. The template's own policy, on a scratch bucket, turns away the same request."""
    template = load_template()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="tls-only-scratch")
    s3.put_object(Bucket="tls-only-scratch", Key="before", Body=b"x")
    resolver = Resolver(template, {}, {"DataBucket": "tls-only-scratch"}, aws.region, "123456789012")
    import json

    policy = resolver.resolve(template["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"])

    s3.put_bucket_policy(Bucket="tls-only-scratch", Policy=json.dumps(policy))
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket="tls-only-scratch", Key="after", Body=b"x")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
