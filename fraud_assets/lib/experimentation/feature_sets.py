"""Feature sets an experiment compares, built per fold the way the pipeline builds them.

- `raw`: the Kaggle schema's Time, V1..V28, Amount (what the pipeline trains on by default);
- `engineered`: raw plus hour of day, night flag, log amount and amount z-score
  (lib/training/features.py, what FRAUD_FEATURE_ENGINEERING=1 trains on);
- `history`: engineered plus the customer's 1 h / 24 h velocity and the merchant's smoothed
  fraud rate; needs `customerId`, `merchant` and `timestamp` (labelled daily transactions have them).

Statistics (amount mean and spread, merchant fraud rates) are fitted on each fold's train part
only, as training fits them on the train split: the validation part must not leak into them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN
from fraud_assets.lib.training.features import (
    CUSTOMER_FIELDS,
    add_features,
    engineered_feature_names,
    fit_feature_stats,
    has_customer_fields,
)

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


def build(feature_set: str, train: pd.DataFrame, validation: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(train, validation) as float32 feature columns plus Class, and the feature names."""
    if feature_set == RAW:
        names = list(FEATURE_COLUMNS)
    else:
        if feature_set == ENGINEERED:
            # Without the customer fields add_features derives no history features.
            train = train.drop(columns=[c for c in CUSTOMER_FIELDS if c in train.columns])
            validation = validation.drop(columns=[c for c in CUSTOMER_FIELDS if c in validation.columns])
        elif feature_set != HISTORY:
            raise FeatureSetError(f"unknown feature set {feature_set!r}")
        stats = fit_feature_stats(train)
        train, validation = add_features(train, stats), add_features(validation, stats)
        names = engineered_feature_names(feature_set == HISTORY)
    return _compact(train, names), _compact(validation, names), names


def _compact(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(frame[names].to_numpy(dtype=np.float32), columns=names)
    out[LABEL_COLUMN] = frame[LABEL_COLUMN].to_numpy(dtype=np.int64)
    return out
