"""Least privilege, checked: record the AWS calls the code location makes, map each to the IAM
action(s) and resource(s) it needs, and compare with an IAM policy document.

Recording: a botocore `provide-client-params` handler on every client created while the test session
runs (installed by conftest before any client exists) keeps the calls of clients that carry the
platform's user agent (lib/aws/clients.USER_AGENT_EXTRA): the code location's calls, not the tests'
own set-up calls nor the local stack's bookkeeping. `dumps`/`merge` carry a process's record as
JSON: from xdist workers to the controller, and from the suite's run to the comparison's.

Evaluation: Allow statements only (the policy has no Deny); actions and resources match with IAM's
wildcards; the condition operators the template uses (StringEquals, StringLike) are evaluated
against the request context each mapping provides (e.g. cloudwatch:namespace).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import threading
from typing import Any, Iterable

ACCOUNT = "123456789012"  # moto's default account: the deployed stack's ARNs carry it


@dataclasses.dataclass(frozen=True)
class ApiCall:
    service: str  # boto3's name: s3, dynamodb, sagemaker-runtime, cloudwatch, ...
    operation: str  # the API operation: PutObject, BatchWriteItem, ...
    params: tuple[tuple[str, Any], ...]
    region: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


@dataclasses.dataclass(frozen=True)
class Need:
    """One IAM permission a call needs: an action on a resource, in a request context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------------
# Recording


class Recorder:
    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.tests: list[str] = []  # node ids recorded, in order
        self.selected: set[str] = set()  # the e2e tests the run selected (all of them should be in `tests`)
        self.active: str | None = None
        self._lock = threading.Lock()

    def dumps(self) -> str:
        # Parameters are names, ARNs, keys and numbers; anything else (a timestamp) becomes its text,
        # which no IAM mapping reads.
        calls = [[c.service, c.operation, c.params, c.region] for c in self.calls]
        return json.dumps({"tests": self.tests, "selected": sorted(self.selected), "calls": calls}, default=str)

    def merge(self, text: str) -> None:
        doc = json.loads(text)
        with self._lock:
            self.tests.extend(doc["tests"])
            self.selected.update(doc["selected"])
            self.calls.extend(
                ApiCall(service, operation, _as_tuples(params), region) for service, operation, params, region in doc["calls"]
            )

    def install(self, user_agent_marker: str) -> None:
        import botocore.session

        original = botocore.session.Session.create_client
        if getattr(original, "_iam_recorder", None) is not None:
            return
        recorder = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register("provide-client-params", recorder._handler(user_agent_marker))
            return client

        create_client._iam_recorder = self  # type: ignore[attr-defined]
        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]

    def _handler(self, marker: str):
        def record(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            if self.active is None:
                return
            config = context.get("client_config")
            if marker not in (getattr(config, "user_agent_extra", None) or ""):
                return
            kept = tuple(sorted((k, _small(v)) for k, v in params.items()))
            call = ApiCall(model.service_model.service_name, model.name, kept, context.get("client_region") or "")
            with self._lock:
                self.calls.append(call)

        return record


def _as_tuples(value: Any) -> Any:
    """JSON's lists back into the tuples `_small` made (calls are compared and deduplicated as keys)."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def _small(value: Any) -> Any:
    """What the mapping needs of a parameter (names, ARNs, keys), hashable; bodies dropped."""
    if isinstance(value, (bytes, bytearray)) or hasattr(value, "read"):
        return "<body>"
    if isinstance(value, dict):
        return tuple(sorted((k, _small(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_small(v) for v in value)
    return value


# --------------------------------------------------------------------------------------------
# Calls -> IAM actions and resources


class UnmappedCall(ValueError):
    pass


def needs(call: ApiCall, account: str = ACCOUNT) -> list[Need]:
    p, region, op = call.kwargs, call.region, call.operation
    arn = f"arn:aws:{{}}:{region}:{account}:{{}}"
    if call.service == "s3":
        bucket = p.get("Bucket")
        obj = f"arn:aws:s3:::{bucket}/{p.get('Key', '')}"
        if op in ("GetObject", "PutObject", "DeleteObject"):
            return [Need(f"s3:{op}", obj)]
        if op in ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):  # boto3's upload_file above 8 MiB
            return [Need("s3:PutObject", obj)]
        if op == "AbortMultipartUpload":
            return [Need("s3:AbortMultipartUpload", obj)]
        if op == "HeadObject":  # 404 for a missing key needs ListBucket (403 otherwise)
            return [Need("s3:GetObject", obj), Need("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
        if op in ("ListObjectsV2", "ListObjects"):
            return [Need("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
        if op == "CopyObject":
            source = dict(p["CopySource"]) if isinstance(p["CopySource"], tuple) else {}
            return [Need("s3:PutObject", obj), Need("s3:GetObject", f"arn:aws:s3:::{source['Bucket']}/{source['Key']}")]
    if call.service == "dynamodb":
        if op in ("BatchWriteItem", "BatchGetItem"):
            tables = [name for name, _ in p["RequestItems"]]
            return [Need(f"dynamodb:{op}", arn.format("dynamodb", f"table/{t}")) for t in tables]
        if op == "Query" and p.get("IndexName"):
            return [Need("dynamodb:Query", arn.format("dynamodb", f"table/{p['TableName']}/index/{p['IndexName']}"))]
        if "TableName" in p:
            return [Need(f"dynamodb:{op}", arn.format("dynamodb", f"table/{p['TableName']}"))]
    if call.service == "sns":
        if op == "CreateTopic":
            return [Need("sns:CreateTopic", arn.format("sns", p["Name"]))]
        if op == "ListTopics":
            return [Need("sns:ListTopics", "*")]
        if "TopicArn" in p:
            return [Need(f"sns:{op}", p["TopicArn"])]
    if call.service == "ssm":
        names = [p["Path"]] if op == "GetParametersByPath" else list(p.get("Names") or [p.get("Name")])
        return [Need(f"ssm:{op}", arn.format("ssm", f"parameter/{n.lstrip('/')}")) for n in names]
    if call.service in ("sagemaker", "sagemaker-runtime"):

        def res(kind: str, name: str) -> str:
            return arn.format("sagemaker", f"{kind}/{name.lower()}")

        if op == "CreateTrainingJob":
            return [
                Need("sagemaker:CreateTrainingJob", res("training-job", p["TrainingJobName"])),
                Need("iam:PassRole", p["RoleArn"], (("iam:PassedToService", "sagemaker.amazonaws.com"),)),
            ]
        if "TrainingJobName" in p:
            return [Need(f"sagemaker:{op}", res("training-job", p["TrainingJobName"]))]
        if op == "CreateModelPackage":
            return [Need("sagemaker:CreateModelPackage", res("model-package-group", p["ModelPackageGroupName"]))]
        if op == "ListModelPackages":
            return [Need("sagemaker:ListModelPackages", "*")]
        if op in ("DescribeModelPackage", "UpdateModelPackage"):
            return [Need(f"sagemaker:{op}", p.get("ModelPackageName") or p["ModelPackageArn"])]
        if op == "CreateModel":
            return [
                Need("sagemaker:CreateModel", res("model", p["ModelName"])),
                Need("iam:PassRole", p["ExecutionRoleArn"], (("iam:PassedToService", "sagemaker.amazonaws.com"),)),
            ]
        if op in ("CreateEndpoint", "UpdateEndpoint"):
            return [
                Need(f"sagemaker:{op}", res("endpoint", p["EndpointName"])),
                Need(f"sagemaker:{op}", res("endpoint-config", p["EndpointConfigName"])),
            ]
        if "EndpointName" in p:
            return [Need(f"sagemaker:{op}", res("endpoint", p["EndpointName"]))]
        if "EndpointConfigName" in p:
            return [Need(f"sagemaker:{op}", res("endpoint-config", p["EndpointConfigName"]))]
        if "ModelName" in p:
            return [Need(f"sagemaker:{op}", res("model", p["ModelName"]))]
    if call.service == "logs" and op in ("DescribeLogStreams", "GetLogEvents"):
        group = arn.format("logs", f"log-group:{p['logGroupName']}")
        return [Need(f"logs:{op}", f"{group}:log-stream:{p['logStreamName']}" if "logStreamName" in p else group)]
    if call.service == "cloudwatch" and op == "PutMetricData":
        return [Need("cloudwatch:PutMetricData", "*", (("cloudwatch:namespace", p["Namespace"]),))]
    raise UnmappedCall(f"no IAM mapping for {call.service} {op} (teach iam_check.needs)")


# --------------------------------------------------------------------------------------------
# Policy evaluation


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, *, case: bool) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, expected in tests.items():
            have = context.get(key)
            if have is None:
                return False
            wanted = [str(e) for e in _as_list(expected)]
            if operator == "StringEquals" and have not in wanted:
                return False
            if operator == "StringLike" and not any(_matches(w, have, case=True) for w in wanted):
                return False
            if operator not in ("StringEquals", "StringLike"):
                raise ValueError(f"condition operator {operator} is not evaluated here")
    return True


def allowing_statements(policy: dict[str, Any], need: Need) -> list[dict[str, Any]]:
    found = []
    for statement in _as_list(policy["Statement"]):
        if statement["Effect"] != "Allow":
            continue
        if not any(_matches(a, need.action, case=False) for a in _as_list(statement["Action"])):
            continue
        if not any(_matches(r, need.resource, case=True) for r in _as_list(statement["Resource"])):
            continue
        if "Condition" in statement and not _condition_holds(statement["Condition"], dict(need.context)):
            continue
        found.append(statement)
    return found


@dataclasses.dataclass
class Verdict:
    denied: dict[Need, ApiCall]  # a call the policy does not allow
    unused: list[tuple[str, str]]  # (statement Sid, action) that no call used and nothing excuses

    @property
    def ok(self) -> bool:
        return not self.denied and not self.unused

    def explain(self) -> str:
        lines = [
            f"DENIED: {n.action} on {n.resource} (context {dict(n.context)}), needed by {c.service} {c.operation}"
            for n, c in self.denied.items()
        ]
        lines += [f"UNUSED: statement {sid} allows {action}, which no recorded call needs" for sid, action in self.unused]
        return "\n".join(lines + ["(the policy is CodeLocationRole in infra/fraud-detection.yaml)"])


def check(policy: dict[str, Any], calls: Iterable[ApiCall], unreachable: dict[tuple[str, str], str], account: str = ACCOUNT) -> Verdict:
    """Every call's needs allowed by some statement; every (statement, action) used by some need,
    unless `unreachable` excuses it ((Sid, action) -> why the tests cannot reach it)."""
    denied: dict[Need, ApiCall] = {}
    used: set[tuple[str, str]] = set()
    for call in dict.fromkeys(calls):
        for need in needs(call, account):
            statements = allowing_statements(policy, need)
            if not statements:
                denied.setdefault(need, call)
            for statement in statements:
                used.update((statement.get("Sid", "?"), a) for a in _as_list(statement["Action"]) if _matches(a, need.action, case=False))
    unused = [
        (statement.get("Sid", "?"), action)
        for statement in _as_list(policy["Statement"])
        if statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"])
        if (statement.get("Sid", "?"), action) not in used and (statement.get("Sid", "?"), action) not in unreachable
    ]
    return Verdict(denied, unused)
