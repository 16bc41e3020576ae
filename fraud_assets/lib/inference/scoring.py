"""Scoring through the deployed SageMaker endpoint (boto3 `sagemaker-runtime` InvokeEndpoint).

The original design invoke the endpoint once per transaction (~50 ms each: 8 minutes for 10,000). Here the
rows travel as `text/csv` request bodies sized by bytes (each under the 6 MB InvokeEndpoint limit),
a few requests in flight at once (the next bodies are encoded while they are), each retried on
throttling and server errors. The built-in XGBoost container answers with one score per row, in
row order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterator

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from fraud_assets.lib import metadata_keys as keys
from fraud_assets.lib.aws.dynamodb_batches import backoff_delay
from fraud_assets.lib.config import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD, TRANSACTION_ID
from fraud_assets.lib.inference import reasons as reasons_lib
from fraud_assets.lib.inference.summaries import ScoreSummary, TransactionCounts

CSV = "text/csv"
# InvokeEndpoint takes at most 6 MB per request; 5 MiB leaves room for headers and estimates.
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
# Rows formatted per step: bounds memory and lets the first request leave while later rows are
# still being formatted.
DEFAULT_BLOCK_ROWS = 16_384

HIGH, MEDIUM, LOW = "HIGH", "MEDIUM", "LOW"

# Error codes worth another try: throttling and the service's own transient failures.
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ModelNotReadyException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "InternalDependencyException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


class EndpointError(RuntimeError):
    """The endpoint refused rows (4xx), or kept failing after every retry."""

    def __init__(
        self,
        message: str,
        *,
        endpoint_name: str,
        rows: tuple[int, int],
        code: str | None = None,
        status: int | None = None,
        attempts: int = 1,
    ):
        super().__init__(message)
        self.endpoint_name, self.rows, self.code, self.status, self.attempts = endpoint_name, rows, code, status, attempts


# -- request bodies -----------------------------------------------------------------------------


def csv_batches(
    features: np.ndarray, max_bytes: int = DEFAULT_MAX_BYTES, *, block_rows: int = DEFAULT_BLOCK_ROWS
) -> Iterator[tuple[int, int, bytes]]:
    """Yield `(start, stop, body)`: rows `start:stop` as headerless `text/csv`, one line per row,
    each ending in a newline, `len(body) <= max_bytes`, each body as full as the limit allows.
    Together the bodies cover every row exactly once, in order.

    Values go out as float32 in their shortest round-trip form: XGBoost computes in float32, so
    the scores equal those of the float64 values while the text is about half as long. orjson
    writes that form ~2.5x faster than pyarrow's CSV writer, and any CSV reader parses it back
    to the same float32 bits.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, not {max_bytes}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be positive, not {block_rows}")
    matrix = _float32_matrix(features)
    n = len(matrix)
    carry, carry_ends, carry_row = b"", np.empty(0, dtype=np.int64), 0
    for block_start in range(0, n, block_rows):
        block_stop = min(n, block_start + block_rows)
        text = format_rows(matrix[block_start:block_stop])
        buf = carry + text
        # ends[i]: offset just past row i's newline within buf.
        ends = np.concatenate([carry_ends, _line_ends(text) + len(carry)])
        more_to_come = block_stop < n
        pos, row = 0, 0
        while row < len(ends):
            # Rows row..k fit when their lines end within max_bytes of pos.
            k = int(np.searchsorted(ends, pos + max_bytes, side="right")) - 1
            if k < row:
                raise ValueError(f"row {carry_row + row} alone is {int(ends[row]) - pos} bytes of CSV, more than max_bytes={max_bytes}")
            if k == len(ends) - 1 and more_to_come:
                break  # the next block's rows may still fit in this body
            yield carry_row + row, carry_row + k + 1, buf[pos : int(ends[k])]
            pos, row = int(ends[k]), k + 1
        carry, carry_ends, carry_row = buf[pos:], ends[row:] - pos, carry_row + row


def _float32_matrix(features: np.ndarray) -> np.ndarray:
    matrix = np.asarray(features)
    if matrix.ndim != 2:
        raise ValueError(f"features must be a 2-D array (rows x features), not {matrix.ndim}-D")
    if matrix.shape[1] == 0 and len(matrix):
        raise ValueError("features has no columns")
    matrix = matrix.astype(np.float32, copy=False)
    # NaN is a missing value, sent as an empty field (the container reads it as XGBoost's missing,
    # as training did): a history feature of a transaction without customer or terminal.
    # An infinity has no CSV form the container reads: refused.
    infinite = np.isinf(matrix)
    if infinite.any():
        row, col = np.argwhere(infinite)[0]
        raise ValueError(f"row {row}, column {col} is {matrix[row, col]}, not a finite number or missing (as float32)")
    # Row-major: orjson serialises C-contiguous arrays only, and a block of rows is then a view.
    return np.ascontiguousarray(matrix)


def format_rows(block: np.ndarray) -> bytes:
    """Rows of a C-contiguous float32 matrix as headerless CSV, each line ending in a newline, NaN as an empty field:
    orjson's JSON of the matrix (`[[a,b],[c,d]]`, float32 in shortest round-trip text) with the
    brackets turned into line breaks."""
    if not len(block):
        return b""
    # orjson writes NaN as null: the empty field the container reads as missing.
    return orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2].replace(b"],[", b"\n").replace(b"null", b"") + b"\n"


def _line_ends(text: bytes) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == ord("\n")).astype(np.int64) + 1


# -- responses ----------------------------------------------------------------------------------


def parse_scores(body: bytes, content_type: str, expected: int) -> np.ndarray:
    """Scores from an XGBoost container response: `text/csv` with one score per line or all on one
    line joined by commas, or JSON `{"predictions": [{"score": s}, ...]}` (a bare list of numbers
    too). Raises ValueError unless there is exactly one score in [0, 1] per row sent."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in (CSV, "text/plain"):
        scores = _csv_scores(body)
    elif media == "application/json" or media.endswith("+json"):
        scores = _json_scores(body)
    else:
        raise ValueError(f"unsupported response content type {content_type!r} (expected text/csv or application/json)")
    if len(scores) != expected:
        raise ValueError(
            f"the response holds {len(scores)} scores for {expected} rows "
            "(one probability per row expected: is the model's objective binary:logistic?)"
        )
    bad = ~((scores >= 0.0) & (scores <= 1.0))  # also catches NaN
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"score #{i + 1} is {scores[i]}, not a probability in [0, 1] (is the objective binary:logistic?)")
    return scores


_SCORE_COLUMN = pacsv.ReadOptions(column_names=["score"], use_threads=False)
_SCORE_TYPE = pacsv.ConvertOptions(column_types={"score": pa.float64()})


def _csv_scores(body: bytes) -> np.ndarray:
    if b"," in body:  # all on one line: one score per line for the reader
        body = body.replace(b",", b"\n")
    try:
        column = pacsv.read_csv(pa.py_buffer(body), read_options=_SCORE_COLUMN, convert_options=_SCORE_TYPE).column(0)
        if column.null_count == 0:
            return column.to_numpy()
    except pa.ArrowInvalid:
        pass
    # Error path: name the first token that is not a number (pyarrow does not say which).
    tokens = body.split()
    bad = next((i for i, t in enumerate(tokens) if not _is_float(t)), None)
    if bad is None:
        return np.array(tokens, dtype=np.float64)
    raise ValueError(f"score #{bad + 1} of the response is {tokens[bad][:40]!r}, not a number")


def _json_scores(body: bytes) -> np.ndarray:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"malformed JSON response: {err}") from err
    predictions = doc.get("predictions") if isinstance(doc, dict) else doc
    if not isinstance(predictions, list):
        raise ValueError('JSON response is not {"predictions": [...]} or a list of scores')
    out = np.empty(len(predictions), dtype=np.float64)
    for i, p in enumerate(predictions):
        value = p.get("score") if isinstance(p, dict) else p
        if type(value) not in (int, float):
            raise ValueError(f"prediction #{i + 1} of the response has score {value!r}, not a number")
        out[i] = value
    return out


def _is_float(token: bytes) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


# -- invoking the endpoint ----------------------------------------------------------------------


def score_through_endpoint(
    runtime,
    endpoint_name: str,
    features: np.ndarray,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_workers: int = 2,
    max_attempts: int = 6,
    base_delay: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[str], None] | None = None,
) -> np.ndarray:
    """One fraudScore per row of `features`, in row order.

    `runtime` is a boto3 `sagemaker-runtime` client (thread-safe, shared by the workers). Bodies
    come from `csv_batches`; up to `max_workers` requests are in flight. A request is retried up to
    `max_attempts` times in all, with exponential backoff and jitter, on throttling (429,
    ThrottlingException), server errors (5xx, ModelError whose container answered 5xx/429) and
    connection failures. A 4xx is the caller's fault: raised at once with the endpoint's message.

    boto3 retries too, inside each call (legacy mode: up to 5 attempts on throttling and 5xx), so
    the worst case is the product of both. To leave retrying to this function, build the client
    with `botocore.config.Config(retries={"total_max_attempts": 1})`; note that botocore's
    `max_attempts` counts retries after the first call, so `{"max_attempts": 1}` still means two.
    `on_retry` receives one line per retry (for the run's log).
    """
    matrix = _float32_matrix(features)
    n = len(matrix)
    scores = np.empty(n, dtype=np.float64)
    if n == 0:
        return scores
    abort = threading.Event()  # once one request has failed for good, the others stop retrying

    def score(start: int, stop: int, body: bytes) -> tuple[int, int, np.ndarray]:
        response = _invoke(runtime, endpoint_name, body, (start, stop), max_attempts, base_delay, sleep, on_retry, abort)
        try:
            values = parse_scores(response["Body"].read(), response.get("ContentType", CSV), stop - start)
        except ValueError as err:
            raise EndpointError(
                f"endpoint {endpoint_name}, rows {start}-{stop - 1}: {err}", endpoint_name=endpoint_name, rows=(start, stop)
            ) from err
        return start, stop, values

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="score") as pool:
        pending: set[Future] = set()
        covered = 0
        try:
            for start, stop, body in csv_batches(matrix, max_bytes):
                # Bounded look-ahead: formatting runs ahead of the requests by a few bodies only.
                while len(pending) >= 2 * max_workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    covered += _collect(done, scores)
                pending.add(pool.submit(score, start, stop, body))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                covered += _collect(done, scores)
        except BaseException:
            abort.set()
            for future in pending:
                future.cancel()
            raise
    if covered != n:  # csv_batches guarantees this; a silent gap would be a wrong score
        raise AssertionError(f"scored {covered} of {n} rows")
    return scores


def _collect(done: set[Future], scores: np.ndarray) -> int:
    rows = 0
    for future in done:
        start, stop, values = future.result()
        scores[start:stop] = values
        rows += stop - start
    return rows


def _invoke(
    runtime,
    endpoint_name: str,
    body: bytes,
    rows: tuple[int, int],
    max_attempts: int,
    base_delay: float,
    sleep: Callable[[float], None],
    on_retry: Callable[[str], None] | None,
    abort: threading.Event | None = None,
) -> dict[str, Any]:
    where = f"endpoint {endpoint_name}, rows {rows[0]}-{rows[1] - 1}"
    for attempt in range(1, max_attempts + 1):
        try:
            return runtime.invoke_endpoint(EndpointName=endpoint_name, ContentType=CSV, Accept=CSV, Body=body)
        except (ClientError, BotoConnectionError, HTTPClientError) as err:
            code, status, message = _describe(err)
            if not is_retryable(err) or attempt == max_attempts or (abort is not None and abort.is_set()):
                tried = f"still failing after {attempt} attempts: " if is_retryable(err) else ""
                raise EndpointError(
                    f"{where}: {tried}{code} ({status}): {message}",
                    endpoint_name=endpoint_name,
                    rows=rows,
                    code=code,
                    status=status,
                    attempts=attempt,
                ) from err
            delay = backoff_delay(attempt, base_delay)
            if on_retry is not None:
                on_retry(f"{where}: {code} ({status}), attempt {attempt} of {max_attempts}; retrying in {delay:.2f} s")
            sleep(delay)
    raise AssertionError("unreachable")


def is_retryable(err: BaseException) -> bool:
    """Throttling, 5xx and dropped connections are worth another try; any other 4xx is not."""
    if isinstance(err, (BotoConnectionError, HTTPClientError)):
        return True
    if not isinstance(err, ClientError):
        return False
    code = err.response.get("Error", {}).get("Code", "")
    if code == "ModelError":
        # The container's own status: its 5xx (e.g. a worker restarting) may pass; its 4xx won't.
        original = err.response.get("OriginalStatusCode")
        return isinstance(original, int) and (original == 429 or original >= 500)
    if code in _RETRYABLE_CODES:
        return True
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status == 429 or status >= 500


def _describe(err: BaseException) -> tuple[str, int | None, str]:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error.get("Code", "Unknown"), status, error.get("Message", str(err))
    return type(err).__name__, None, str(err)


def score_one_at_a_time(runtime, endpoint_name: str, features: np.ndarray) -> np.ndarray:
    """The original design: one InvokeEndpoint call per transaction. Kept only as the
    baseline of the scoring benchmark; production code uses `score_through_endpoint`."""
    matrix = _float32_matrix(features)
    scores = np.empty(len(matrix), dtype=np.float64)
    if not len(matrix):
        return scores
    lines = format_rows(matrix).splitlines(keepends=True)
    for i, line in enumerate(lines):
        response = _invoke(runtime, endpoint_name, line, (i, i + 1), 6, 0.2, time.sleep, None)
        scores[i] = parse_scores(response["Body"].read(), response.get("ContentType", CSV), 1)[0]
    return scores


# -- risk levels --------------------------------------------------------------------------------


def risk_levels(scores: np.ndarray, high: float = HIGH_RISK_THRESHOLD, medium: float = MEDIUM_RISK_THRESHOLD) -> np.ndarray:
    """HIGH when fraudScore >= `high` (the original design's 0.8, or the model's chosen threshold), MEDIUM
    when >= `medium` (0.5), else LOW."""
    scores = _checked_scores(scores)
    return np.where(scores >= high, HIGH, np.where(scores >= medium, MEDIUM, LOW))


def score_summary(
    scores: np.ndarray, high_threshold: float = HIGH_RISK_THRESHOLD, medium_threshold: float = MEDIUM_RISK_THRESHOLD
) -> dict[str, Any]:
    """The stage summary's risk distribution (`ScoreSummary`'s fields); average_score is None for an empty day."""
    scores = _checked_scores(scores)
    high = int((scores >= high_threshold).sum())
    medium = int(((scores >= medium_threshold) & (scores < high_threshold)).sum())
    return {
        "record_count": len(scores),
        "high_risk_count": high,
        "medium_risk_count": medium,
        "low_risk_count": len(scores) - high - medium,
        "average_score": float(scores.mean()) if len(scores) else None,
    }


def _checked_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, not {scores.ndim}-D")
    if not np.isfinite(scores).all():
        i = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(f"score #{i} is {scores[i]}: a NaN would silently count as LOW risk")
    return scores


# -- a day's scoring (daily_scores) -------------------------------------------------------------

# CloudWatch units of daily_scores' figures (the others are plain numbers).
SCORING_METRIC_UNITS = {
    "TransactionsReceived": "Count",
    "TransactionsQuarantined": "Count",
    "TransactionsScored": "Count",
    "HighRiskCount": "Count",
    "ScoringDuration": "Seconds",
}


@dataclasses.dataclass(frozen=True)
class ScoredDay:
    """What daily_scores stores and publishes: the scores table (the original design's columns:
    transactionId, fraudScore, riskLevel, modelVersion, ...), the reasons of the high-risk rows,
    the typed summary, and what its checks need (the endpoint's raw scores of the explained rows
    and their explanation)."""

    scores: pd.DataFrame
    reasons: pd.DataFrame
    summary: ScoreSummary
    explanation: reasons_lib.Explanation
    explained_raw_scores: np.ndarray
    scoring_seconds: float
    history: dict[str, Any] = dataclasses.field(default_factory=dict)  # the served history's counts, if the model has history features
    history_features: pd.DataFrame | None = None  # transactionId and the history features the model was given

    def tables(self) -> dict[str, pd.DataFrame]:
        """What daily_scores stores: scores, reasons, and the served history features (to debug a score)."""
        served = {} if self.history_features is None else {"history_features": self.history_features}
        return {"scores": self.scores, "reasons": self.reasons, **served}

    def cloudwatch_metrics(self, counts: TransactionCounts) -> dict[str, float | int | None]:
        """The FraudDetection figures of the day (units: SCORING_METRIC_UNITS)."""
        return {
            "TransactionsReceived": counts.received,
            "TransactionsQuarantined": counts.quarantined,
            "TransactionsScored": self.summary.record_count,
            "HighRiskCount": self.summary.high_risk_count,
            "HighRiskRate": self.summary.high_risk_rate,
            "AverageScore": self.summary.average_score,
            "ScoringDuration": self.scoring_seconds,
        }

    def metadata(self) -> dict[str, Any]:
        """The materialization's metadata (plain values; `main_job` and the CLI read the keys'
        constants)."""
        s = self.summary
        return {
            "scoring_seconds": self.scoring_seconds,
            "explained": s.explained,
            keys.SCORED: s.record_count,
            keys.HIGH_RISK: s.high_risk_count,
            "medium_risk": s.medium_risk_count,
            "low_risk": s.low_risk_count,
            keys.AVG_SCORE: s.average_score,
            "high_risk_rate": s.high_risk_rate or 0.0,
            keys.MODEL_VERSION: s.model_version,
            keys.ENDPOINT_NAME: s.endpoint_name,
            keys.HIGH_RISK_THRESHOLD: s.high_risk_threshold,
            "calibrated": s.calibrated,
            **self.history,
        }


def score_day(
    runtime,
    endpoint: dict[str, Any],
    package: bytes,
    transactions: pd.DataFrame,
    date: str,
    top_reasons: int = reasons_lib.DEFAULT_TOP,
    serve_history: Callable[[pd.DataFrame, int], Any] | None = None,
) -> ScoredDay:
    """Score the day's accepted `transactions` through the deployed endpoint (`endpoint`: the
    deployment pointer, with endpoint_name, model_uri, model_version, feature_names) and release
    them with the calibration map and thresholds of `package`, the model package the endpoint
    serves (the bytes at its model_uri). The high-risk rows also get their `top_reasons` top
    contributing features (TreeSHAP from that package's booster; 0: none). A model trained on
    history features gets them from `serve_history(transactions, label_delay_days)` (a
    features.serving.ServedHistory: the aggregates table's answer)."""
    from fraud_assets.lib.training.calibration import calibrate, thresholds_of
    from fraud_assets.lib.training.model import load_model_package, model_inputs

    # The package carries the training statistics the model's engineered features need, and the
    # booster the reasons come from.
    booster, model_meta = load_model_package(package)
    model_meta.setdefault("feature_names", endpoint["feature_names"])
    history: dict[str, Any] = {}
    history_features = None
    if model_meta.get("history_features"):
        if serve_history is None:
            raise ValueError("the model was trained on history features and no aggregates table was given to serve them")
        served = serve_history(transactions, int(model_meta["history_features"]["label_delay_days"]))
        transactions = transactions.join(served.features)
        history = served.metadata()
        history_features = pd.concat([transactions[[TRANSACTION_ID]], served.features], axis=1)
    features = model_inputs(transactions, model_meta)
    started = time.perf_counter()
    raw_scores = score_through_endpoint(runtime, endpoint["endpoint_name"], features)
    scoring_seconds = time.perf_counter() - started
    # The built-in XGBoost container serves the booster's raw probability; the package's
    # calibration map and thresholds (fitted in training) turn it into the released score here.
    scores = calibrate(raw_scores, model_meta.get("calibration"))
    high_threshold, medium_threshold = thresholds_of(model_meta)
    table = pd.DataFrame(
        {
            # The columns' own arrays: to_numpy() would make a Python str and a Timestamp per row.
            TRANSACTION_ID: transactions[TRANSACTION_ID].array,
            "timestamp": transactions["timestamp"].array,
            "fraudScore": scores.astype(float),
            "rawScore": raw_scores.astype(float),
            "riskLevel": risk_levels(scores, high_threshold, medium_threshold),
            "scoringTimestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "modelVersion": endpoint["model_version"],
            "endpointName": endpoint["endpoint_name"],
        }
    )
    high = np.flatnonzero(table["riskLevel"].to_numpy() == HIGH) if top_reasons else np.empty(0, dtype=int)
    names = model_meta["feature_names"]
    explanation = reasons_lib.explain(booster, features[high], names)
    reasons = reasons_lib.reason_table(table[TRANSACTION_ID].iloc[high].to_numpy(), features[high], explanation, names, top_reasons)
    summary = ScoreSummary(
        date=date,
        model_version=endpoint["model_version"],
        model_uri=endpoint["model_uri"],
        endpoint_name=endpoint["endpoint_name"],
        **score_summary(scores, high_threshold, medium_threshold),
        explained=len(high),
        top_reasons=top_reasons,
        high_risk_threshold=high_threshold,
        medium_risk_threshold=medium_threshold,
        calibrated=bool(model_meta.get("calibration")),
    )
    return ScoredDay(table, reasons, summary, explanation, raw_scores[high], scoring_seconds, history, history_features)
