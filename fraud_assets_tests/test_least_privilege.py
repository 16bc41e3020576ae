"""Least privilege, checked: the code location's role (CodeLocationRole in infra/fraud-detection.yaml,
as the local stack deployed it) allows every AWS call the end-to-end tests made, and nothing that no
call needs, apart from the few calls below that the tests cannot reach.

conftest records the calls during the e2e tests and runs this module after them. The comparison
needs the e2e tests in the same process: `make least-privilege` (pytest -n 0 -m "e2e or
least_privilege"); under xdist, where they run on other workers, it skips and says why.
"""

from __future__ import annotations

import copy

import pytest
from conftest import AWS_CALLS
from iam_check import ACCOUNT, ApiCall, check

from fraud_assets.lib.config import PlatformNames
from fraud_assets_local.bootstrap import STACK_NAME, Resolver, load_template, stack_parameters
from fraud_assets_local.stack import LocalStack

NAMES = PlatformNames()
ROLE, POLICY = "fraud-detection-code-location", "fraud-assets"

# (statement Sid, action) -> why no e2e test makes that call.
UNREACHABLE: dict[tuple[str, str], str] = {
    # The Glue data-prep engine (engine=glue); the e2e tests prepare data with pandas, and moto runs
    # no Glue job (test_glue_engine.py drives that path with a fake Glue).
    ("GlueJob", "glue:GetJob"): "Glue engine: the job's script location (and whether the job exists)",
    **{
        ("GlueJob", f"glue:{a}"): "Glue engine: dagster-aws starts and follows the run"
        for a in ("StartJobRun", "GetJobRun", "BatchStopJobRun")
    },
    ("GlueOutputForPipes", "logs:GetLogEvents"): "Glue engine: dagster-aws reads Pipes messages from the job's log",
    ("ReadDataWriteGlueScript", "s3:PutObject"): "Glue engine: uploads glue_scripts/fraud_data_prep.py",
    # Rolling back to a state with fewer parameters or no production config (rollback-hyperparameters,
    # a promotion that prunes stale names): exercised by test_promotion.py / test_hyperparameters.py
    # with the tests' own clients, not by an e2e flow.
    ("ConfigObjects", "s3:DeleteObject"): "rollback to a backup taken before any production-model-config.yaml",
    ("Hyperparameters", "ssm:DeleteParameter"): "rollback removes names the backup lacks; clearing the experiment id",
    ("Hyperparameters", "ssm:DeleteParameters"): "promotion prunes names the new winner no longer sets",
}


def deployed_policy(stack: LocalStack) -> dict:
    """The role's policy from the template, its references resolved against the deployed stack (moto's
    GetRolePolicy answers a Python repr of what CloudFormation gave it, not JSON)."""
    template = load_template()
    listed = stack.client("cloudformation").describe_stack_resources(StackName=STACK_NAME)["StackResources"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in listed if r.get("LogicalResourceId")}
    parameters = {**{k: str(v.get("Default")) for k, v in template["Parameters"].items()}, **stack_parameters(stack.names)}
    resolver = Resolver(template, parameters, physical, stack.region, ACCOUNT)
    (role,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Role" and resolver.resolve(r["Properties"]["RoleName"]) == ROLE
    ]
    (policy,) = [p["PolicyDocument"] for p in role["Policies"] if p["PolicyName"] == POLICY]
    return resolver.resolve(policy)


@pytest.mark.least_privilege
def test_code_location_policy_allows_exactly_what_the_e2e_tests_call(request: pytest.FixtureRequest, aws: LocalStack) -> None:
    e2e = {item.nodeid for item in request.session.items if item.get_closest_marker("e2e")}
    if not e2e:
        pytest.skip("no e2e test selected: the calls to compare come from them (run the whole suite or -m 'e2e or not e2e')")
    missing = e2e - set(AWS_CALLS.tests)
    if missing:
        pytest.skip(f"e2e tests did not run in this process before this one (make least-privilege runs them together): {sorted(missing)}")
    policy = deployed_policy(aws)
    verdict = check(policy, AWS_CALLS.calls, UNREACHABLE)
    assert verdict.ok, verdict.explain()

    # And the check has teeth: without sns:Publish, the alerts the e2e tests sent are denied.
    stripped = copy.deepcopy(policy)
    (topics,) = [s for s in stripped["Statement"] if s.get("Sid") == "Topics"]
    topics["Action"] = [a for a in topics["Action"] if a != "sns:Publish"]
    denied = check(stripped, AWS_CALLS.calls, UNREACHABLE).denied
    assert denied and {n.action for n in denied} == {"sns:Publish"}


def _call(service: str, operation: str, **params) -> ApiCall:
    return ApiCall(service, operation, tuple(sorted(params.items())), "us-east-1")


def test_removing_or_adding_an_action_fails_the_check(aws: LocalStack) -> None:
    """On a few calls of known shape, without the e2e tests: the deployed policy allows them; taken
    out of the policy, each is denied; an action added that nothing calls is reported unused."""
    policy = deployed_policy(aws)
    topic = f"arn:aws:sns:us-east-1:123456789012:{NAMES.alerts_topic}"
    calls = [
        _call("sns", "Publish", TopicArn=topic, Message="{}"),
        _call("s3", "PutObject", Bucket=NAMES.metrics_bucket, Key="metrics/2026-03-01.json", Body="<body>"),
        _call("dynamodb", "BatchWriteItem", RequestItems=((NAMES.scores_table, ()),)),
        _call("sagemaker-runtime", "InvokeEndpoint", EndpointName=NAMES.endpoint_name, Body="<body>"),
        _call("cloudwatch", "PutMetricData", Namespace="FraudDetection", MetricData=()),
    ]
    assert not check(policy, calls, UNREACHABLE).denied
    for sid, action in [
        ("Topics", "sns:Publish"),
        ("MetricsObjects", "s3:PutObject"),
        ("Scores", "dynamodb:BatchWriteItem"),
        ("Endpoint", "sagemaker:InvokeEndpoint"),
        ("Metrics", "cloudwatch:PutMetricData"),
    ]:
        mutated = copy.deepcopy(policy)
        (statement,) = [s for s in mutated["Statement"] if s.get("Sid") == sid]
        statement["Action"] = [a for a in statement["Action"] if a != action] if isinstance(statement["Action"], list) else []
        assert {n.action for n in check(mutated, calls, UNREACHABLE).denied} == {action}
    # Another namespace is not ours to write to.
    assert check(policy, [_call("cloudwatch", "PutMetricData", Namespace="AWS/SageMaker", MetricData=())], UNREACHABLE).denied
    # A wider policy: the unused action is named.
    widened = copy.deepcopy(policy)
    (statement,) = [s for s in widened["Statement"] if s.get("Sid") == "Topics"]
    statement["Action"] = [*statement["Action"], "sns:DeleteTopic"]
    assert ("Topics", "sns:DeleteTopic") in check(widened, calls, UNREACHABLE).unused
