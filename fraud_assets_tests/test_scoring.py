"""Scoring: request bodies, response parsing, risk buckets, and the retry loop against a real HTTP
server speaking the SageMaker Runtime InvokeEndpoint protocol."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterator

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import xgboost as xgb
from botocore.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from fraud_assets.lib.inference.scoring import (
    EndpointError,
    csv_batches,
    parse_scores,
    risk_levels,
    score_one_at_a_time,
    score_summary,
    score_through_endpoint,
)

finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


def read_back(body: bytes, width: int) -> np.ndarray:
    """Parse a body the way a CSV reader on the endpoint would (not with our own code)."""
    table = pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(autogenerate_column_names=True),
        convert_options=pacsv.ConvertOptions(column_types={f"f{j}": pa.float32() for j in range(width)}),
    )
    return np.column_stack([c.to_numpy() for c in table.columns]).reshape(-1, width)


# -- csv_batches --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    features=hnp.arrays(np.float32, st.tuples(st.integers(0, 60), st.integers(1, 5)), elements=finite32),
    max_bytes=st.integers(80, 400),
    block_rows=st.integers(1, 20),
)
def test_csv_batches_cover_every_row_once_in_order_within_the_byte_limit(features, max_bytes, block_rows):
    batches = list(csv_batches(features, max_bytes, block_rows=block_rows))
    expected_start = 0
    for start, stop, body in batches:
        assert start == expected_start and stop > start
        assert len(body) <= max_bytes
        assert body.count(b"\n") == stop - start and body.endswith(b"\n")
        np.testing.assert_array_equal(read_back(body, features.shape[1]), features[start:stop])
        expected_start = stop
    assert expected_start == len(features)
    # Formatting block by block changes nothing: bodies are cut by bytes, not by block.
    assert batches == list(csv_batches(features, max_bytes, block_rows=10_000))


@settings(max_examples=30, deadline=None)
@given(
    features=hnp.arrays(np.float32, st.tuples(st.integers(2, 40), st.integers(1, 4)), elements=finite32),
    max_bytes=st.integers(80, 300),
)
def test_csv_batches_are_as_full_as_the_limit_allows(features, max_bytes):
    batches = list(csv_batches(features, max_bytes, block_rows=7))
    for (_, stop, body), (next_start, next_stop, next_body) in zip(batches, batches[1:]):
        first_line_of_next = next_body.split(b"\n")[0]
        assert len(body) + len(first_line_of_next) + 1 > max_bytes  # the next row did not fit


def test_float64_features_go_out_as_shortest_float32_text():
    ((start, stop, body),) = csv_batches(np.array([[0.1, 1e-30, 123.456789012345], [-0.0, 2.0, 3.5]]))
    assert (start, stop) == (0, 2)
    assert body == b"0.1,1e-30,123.45679\n-0.0,2.0,3.5\n"


def test_a_row_longer_than_the_limit_is_refused_by_number():
    features = np.array([[1.0, 2.0], [123.125, 4.5], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"row 1 alone is 12 bytes of CSV, more than max_bytes=11"):
        list(csv_batches(features, 11))


def test_a_missing_feature_goes_out_as_an_empty_field_and_an_infinite_one_is_refused():
    assert b"".join(body for _, _, body in csv_batches(np.array([[1.0, np.nan], [np.nan, 2.5]]))) == b"1.0,\n,2.5\n"
    with pytest.raises(ValueError, match=r"row 1, column 0 is inf"):
        list(csv_batches(np.array([[1.0], [np.inf]])))
    with pytest.raises(ValueError, match="2-D"):
        list(csv_batches(np.array([1.0, 2.0])))


def test_no_rows_no_bodies():
    assert list(csv_batches(np.empty((0, 30)))) == []


# -- parse_scores -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"0.1\n0.5\n0.9\n", "text/csv"),
        (b"0.1,0.5,0.9", "text/csv; charset=utf-8"),
        (b"0.1\r\n0.5\r\n0.9", "text/csv"),
        (b'{"predictions": [{"score": 0.1}, {"score": 0.5}, {"score": 0.9}]}', "application/json"),
    ],
)
def test_parse_scores_reads_every_response_shape(body, content_type):
    np.testing.assert_array_equal(parse_scores(body, content_type, 3), [0.1, 0.5, 0.9])


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b"0.1\n0.2", "text/csv", "2 scores for 3 rows"),
        (b"0.1,0.2,0.3,0.4", "text/csv", "4 scores for 3 rows"),
        (b"0.1\nabc\n0.3", "text/csv", r"score #2 of the response is b'abc', not a number"),
        (b"0.1\n1.5\n0.3", "text/csv", r"score #2 is 1.5, not a probability"),
        (b"0.1\nnan\n0.3", "text/csv", r"score #2 is nan"),
        (b'{"predictions": [{"score": 0.1}, {"score": "x"}, {"score": 0.3}]}', "application/json", "#2"),
        (b'{"predictions": [{"score": 0.1}', "application/json", "malformed JSON"),
        (b"0.1", "application/x-recordio-protobuf", "unsupported response content type"),
    ],
)
def test_parse_scores_refuses_what_is_not_one_probability_per_row(body, content_type, message):
    with pytest.raises(ValueError, match=message):
        parse_scores(body, content_type, 3)


# -- risk levels --------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=50))
def test_risk_levels_never_decrease_as_the_score_rises(scores):
    scores = np.sort(np.asarray(scores))
    rank = {"LOW": 0, "MEDIUM": 1, "HIGH": 2}
    ranks = [rank[level] for level in risk_levels(scores)]
    assert ranks == sorted(ranks)


def test_risk_level_boundaries_and_summary():
    scores = np.array([0.0, 0.4999, 0.5, 0.7999, 0.8, 1.0])
    assert risk_levels(scores).tolist() == ["LOW", "LOW", "MEDIUM", "MEDIUM", "HIGH", "HIGH"]
    assert score_summary(scores) == {
        "record_count": 6,
        "high_risk_count": 2,
        "medium_risk_count": 2,
        "low_risk_count": 2,
        "average_score": pytest.approx(3.5998 / 6),
    }
    assert score_summary(np.array([]))["average_score"] is None
    with pytest.raises(ValueError, match="NaN would silently count as LOW"):
        risk_levels(np.array([0.2, np.nan]))


# -- the endpoint, over real HTTP ---------------------------------------------------------------


class FakeEndpoint:
    """A tiny SageMaker Runtime look-alike on 127.0.0.1: `POST /endpoints/<name>/invocations`.
    `script` gives the first responses (status, error type, message); after it runs out, the
    endpoint scores each CSV row with `model`."""

    def __init__(
        self, model: Callable[[np.ndarray], np.ndarray], script: list[tuple[int, str, str]] | None = None, json_output: bool = False
    ):
        self.model, self.script, self.json_output = model, list(script or []), json_output
        self.calls: list[tuple[str, int]] = []  # (path, rows) of each request
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)

    @Request.application
    def app(self, request: Request) -> Response:
        body = request.get_data()
        with self.lock:
            self.calls.append((request.path, body.count(b"\n")))
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            status, error_type, message, *original = scripted
            payload = {"__type": error_type, "message": message}
            if error_type == "ModelError":  # the container's own status rides along
                payload.update(OriginalStatusCode=original[0] if original else 500, OriginalMessage=message, LogStreamArn="arn:x")
            return Response(json.dumps(payload), status=status, content_type="application/json", headers={"x-amzn-ErrorType": error_type})
        if request.content_type != "text/csv":
            return Response(json.dumps({"__type": "ValidationError", "message": "415"}), status=415)
        rows = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float32, ndmin=2)
        scores = self.model(rows)
        if self.json_output:
            out = json.dumps({"predictions": [{"score": float(s)} for s in scores]})
            return Response(out, content_type="application/json")
        return Response("\n".join(repr(float(s)) for s in scores) + "\n", content_type="text/csv")


@pytest.fixture
def serve() -> Iterator[Callable[[FakeEndpoint], str]]:
    servers = []

    def start(app: FakeEndpoint) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        # A short poll interval: shutdown() waits for the loop to notice, 0.5 s by default.
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(timeout=5)


def runtime_client(url: str):
    # boto3's own retries off: what the test sees is score_through_endpoint's retrying.
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def first_feature_model(rows: np.ndarray) -> np.ndarray:
    """Scores that identify their row (the tests keep the first feature in [0, 1])."""
    return rows[:, 0]


def no_sleep(delays: list[float]) -> Callable[[float], None]:
    return delays.append


def test_throttling_and_unavailability_are_retried_and_rows_come_back_in_order(serve):
    endpoint = FakeEndpoint(
        first_feature_model,
        script=[
            (503, "ServiceUnavailable", "busy"),
            (429, "ThrottlingException", "slow down"),
            (500, "ModelError", "worker restarting"),
        ],
    )
    runtime = runtime_client(serve(endpoint))
    features = np.repeat(np.linspace(0, 1, 500, dtype=np.float32)[:, None], 3, axis=1)
    delays: list[float] = []
    messages: list[str] = []
    scores = score_through_endpoint(
        runtime, "x", features, max_bytes=400, max_workers=2, base_delay=0.01, sleep=no_sleep(delays), on_retry=messages.append
    )
    np.testing.assert_array_equal(scores, features[:, 0].astype(np.float64))
    requests = len(list(csv_batches(features, 400)))
    assert requests > 10
    assert len(endpoint.calls) == requests + 3 and len(delays) == 3
    assert all(path == "/endpoints/x/invocations" for path, _ in endpoint.calls)
    assert {m.split(": ")[1].split(" ")[0] for m in messages} == {"ServiceUnavailable", "ThrottlingException", "ModelError"}


@pytest.mark.parametrize(
    "scripted, expected",
    [
        (
            (400, "ValidationError", "Endpoint x of account 1 not found."),
            r"endpoint x, rows 0-9: ValidationError \(400\): Endpoint x of account 1 not found",
        ),
        ((424, "ModelError", "unsupported content type", 415), r"ModelError \(424\): unsupported content type"),
    ],
)
def test_a_client_error_is_raised_at_once_with_the_endpoint_message(serve, scripted, expected):
    endpoint = FakeEndpoint(first_feature_model, script=[scripted])
    runtime = runtime_client(serve(endpoint))
    delays: list[float] = []
    with pytest.raises(EndpointError, match=expected) as info:
        score_through_endpoint(runtime, "x", np.full((10, 2), 0.5), sleep=no_sleep(delays))
    assert info.value.status == scripted[0] and info.value.attempts == 1
    assert len(endpoint.calls) == 1 and delays == []


def test_retries_end_after_max_attempts(serve):
    endpoint = FakeEndpoint(first_feature_model, script=[(503, "ServiceUnavailable", "down")] * 10)
    runtime = runtime_client(serve(endpoint))
    delays: list[float] = []
    with pytest.raises(EndpointError, match=r"still failing after 4 attempts: ServiceUnavailable \(503\): down"):
        score_through_endpoint(runtime, "x", np.full((10, 2), 0.5), max_attempts=4, base_delay=0.1, sleep=no_sleep(delays))
    assert len(endpoint.calls) == 4
    # Exponential with jitter: each delay within [d/2, d] of d = 0.1 * 2^(attempt-1).
    assert all(0.1 * 2**i / 2 <= d <= 0.1 * 2**i for i, d in enumerate(delays)) and len(delays) == 3


def test_a_connection_refused_is_retried_then_reported(serve):
    endpoint = FakeEndpoint(first_feature_model)
    url = serve(endpoint)
    runtime = runtime_client(url.rsplit(":", 1)[0] + ":1")  # nothing listens on port 1
    delays: list[float] = []
    with pytest.raises(EndpointError, match="still failing after 2 attempts: EndpointConnectionError"):
        score_through_endpoint(runtime, "x", np.full((3, 2), 0.5), max_attempts=2, sleep=no_sleep(delays))
    assert len(delays) == 1


def test_endpoint_scores_equal_in_process_xgboost_predictions(serve):
    """float32 text on the wire changes no prediction: the model computes in float32 anyway."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 30)) * np.array([1000.0] + [1.0] * 28 + [250.0])
    y = (x[:, 1] + rng.normal(size=2000) > 1.5).astype(int)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=y), 20)
    endpoint = FakeEndpoint(lambda rows: booster.inplace_predict(rows), json_output=True)
    runtime = runtime_client(serve(endpoint))
    scores = score_through_endpoint(runtime, "fraud", x, max_bytes=64 * 1024)
    np.testing.assert_array_equal(scores, booster.inplace_predict(x).astype(np.float64))
    assert len(endpoint.calls) > 1
    np.testing.assert_array_equal(score_one_at_a_time(runtime, "fraud", x[:5]), scores[:5])


def test_scores_on_the_benchmark_rows_are_bit_identical_to_the_previous_encoder(serve):
    """The orjson encoder against the one it replaced (pyarrow's CSV writer), on the scoring
    benchmark's rows, through the model server's own parser and score printer: same float32
    matrix, same scores to the bit."""
    from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN
    from fraud_assets.lib.seeding.synthetic import generate_transactions
    from fraud_assets_local import model_server

    frame = generate_transactions(n_rows=20_000)
    rows = frame[list(FEATURE_COLUMNS)].to_numpy(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1}, xgb.DMatrix(rows, label=frame[LABEL_COLUMN].to_numpy()), 30
    )
    names = [f"f{j}" for j in range(rows.shape[1])]
    loaded = model_server.LoadedModel(
        booster, rows.shape[1], "", "", names, pacsv.ConvertOptions(column_types={c: pa.float32() for c in names})
    )

    previous_sink = io.BytesIO()  # the previous encoder, as it was
    pacsv.write_csv(
        pa.table({n: rows[:, j] for j, n in enumerate(names)}),
        previous_sink,
        pacsv.WriteOptions(include_header=False, quoting_style="none"),
    )
    previous_matrix = model_server.parse_csv(previous_sink.getvalue(), loaded)
    new_matrix = np.concatenate([model_server.parse_csv(body, loaded) for _, _, body in csv_batches(rows)])
    np.testing.assert_array_equal(new_matrix.view(np.uint32), rows.view(np.uint32))
    np.testing.assert_array_equal(new_matrix.view(np.uint32), previous_matrix.view(np.uint32))

    def endpoint(environ, start_response):  # the model server's parse, predict and print
        body = Request(environ).get_data()
        out = model_server.format_scores(booster.inplace_predict(model_server.parse_csv(body, loaded)), "text/csv")
        start_response("200 OK", [("Content-Type", "text/csv"), ("Content-Length", str(len(out)))])
        return [out]

    scores = score_through_endpoint(runtime_client(serve(endpoint)), "bench", rows, max_bytes=512 * 1024)
    previous_text = model_server.format_scores(booster.inplace_predict(previous_matrix), "text/csv")
    previous_scores = np.array(previous_text.split(), dtype=np.float64)  # the previous client's parse
    np.testing.assert_array_equal(scores.view(np.uint64), previous_scores.view(np.uint64))
    assert len(np.unique(scores)) > 100  # a model that says something different per row
