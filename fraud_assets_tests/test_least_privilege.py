"""Least privilege, checked: the code location's role (CodeLocationRole in infra/fraud-detection.yaml,
as the local stack deployed it) allows every AWS call the end-to-end tests made, and nothing that no
call needs, apart from the few calls below that the tests cannot reach.

conftest records the calls during the e2e tests. The comparison needs the calls of every e2e test of
the suite, from one of two places:
- this process, where the e2e tests ran before this module (conftest orders it last): `make
  least-privilege` (pytest -n 0 -m "e2e or least_privilege");
- a file an earlier run wrote with `--aws-calls-out=PATH` (in an xdist run, every worker's calls,
  which the controller collects), read with `--aws-calls-in=PATH` (with `=`: pytest reads a separate
  value as a test path before it knows these options): `make test` (and so CI) runs the suite on two
  workers with the first, then `-m least_privilege` with the second. Any e2e test of the suite
  missing from that file fails the comparison.
Under xdist without a file to read (`pytest -n 2` alone) the e2e tests run on other workers, and it
skips, saying so.
"""

from __future__ import annotations

import copy

import pytest
from conftest import AWS_CALLS, COLLECTED_E2E
from iam_check import ACCOUNT, ApiCall, Recorder, check

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


def e2e_calls(config: pytest.Config) -> list[ApiCall]:
    """The calls of every e2e test of the suite: from this process, or from the --aws-calls-in file."""
    if COLLECTED_E2E and COLLECTED_E2E <= set(AWS_CALLS.tests):
        return AWS_CALLS.calls
    path = config.getoption("aws_calls_in")
    if not path:
        pytest.skip(
            "the e2e tests' calls are not in this process (not all selected, or under xdist on other workers): `make test` "
            "compares them after the suite (--aws-calls-out=PATH, then --aws-calls-in=PATH), `make least-privilege` in one process"
        )
    try:
        with open(path) as f:
            recorded = Recorder()
            recorded.merge(f.read())
    except FileNotFoundError:
        pytest.fail(f"{path} does not exist: a run with --aws-calls-out {path} writes it (make test runs one first)")
    if not recorded.tests:
        pytest.fail(f"{path} holds no e2e test's calls (the run that wrote it selected none)")
    missing = (COLLECTED_E2E | recorded.selected) - set(recorded.tests)
    if missing:
        pytest.fail(f"{path} lacks the calls of {len(missing)} e2e tests of the suite (not run, or their worker died): {sorted(missing)}")
    return recorded.calls


@pytest.mark.least_privilege
def test_code_location_policy_allows_exactly_what_the_e2e_tests_call(request: pytest.FixtureRequest, aws: LocalStack) -> None:
    calls = e2e_calls(request.config)
    policy = deployed_policy(aws)
    verdict = check(policy, calls, UNREACHABLE)
    assert verdict.ok, verdict.explain()

    # And the check has teeth: without sns:Publish, the alerts the e2e tests sent are denied.
    stripped = copy.deepcopy(policy)
    (topics,) = [s for s in stripped["Statement"] if s.get("Sid") == "Topics"]
    topics["Action"] = [a for a in topics["Action"] if a != "sns:Publish"]
    denied = check(stripped, calls, UNREACHABLE).denied
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
