"""The SageMaker Model Registry: every model a training run produced is a model package in the
group `fraud-detection`, with its metrics, data provenance and evaluation verdict;
`ModelApprovalStatus` is Approved only when every blocking gate passed, Rejected otherwise.

Deployment reads the verdict here (not from whichever evaluation was stored last), and the
rollback lists and restores what was registered. A model version is registered once: evaluating
the same version again updates its package (status, gates, metrics) instead of adding a second.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

MODEL_PACKAGE_GROUP = "fraud-detection"
APPROVED, REJECTED = "Approved", "Rejected"
# CustomerMetadataProperties: string values, at most 50 entries, keys <= 128 and values <= 256 chars.
_MAX_VALUE = 256
_GATE_PREFIX = "gate_"
_METRIC_PREFIX = "metric_"


class RegistryError(RuntimeError):
    """The registry holds something deployment cannot trust (a version registered twice, no verdict)."""


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    arn: str
    model_version: str
    approval_status: str
    model_data_url: str
    gates: dict[str, bool]
    gate_messages: dict[str, str]
    metrics: dict[str, float]
    properties: dict[str, str]

    @property
    def approved(self) -> bool:
        return self.approval_status == APPROVED

    @property
    def failed_gates(self) -> list[str]:
        return sorted(name for name, passed in self.gates.items() if not passed)


def model_package_properties(
    model_version: str, gates: Sequence[Mapping[str, Any]], metrics: Mapping[str, float | None], provenance: Mapping[str, Any]
) -> dict[str, str]:
    """The package's CustomerMetadataProperties: the version, each gate's verdict, the headline
    metrics and the data provenance, as the short strings the registry stores."""
    properties = {"model_version": model_version}
    # "passed" or "failed: <what the gate said>", cut to the registry's value limit.
    properties.update(
        {f"{_GATE_PREFIX}{g['name']}": ("passed" if g["passed"] else f"failed: {g.get('message', '')}")[:_MAX_VALUE] for g in gates}
    )
    properties.update({f"{_METRIC_PREFIX}{name}": f"{value:.6g}" for name, value in metrics.items() if value is not None})
    properties.update({name: str(value) for name, value in provenance.items() if value is not None})
    too_long = {k: v for k, v in properties.items() if len(v) > _MAX_VALUE or len(k) > 128}
    if too_long or len(properties) > 50:
        raise ValueError(
            f"model package metadata exceeds the registry's limits (50 entries, 128/256 chars): {sorted(too_long) or len(properties)}"
        )
    return properties


def deployment_refusal(model_version: str, registered: RegisteredModel | None) -> str | None:
    """Why `model_version` must not be deployed, in one line, or None when the registry holds it
    Approved with every gate passed.

    Deployment can start anywhere (the training job, one asset materialised from the UI or CLI) and
    load whatever evaluation was stored last: the registry's verdict for this exact version is the
    one that counts."""
    if registered is None:
        return f"model {model_version} has no recorded evaluation in the model registry: materialise evaluation_metrics for it first"
    if not registered.gates:
        return f"model {model_version}: its registered evaluation records no gate verdicts; evaluate it again before deploying"
    failed = registered.failed_gates
    if failed:
        return f"model {model_version} failed its gates: " + "; ".join(f"{g} ({registered.gate_messages.get(g, '')})" for g in failed)
    if not registered.approved:
        return f"model {model_version} is registered as {registered.approval_status or 'unapproved'}, not Approved"
    return None


def register_model(
    sagemaker,
    *,
    model_version: str,
    model_data_url: str,
    image_uri: str,
    gates: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, float | None],
    provenance: Mapping[str, Any],
    metrics_uri: str | None = None,
    group: str = MODEL_PACKAGE_GROUP,
) -> RegisteredModel:
    """Register (or, for a version already registered, update) the model package; Approved only
    when every gate passed."""
    if not gates:
        raise ValueError(f"model {model_version}: no gate verdicts to register")
    status = APPROVED if all(g["passed"] for g in gates) else REJECTED
    properties = model_package_properties(model_version, gates, metrics, provenance)
    existing = find_model(sagemaker, model_version, group)
    description = f"fraud model {model_version}: " + (
        "every blocking gate passed" if status == APPROVED else "failed " + ", ".join(g["name"] for g in gates if not g["passed"])
    )
    if existing is not None:
        sagemaker.update_model_package(
            ModelPackageArn=existing.arn,
            ModelApprovalStatus=status,
            ApprovalDescription=description,
            CustomerMetadataProperties=properties,
        )
        return find_model(sagemaker, model_version, group)  # type: ignore[return-value]
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description,
        "ModelApprovalStatus": status,
        "InferenceSpecification": {
            "Containers": [{"Image": image_uri, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "CustomerMetadataProperties": properties,
    }
    if metrics_uri:
        request["ModelMetrics"] = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}}}
    sagemaker.create_model_package(**request)
    registered = find_model(sagemaker, model_version, group)
    if registered is None:
        raise RegistryError(f"model {model_version}: registered in {group} but not found there afterwards")
    return registered


def list_models(sagemaker, group: str = MODEL_PACKAGE_GROUP) -> list[RegisteredModel]:
    """Every package of the group, oldest first."""
    summaries: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Ascending"}
    while True:
        page = sagemaker.list_model_packages(**kwargs)
        summaries += page.get("ModelPackageSummaryList", [])
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return [_registered(sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"])) for s in summaries]


def find_model(sagemaker, model_version: str, group: str = MODEL_PACKAGE_GROUP) -> RegisteredModel | None:
    """The package registered for `model_version`, or None; two packages for one version are an
    error (the registry could no longer say which verdict holds)."""
    found = [m for m in list_models(sagemaker, group) if m.model_version == model_version]
    if len(found) > 1:
        raise RegistryError(f"model {model_version} is registered {len(found)} times in {group}: {[m.arn for m in found]}")
    return found[0] if found else None


def _registered(package: Mapping[str, Any]) -> RegisteredModel:
    properties = dict(package.get("CustomerMetadataProperties") or {})
    if "model_version" not in properties:
        raise RegistryError(f"model package {package['ModelPackageArn']} records no model_version")
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or [{}]
    return RegisteredModel(
        arn=package["ModelPackageArn"],
        model_version=properties["model_version"],
        approval_status=package.get("ModelApprovalStatus", ""),
        model_data_url=containers[0].get("ModelDataUrl", ""),
        gates={k[len(_GATE_PREFIX) :]: v == "passed" for k, v in properties.items() if k.startswith(_GATE_PREFIX)},
        gate_messages={k[len(_GATE_PREFIX) :]: v.removeprefix("failed: ") for k, v in properties.items() if k.startswith(_GATE_PREFIX)},
        metrics={k[len(_METRIC_PREFIX) :]: float(v) for k, v in properties.items() if k.startswith(_METRIC_PREFIX)},
        properties=properties,
    )


REGISTRY_COLUMNS = ("model_version", "approval_status", "failed_gates", "served", "serving_now", "model_package_arn")


def registry_rows(registered: Sequence[RegisteredModel], history: Sequence[Mapping[str, Any]], serving: str | None) -> list[tuple]:
    """Every registered version, newest first, with its verdict and whether it ever served (what
    rollback-model can restore: a version that served once)."""
    served = {r["model_version"] for r in history}
    return [
        (m.model_version, m.approval_status, ", ".join(m.failed_gates) or "-", m.model_version in served, m.model_version == serving, m.arn)
        for m in reversed(registered)
    ]
