"""The FraudDetection metrics: what PutMetricData gets (both dimension sets, no NaN), and what the
local stack's CloudWatch gives back."""

from __future__ import annotations

import datetime as dt
import math

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.aws.cloudwatch import MAX_DATA_PER_CALL, NAMESPACE, metric_data, model_dimensions, publish_metrics

DIMS = {"EndpointName": "fraud-detection-prod", "ModelVersion": "20260301-000000-abcd1234"}


@settings(deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([f"Metric{c}{i}" for c in "ABC" for i in range(12)]),
        st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True, allow_infinity=True)),
        max_size=30,
    )
)
def test_every_finite_value_goes_out_under_both_dimension_sets(metrics):
    data = metric_data(metrics, DIMS)
    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    assert len(data) == 2 * len(finite)
    for name, value in finite.items():
        sent = [d for d in data if d["MetricName"] == name]
        assert [d["Value"] for d in sent] == [value, value]
        assert sorted(len(d["Dimensions"]) for d in sent) == [1, 2]
        assert {"Name": "EndpointName", "Value": DIMS["EndpointName"]} in sent[0]["Dimensions"]
    assert all(math.isfinite(d["Value"]) for d in data)


def test_dimensions_and_names_are_checked():
    assert model_dimensions("ep", None) == {"EndpointName": "ep"}
    assert len(metric_data({"A": 1.0}, {"EndpointName": "ep"})) == 1  # nothing to roll up
    assert metric_data({"A": 1.0}, {})[0]["Dimensions"] == []
    with pytest.raises(ValueError, match="metric name"):
        metric_data({"": 1.0}, DIMS)
    with pytest.raises(ValueError, match="dimension"):
        metric_data({"A": 1.0}, {"EndpointName": ""})


def test_published_metrics_read_back_from_the_stack(aws):
    cloudwatch = boto3.client("cloudwatch")
    many = {f"Metric{i:03d}": float(i) for i in range(MAX_DATA_PER_CALL)}  # 2x the batch size of data
    assert publish_metrics(cloudwatch, {**many, "HighRiskRate": 0.025, "Undefined": float("nan")}, DIMS) == 2 * (len(many) + 1)
    listed = {
        (m["MetricName"], tuple(sorted(d["Name"] for d in m["Dimensions"])))
        for m in cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName="HighRiskRate")["Metrics"]
    }
    assert listed == {("HighRiskRate", ("EndpointName",)), ("HighRiskRate", ("EndpointName", "ModelVersion"))}
    assert not cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName="Undefined")["Metrics"]
    now = dt.datetime.now(dt.timezone.utc)
    result = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "rate",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": "HighRiskRate",
                        "Dimensions": [{"Name": "EndpointName", "Value": DIMS["EndpointName"]}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=10),
    )
    assert result["MetricDataResults"][0]["Values"] == [pytest.approx(0.025)]
    # The template's alarm on that metric is there to watch it.
    alarm = cloudwatch.describe_alarms(AlarmNames=["fraud-detection-high-fraud-rate"])["MetricAlarms"][0]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["Dimensions"]) == (
        "HighRiskRate",
        0.02,
        [{"Name": "EndpointName", "Value": DIMS["EndpointName"]}],
    )
