"""The platform's resources on the local stack, from the one infrastructure definition
(`infra/fraud-detection.yaml`) deployed to moto's CloudFormation, so local and AWS share it.

moto's CloudFormation lacks some resource types and properties the template uses. `MOTO_GAPS`
names each of them; `apply_moto_gaps` applies exactly those parts through the service's own API,
with the values read from the same template (intrinsics resolved against the deployed stack).
Each gap is also commented in the template and listed in the README.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any, Callable

from fraud_assets.lib.config import DEFAULT_REGION, PlatformNames

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "infra" / "fraud-detection.yaml"
STACK_NAME = "fraud-detection"

# (resource type, property or None for the whole type): what moto 5.2's CloudFormation ignores or
# does not know, and the API call that applies it here.
MOTO_GAPS: dict[tuple[str, str | None], str] = {
    ("AWS::S3::Bucket", "VersioningConfiguration"): "s3:PutBucketVersioning",
    ("AWS::S3::Bucket", "PublicAccessBlockConfiguration"): "s3:PutPublicAccessBlock",
    ("AWS::S3::Bucket", "LifecycleConfiguration"): "s3:PutBucketLifecycleConfiguration",
    ("AWS::DynamoDB::Table", "PointInTimeRecoverySpecification"): "dynamodb:UpdateContinuousBackups",
    ("AWS::DynamoDB::Table", "TimeToLiveSpecification"): "dynamodb:UpdateTimeToLive",
    ("AWS::SNS::TopicPolicy", None): "sns:SetTopicAttributes",
    ("AWS::SNS::Subscription", None): "sns:Subscribe",
    ("AWS::CloudWatch::Alarm", None): "cloudwatch:PutMetricAlarm",
    ("AWS::SageMaker::ModelPackageGroup", None): "sagemaker:CreateModelPackageGroup",
    ("AWS::Glue::SecurityConfiguration", None): "glue:CreateSecurityConfiguration",
    ("AWS::Glue::Job", None): "glue:CreateJob",
}

# Deployed to AWS, not here: moto evaluates bucket policies, and the local stack speaks plain HTTP
# on 127.0.0.1, which the TLS-only policy (rightly) denies. test_infra.py applies that policy to a
# bucket of its own and shows moto denying plain HTTP with it.
NOT_DEPLOYED_LOCALLY: dict[str, str] = {
    "AWS::S3::BucketPolicy": "TLS-only: the local stack serves plain HTTP on 127.0.0.1",
}

# --------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap(names: PlatformNames, region: str = DEFAULT_REGION) -> None:
    """Deploy the platform's stack wherever the default boto3 configuration points
    (AWS_ENDPOINT_URL for the local stack). Safe to run again: an existing stack is kept."""
    import boto3

    bootstrap_with(lambda service: boto3.client(service, region_name=region), names, region)


def bootstrap_with(client: Callable[[str], Any], names: PlatformNames, region: str) -> None:
    cfn = client("cloudformation")
    if _stack_exists(cfn):
        return
    template = load_template()
    parameters = stack_parameters(names)
    cfn.create_stack(
        StackName=STACK_NAME,
        TemplateBody=TEMPLATE_PATH.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":  # moto creates synchronously; AWS would need a waiter
        cfn.get_waiter("stack_create_complete").wait(StackName=STACK_NAME, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    # Resources of a type moto does not know are listed without ids: the gaps below create them.
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=STACK_NAME)["StackResources"]
        if r.get("LogicalResourceId")
    }
    resolver = Resolver(template, {**_parameter_defaults(template), **parameters}, physical, region, _account_id(stack))
    apply_moto_gaps(client, template, resolver)


def _stack_exists(cfn) -> bool:
    try:
        stacks = cfn.describe_stacks(StackName=STACK_NAME)["Stacks"]
    except cfn.exceptions.ClientError as err:
        if "does not exist" in str(err):
            return False
        raise
    return any(s["StackStatus"] not in ("DELETE_COMPLETE",) for s in stacks)


def _account_id(stack: dict[str, Any]) -> str:
    return stack["StackId"].split(":")[4]


def stack_parameters(names: PlatformNames) -> dict[str, str]:
    """The template's parameters that make it create exactly PlatformNames' resources."""
    role = names.sagemaker_role_arn.rsplit("/", 1)[-1]
    return {
        "WorkflowBucketName": names.workflow_bucket,
        "MetricsBucketName": names.metrics_bucket,
        "DataBucketName": names.data_bucket,
        "ModelsBucketName": names.models_bucket,
        "ConfigBucketName": names.config_bucket,
        "ScoresTableName": names.scores_table,
        "AggregatesTableName": names.aggregates_table,
        "AlertsTopicName": names.alerts_topic,
        "MonitoringTopicName": names.monitoring_topic,
        "FailuresTopicName": names.failures_topic,
        "EndpointName": names.endpoint_name,
        "SageMakerRoleName": role,
    }


# --------------------------------------------------------------------------------------------
# The template


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The template as plain data, short-form intrinsics (`!Ref x`) turned into their long form
    (`{"Ref": "x"}`). Parsed once per process and text (a reset deploys it again)."""
    return copy.deepcopy(_parse_template(path.read_text()))


@functools.lru_cache(maxsize=4)
def _parse_template(text: str) -> dict[str, Any]:
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag_suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}": value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader


def _parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    return {k: str(v["Default"]) for k, v in template.get("Parameters", {}).items() if "Default" in v}


class Resolver:
    """Evaluates the intrinsic functions the template uses against a deployed stack."""

    _SUB = re.compile(r"\$\{([^}!]+)\}")

    def __init__(self, template: dict[str, Any], parameters: dict[str, str], physical: dict[str, str], region: str, account: str):
        self.template, self.parameters, self.physical = template, parameters, physical
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK_NAME,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                return self.get_att(*arg)
            if fn == "Fn::Sub":
                return self._SUB.sub(lambda m: str(self._sub_var(m.group(1))), arg)
            if fn == "Fn::If":
                name, then, otherwise = arg
                return self.resolve(then if self.condition(name) else otherwise)
            if fn == "Fn::Equals":
                left, right = self.resolve(arg)
                return str(left) == str(right)
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Condition":
                return self.condition(arg)
            if fn.startswith("Fn::"):
                raise ValueError(f"the local bootstrap cannot evaluate {fn}; teach Resolver or avoid it in gap properties")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub_var(self, name: str) -> Any:
        return self.get_att(*name.split(".", 1)) if "." in name else self.ref(name)

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical[name]

    def get_att(self, logical: str, attribute: str) -> str:
        kind = self.template["Resources"][logical]["Type"]
        name = self.physical[logical]
        if (kind, attribute) == ("AWS::S3::Bucket", "Arn"):
            return f"arn:aws:s3:::{name}"
        if (kind, attribute) == ("AWS::SNS::Topic", "TopicName"):
            return name.rsplit(":", 1)[-1]
        if (kind, attribute) == ("AWS::IAM::Role", "Arn"):
            return f"arn:aws:iam::{self.pseudo['AWS::AccountId']}:role/{name}"
        if (kind, attribute) == ("AWS::DynamoDB::Table", "Arn"):
            return f"arn:aws:dynamodb:{self.pseudo['AWS::Region']}:{self.pseudo['AWS::AccountId']}:table/{name}"
        raise ValueError(f"the local bootstrap cannot evaluate {logical}.{attribute}")


# --------------------------------------------------------------------------------------------
# What moto's CloudFormation does not do


def apply_moto_gaps(client: Callable[[str], Any], template: dict[str, Any], resolver: Resolver) -> None:
    calls: list[Callable[[], None]] = []
    dependent: list[Callable[[], None]] = []
    for logical, resource in template["Resources"].items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        kind = resource["Type"]
        props = resource.get("Properties", {})
        gaps = {prop for (t, prop) in MOTO_GAPS if t == kind}
        if None in gaps:
            call = functools.partial(_apply_whole_resource, client, kind, resolver.resolve(props))
            (dependent if "DependsOn" in resource else calls).append(call)
        for prop in sorted(gaps & set(props)):
            calls.append(functools.partial(_apply_property, client, kind, resolver.physical[logical], prop, resolver.resolve(props[prop])))
    # ~30 independent calls: a few at a time (the stack is restarted or reset often in tests).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="moto-gaps") as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()
    # After the others: a resource that names another of them (a Glue job its security configuration).
    for call in dependent:
        call()


def _apply_property(client: Callable[[str], Any], kind: str, name: str, prop: str, value: Any) -> None:
    if kind == "AWS::S3::Bucket":
        s3 = client("s3")
        if prop == "VersioningConfiguration":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": value["Status"]})
        elif prop == "PublicAccessBlockConfiguration":
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=value)
        elif prop == "LifecycleConfiguration":
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in value["Rules"]]}
            )
    elif kind == "AWS::DynamoDB::Table":
        ddb = client("dynamodb")
        if prop == "PointInTimeRecoverySpecification":
            ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification=value)
        elif prop == "TimeToLiveSpecification":
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=value)


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the API's shape."""
    out: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return out


_ALARM_FIELDS = (
    "AlarmName",
    "AlarmDescription",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "Period",
    "EvaluationPeriods",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "AlarmActions",
    "Metrics",
)


def _apply_whole_resource(client: Callable[[str], Any], kind: str, props: dict[str, Any]) -> None:
    if kind == "AWS::S3::BucketPolicy":
        client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
    elif kind == "AWS::SNS::TopicPolicy":
        for topic in props["Topics"]:
            client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"]))
    elif kind == "AWS::SNS::Subscription":
        client("sns").subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"])
    elif kind == "AWS::SageMaker::ModelPackageGroup":
        client("sagemaker").create_model_package_group(
            ModelPackageGroupName=props["ModelPackageGroupName"], ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", "")
        )
    elif kind == "AWS::CloudWatch::Alarm":
        args = {k: props[k] for k in _ALARM_FIELDS if k in props}
        for numeric in ("Period", "EvaluationPeriods"):
            if numeric in args:
                args[numeric] = int(args[numeric])
        args["Threshold"] = float(args["Threshold"])
        for query in args.get("Metrics", []):
            if "MetricStat" in query:
                query["MetricStat"]["Period"] = int(query["MetricStat"]["Period"])
        client("cloudwatch").put_metric_alarm(**args)
    elif kind == "AWS::Glue::SecurityConfiguration":
        encryption = dict(props["EncryptionConfiguration"])
        # CloudFormation's S3Encryptions is the API's S3Encryption.
        encryption["S3Encryption"] = encryption.pop("S3Encryptions", [])
        client("glue").create_security_configuration(Name=props["Name"], EncryptionConfiguration=encryption)
    elif kind == "AWS::Glue::Job":
        args = dict(props)
        for numeric in ("MaxRetries", "Timeout", "NumberOfWorkers"):
            if numeric in args:
                args[numeric] = int(args[numeric])
        if "ExecutionProperty" in args:
            args["ExecutionProperty"] = {k: int(v) for k, v in args["ExecutionProperty"].items()}
        client("glue").create_job(**args)
