"""The platform's CloudWatch metrics (namespace `FraudDetection`), published with PutMetricData.

Every value goes out under the full dimension set it is given (e.g. EndpointName + ModelVersion,
to compare models) and again under the roll-up dimensions alone (EndpointName): a CloudWatch alarm
watches one fixed dimension set, and the model version changes with every deployment, so the
template's alarms and dashboard watch the roll-up. Values that are not finite numbers (a metric
undefined for the day, e.g. precision with nothing flagged) are left out: CloudWatch rejects NaN,
and a missing datum is what "not measured" means to an alarm (TreatMissingData).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Mapping, Sequence

NAMESPACE = "FraudDetection"
ROLLUP_DIMENSIONS: tuple[str, ...] = ("EndpointName",)
# PutMetricData takes up to 1,000 data a request; small batches keep each request well under its
# 1 MB body limit whatever the dimensions.
MAX_DATA_PER_CALL = 150


def metric_data(
    metrics: Mapping[str, float | int | bool | None],
    dimensions: Mapping[str, str],
    *,
    units: Mapping[str, str] | None = None,
    timestamp: dt.datetime | None = None,
    rollup: Sequence[str] = ROLLUP_DIMENSIONS,
) -> list[dict[str, Any]]:
    """The PutMetricData entries for `metrics` (name -> value; booleans count as 0/1), under
    `dimensions` and under its `rollup` subset when that is a different, non-empty set."""
    for name in metrics:
        if not name or len(name) > 255 or not name.isascii():
            raise ValueError(f"invalid CloudWatch metric name {name!r}")
    for key, value in dimensions.items():
        if not key or not value:
            raise ValueError(f"dimension {key!r} needs a name and a value, got {value!r}")
    when = timestamp or dt.datetime.now(dt.timezone.utc)
    full = [{"Name": k, "Value": str(v)} for k, v in dimensions.items()]
    rolled = [d for d in full if d["Name"] in rollup]
    dimension_sets = [full] + ([rolled] if rolled and len(rolled) < len(full) else [])
    data = []
    for name, value in metrics.items():
        if value is None or isinstance(value, str):
            continue
        number = float(value)
        if not math.isfinite(number):
            continue
        for dims in dimension_sets:
            datum: dict[str, Any] = {"MetricName": name, "Dimensions": dims, "Value": number, "Timestamp": when}
            if units and name in units:
                datum["Unit"] = units[name]
            data.append(datum)
    return data


def publish_metrics(
    cloudwatch,
    metrics: Mapping[str, float | int | bool | None],
    dimensions: Mapping[str, str],
    *,
    units: Mapping[str, str] | None = None,
    timestamp: dt.datetime | None = None,
    namespace: str = NAMESPACE,
) -> int:
    """Publish `metrics` to CloudWatch (see `metric_data`); returns how many data went out.
    `cloudwatch` is a boto3 CloudWatch client (its retry mode retries throttling)."""
    data = metric_data(metrics, dimensions, units=units, timestamp=timestamp)
    for start in range(0, len(data), MAX_DATA_PER_CALL):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + MAX_DATA_PER_CALL])
    return len(data)


def model_dimensions(endpoint_name: str, model_version: str | None) -> dict[str, str]:
    """The platform's dimensions: the endpoint, and the model version when there is one."""
    return {"EndpointName": endpoint_name, **({"ModelVersion": model_version} if model_version else {})}
