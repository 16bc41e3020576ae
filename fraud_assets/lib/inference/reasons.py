"""Why a transaction was flagged: per-feature contributions to its score by TreeSHAP, xgboost's
own `pred_contribs`, from exactly the booster that scored it.

Contributions are in margin (log-odds) space: for each row they plus the bias column add up to the
raw margin, and sigmoid(margin) is the raw probability the endpoint serves. Only the high-risk
rows are explained: that is what an analyst reads, and it keeps the cost to a few hundred rows a day.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.config import TRANSACTION_ID

if TYPE_CHECKING:
    import xgboost as xgb

DEFAULT_TOP = 3
REASON_COLUMNS = (TRANSACTION_ID, "rank", "feature", "value", "contribution")
# float32 arithmetic over a few hundred trees: sums agree to ~1e-5 of the margin's size.
ADDITIVITY_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-5


@dataclasses.dataclass(frozen=True)
class Explanation:
    contributions: np.ndarray  # rows x (features + 1); the last column is the bias
    margins: np.ndarray  # the raw margin of each row (output_margin=True)

    @property
    def probabilities(self) -> np.ndarray:
        """The raw (uncalibrated) probability: what the endpoint returns for the same rows."""
        return 1.0 / (1.0 + np.exp(-self.margins.astype(np.float64)))

    @property
    def additivity_error(self) -> float:
        """max |Σ contributions + bias − margin| over the rows (0.0 for no rows)."""
        if not len(self.margins):
            return 0.0
        return float(np.max(np.abs(self.contributions.astype(np.float64).sum(axis=1) - self.margins)))


def explain(booster: xgb.Booster, features: np.ndarray, feature_names: Sequence[str]) -> Explanation:
    """TreeSHAP contributions and margins of `features` (rows x model features, float32 as the
    endpoint receives them)."""
    matrix = np.asarray(features, dtype=np.float32).reshape(-1, len(feature_names))
    if not len(matrix):  # a day without high-risk rows: xgboost would warn about an empty matrix
        return Explanation(contributions=np.empty((0, len(feature_names) + 1), np.float32), margins=np.empty(0))
    import xgboost as xgb

    dmatrix = xgb.DMatrix(matrix, feature_names=list(feature_names))
    contributions = booster.predict(dmatrix, pred_contribs=True, validate_features=False)
    margins = booster.predict(dmatrix, output_margin=True, validate_features=False)
    return Explanation(contributions=np.asarray(contributions), margins=np.asarray(margins, dtype=np.float64))


def reason_table(
    transaction_ids: Sequence[str], features: np.ndarray, explanation: Explanation, feature_names: Sequence[str], top: int = DEFAULT_TOP
) -> pd.DataFrame:
    """Long format, one row per (transaction, rank): the `top` features that push the score up
    most (largest contribution first; ties by feature order), with the feature's value."""
    n_rows, n_features = len(transaction_ids), len(feature_names)
    if explanation.contributions.shape != (n_rows, n_features + 1):
        raise ValueError(f"contributions of shape {explanation.contributions.shape} for {n_rows} rows of {n_features} features")
    top = min(top, n_features)
    if n_rows == 0 or top <= 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(REASON_COLUMNS, (str, int, str, float, float))})
    contributions = explanation.contributions[:, :n_features].astype(np.float64)
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :top]
    rows = np.repeat(np.arange(n_rows), top)
    columns = order.ravel()
    values = np.asarray(features, dtype=np.float32).reshape(n_rows, n_features)
    return pd.DataFrame(
        {
            TRANSACTION_ID: np.asarray(transaction_ids, dtype=object)[rows],
            "rank": np.tile(np.arange(1, top + 1), n_rows),
            "feature": np.asarray(feature_names, dtype=object)[columns],
            "value": values[rows, columns].astype(np.float64),
            "contribution": contributions[rows, columns],
        }
    )


def reasons_by_transaction(table: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    """transactionId -> [{feature, value, contribution}, ...] in rank order (what an alert and a
    FraudScores item carry as `topReasons`)."""
    if table is None or table.empty:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    ordered = table.sort_values([TRANSACTION_ID, "rank"], kind="mergesort")
    for tid, feature, value, contribution in zip(
        ordered[TRANSACTION_ID].astype(str),
        ordered["feature"].astype(str),
        ordered["value"].astype(float),
        ordered["contribution"].astype(float),
    ):
        out.setdefault(tid, []).append({"feature": feature, "value": round(value, 6), "contribution": round(contribution, 6)})
    return out
