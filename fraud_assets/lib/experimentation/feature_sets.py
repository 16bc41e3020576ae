"""Feature sets an experiment compares, built per fold the way the pipeline builds them.

- `raw`: the Kaggle schema's Time, V1..V28, Amount (what the pipeline trains on by default);
- `engineered`: raw plus hour of day, night flag, log amount and amount z-score
  (lib/training/features.py, what FRAUD_FEATURE_ENGINEERING=1 trains on);
- `history`: engineered plus the history features (lib/features/history.py: the customer's
  recent counts and mean amounts, the terminal's label-delayed counts and fraud rates); needs
  `customerId`, `merchant` and `timestamp` (labelled daily transactions have them).

Statistics (amount mean and spread) are fitted on each fold's train part only, as training fits
them on the train split: the validation part must not leak into them. History features are point
in time: a row's come from earlier rows of the fold (train and validation parts alike) and from
labels at least `label_delay_days` old (the FeatureEngineering resource's, as training and serving
use it), as serving would have them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.config import CUSTOMER_FIELDS, FEATURE_COLUMNS, LABEL_COLUMN
from fraud_assets.lib.features.history import history_features
from fraud_assets.lib.training.features import add_features, engineered_feature_names, fit_feature_stats, has_customer_fields

RAW, ENGINEERED, HISTORY = "raw", "engineered", "history"
FEATURE_SETS = (RAW, ENGINEERED, HISTORY)


class FeatureSetError(ValueError):
    pass


def check_feature_sets(names: Sequence[str], data: pd.DataFrame) -> list[str]:
    """The requested feature sets, refused at once when unknown, repeated or not computable here."""
    if isinstance(names, str) or not names:
        raise FeatureSetError(f"feature_sets must be a non-empty list of {FEATURE_SETS}, got {names!r}")
    names = list(names)
    unknown = [n for n in names if n not in FEATURE_SETS]
    if unknown:
        raise FeatureSetError(f"unknown feature set {unknown[0]!r}; known: {', '.join(FEATURE_SETS)}")
    if len(set(names)) != len(names):
        raise FeatureSetError(f"feature_sets names one twice: {names}")
    missing = [c for c in FEATURE_COLUMNS if c not in data.columns]
    if missing:
        raise FeatureSetError(f"the data lacks feature columns {missing}")
    if HISTORY in names and not has_customer_fields(data):
        lacking = [c for c in CUSTOMER_FIELDS if c not in data.columns]
        raise FeatureSetError(
            f"feature set 'history' needs columns {list(CUSTOMER_FIELDS)}; the data lacks {lacking} "
            "(the pipeline's splits carry the raw schema only; labelled daily transactions have them)"
        )
    return names


def build(
    feature_set: str, train: pd.DataFrame, validation: pd.DataFrame, label_delay_days: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(train, validation) as float32 feature columns plus Class, and the feature names."""
    if feature_set == RAW:
        names = list(FEATURE_COLUMNS)
    else:
        if feature_set == HISTORY:
            train, validation = _with_history(train, validation, label_delay_days)
        elif feature_set != ENGINEERED:
            raise FeatureSetError(f"unknown feature set {feature_set!r}")
        stats = fit_feature_stats(train)
        train, validation = add_features(train, stats), add_features(validation, stats)
        names = engineered_feature_names(feature_set == HISTORY)
    return _compact(train, names), _compact(validation, names), names


def _with_history(train: pd.DataFrame, validation: pd.DataFrame, label_delay_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both parts with their history features, computed over the two together: a validation row's
    past includes the train part's rows before it."""
    both = pd.concat([train, validation], ignore_index=True)
    both = pd.concat([both, history_features(both, label_delay_days)], axis=1)
    return both.iloc[: len(train)], both.iloc[len(train) :]


def _compact(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(frame[names].to_numpy(dtype=np.float32), columns=names)
    out[LABEL_COLUMN] = frame[LABEL_COLUMN].to_numpy(dtype=np.int64)
    return out
