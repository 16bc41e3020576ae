"""How an experiment validates a trial: the random split, or prequential folds in time.

- `random`: the train and validation splits as given (the pipeline's hash-based 70/15/15); one fold.
- `prequential` (the Fraud Detection Handbook's validation, ch. 5.2): the train and validation
  splits together, ordered in time, cut into blocks of `block_days`. Fold k (0 = the most recent)
  validates on the k-th block counted back from the end of the data, after a gap of `delay_blocks`
  (labels arrive late: what happened just before the validation period is not yet known when a
  model is trained), and trains on the `train_blocks` before that gap. Each fold is the previous one
  shifted back by one block. The handbook's default is 7-day blocks, one each, 4 folds: six weeks
  of data. Results are reported as the mean and spread across folds.

The time axis is `timestamp` when the data has one (labelled daily transactions), else the Kaggle
schema's `Time` (seconds from the start of the data). The axis runs from the hour its first row
falls in to the end of the hour its last row falls in, so data of exactly two days (Kaggle's Time
stops 8 s short of 48 h) spans 48 hours and six 8-hour blocks fit.

The test split is never used: it stays held out for the training gates.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from fraud_assets.lib.config import LABEL_COLUMN, TRANSACTION_ID
from fraud_assets.lib.training.splits import ID_PREFIX

RANDOM, PREQUENTIAL = "random", "prequential"
VALIDATIONS = (RANDOM, PREQUENTIAL)
SECONDS_PER_DAY = 86_400
SECONDS_PER_HOUR = 3_600
DEFAULT_BLOCK_DAYS = 7.0
DEFAULT_FOLDS = 4
_RAW_ID = re.compile(re.escape(ID_PREFIX) + r"[0-9]{9,}")


class ValidationError(ValueError):
    """A validation that cannot be carried out on this data (refused before any trial runs)."""


@dataclasses.dataclass(frozen=True)
class ValidationSpec:
    kind: str = RANDOM
    block_days: float = DEFAULT_BLOCK_DAYS
    n_folds: int = DEFAULT_FOLDS
    train_blocks: int = 1
    delay_blocks: int = 1

    def __post_init__(self):
        if self.kind not in VALIDATIONS:
            raise ValidationError(f"validation must be one of {VALIDATIONS}, got {self.kind!r}")
        if self.kind == PREQUENTIAL:
            if not (isinstance(self.block_days, (int, float)) and math.isfinite(self.block_days) and self.block_days > 0):
                raise ValidationError(f"block_days must be a positive number of days, got {self.block_days!r}")
            for name in ("n_folds", "train_blocks"):
                value = getattr(self, name)
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValidationError(f"{name} must be a positive integer, got {value!r}")
            if not isinstance(self.delay_blocks, int) or isinstance(self.delay_blocks, bool) or self.delay_blocks < 0:
                raise ValidationError(f"delay_blocks must be an integer >= 0, got {self.delay_blocks!r}")

    @property
    def block_seconds(self) -> float:
        return self.block_days * SECONDS_PER_DAY

    @property
    def blocks_needed(self) -> int:
        return self.n_folds + self.train_blocks + self.delay_blocks

    def record(self) -> dict[str, Any]:
        """What config.json and every trial record name as the experiment's validation."""
        if self.kind == RANDOM:
            return {"kind": RANDOM, "folds": 1, "description": "the pipeline's random (hashed) train/validation split"}
        return {
            "kind": PREQUENTIAL,
            "block_days": self.block_days,
            "folds": self.n_folds,
            "train_blocks": self.train_blocks,
            "delay_blocks": self.delay_blocks,
            "validation_blocks": 1,
            "description": f"{self.n_folds} time-ordered folds of {self.train_blocks} train / {self.delay_blocks} delay / 1 validation "
            f"block(s) of {_days(self.block_days)}, each shifted back one block",
        }


@dataclasses.dataclass(frozen=True)
class Fold:
    """Row positions (into the data the folds were made from) and the time range of each part."""

    index: int
    train: np.ndarray
    validation: np.ndarray
    train_range: tuple[float, float] | None = None
    delay_range: tuple[float, float] | None = None
    validation_range: tuple[float, float] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "fold": self.index,
            "train_rows": int(len(self.train)),
            "validation_rows": int(len(self.validation)),
            **{
                f"{n}_range": list(r)
                for n, r in (("train", self.train_range), ("delay", self.delay_range), ("validation", self.validation_range))
                if r
            },
        }


def time_axis(frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Seconds along the data's time axis, and the axis' name."""
    if "timestamp" in frame.columns:
        from fraud_assets.lib.features.history import timestamp_micros

        micros = timestamp_micros(frame["timestamp"])
        if (micros == np.iinfo(np.int64).min).any():
            raise ValidationError("prequential validation needs a time for every row; some rows have no timestamp")
        return micros / 1e6, "timestamp"
    if "Time" not in frame.columns:
        raise ValidationError("prequential validation needs a time axis: the data has neither `timestamp` nor `Time`")
    if TRANSACTION_ID in frame.columns:
        # Labelled daily rows joined into the training data carry their time of day in Time, not the
        # time since the start: ordering by it would mix days. Refuse rather than validate on a wrong order.
        ids = frame[TRANSACTION_ID].astype(str)
        daily = ~ids.str.fullmatch(_RAW_ID.pattern)
        if daily.any():
            raise ValidationError(
                f"prequential validation orders rows by Time, which is the time since the start only for the raw history; "
                f"{int(daily.sum())} rows (e.g. {ids[daily].iloc[0]!r}) are labelled daily transactions whose Time is their time "
                "of day. Validate them on data with a `timestamp` column, or use validation 'random'"
            )
    time = frame["Time"].to_numpy(dtype="float64")
    if not np.isfinite(time).all():
        raise ValidationError("prequential validation needs a finite Time on every row")
    return time, "Time"


def prequential_folds(times: np.ndarray, spec: ValidationSpec, axis: str = "Time") -> list[Fold]:
    """The folds over rows at `times` (seconds); raises ValidationError naming the block size and
    the data span when the folds do not fit in the data."""
    times = np.asarray(times, dtype="float64")
    if len(times) == 0:
        raise ValidationError("prequential validation on no rows")
    start = math.floor(times.min() / SECONDS_PER_HOUR) * SECONDS_PER_HOUR
    end = (math.floor(times.max() / SECONDS_PER_HOUR) + 1) * SECONDS_PER_HOUR
    block = spec.block_seconds
    needed = spec.blocks_needed * block
    # A whisker of tolerance: block_days=1/3 times 6 blocks must fit 48 h despite float rounding.
    if needed > (end - start) * (1 + 1e-9):
        raise ValidationError(
            f"prequential folds do not fit: {spec.n_folds} folds of {spec.train_blocks} train + {spec.delay_blocks} delay + 1 validation "
            f"block(s) of {_days(spec.block_days)} need {_days(needed / SECONDS_PER_DAY)} of data, and the data ({axis}) spans "
            f"{_days((end - start) / SECONDS_PER_DAY)}; use a smaller block_days or fewer folds"
        )
    folds = []
    for k in range(spec.n_folds):
        v_end = end - k * block
        v_start = v_end - block
        t_end = v_start - spec.delay_blocks * block
        t_start = t_end - spec.train_blocks * block
        folds.append(
            Fold(
                index=k,
                train=np.flatnonzero((times >= t_start) & (times < t_end)),
                validation=np.flatnonzero((times >= v_start) & (times < v_end)),
                train_range=(t_start, t_end),
                delay_range=(t_end, v_start),
                validation_range=(v_start, v_end),
            )
        )
    return folds


def check_folds(folds: Sequence[Fold], labels: np.ndarray, axis: str = "") -> None:
    """Every fold's train and validation part must hold both classes: a part without fraud can
    neither teach nor measure anything. Raises naming the fold, the part and its time range."""
    labels = np.asarray(labels)
    for fold in folds:
        for part, rows, span in (("train", fold.train, fold.train_range), ("validation", fold.validation, fold.validation_range)):
            frauds = int(labels[rows].sum()) if len(rows) else 0
            if frauds == 0 or frauds == len(rows):
                where = f" ({axis} {span[0]:g}..{span[1]:g} s)" if span else ""
                what = "no rows" if len(rows) == 0 else ("no fraud" if frauds == 0 else "only fraud")
                raise ValidationError(f"validation fold {fold.index}: its {part} part{where} has {what} ({len(rows)} rows, {frauds} fraud)")


def make_folds(train: pd.DataFrame, validation: pd.DataFrame, spec: ValidationSpec) -> tuple[pd.DataFrame, list[Fold]]:
    """The data the folds index into, and the folds, checked (ValidationError before any trial)."""
    if spec.kind == RANDOM:
        data = pd.concat([train, validation], ignore_index=True, copy=False)
        folds = [Fold(0, np.arange(len(train)), np.arange(len(train), len(data)))]
        check_folds(folds, data[LABEL_COLUMN].to_numpy())
        return data, folds
    data = pd.concat([train, validation], ignore_index=True, copy=False)
    times, axis = time_axis(data)
    folds = prequential_folds(times, spec, axis)
    check_folds(folds, data[LABEL_COLUMN].to_numpy(), axis)
    return data, folds


def _days(days: float) -> str:
    hours = days * 24
    if days >= 1 and abs(days - round(days)) < 1e-9:
        return f"{round(days)} day{'s' if round(days) != 1 else ''}"
    return f"{hours:.4g} hours"
