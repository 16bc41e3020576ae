"""The inference stage summaries (`output.json`) that another asset reads, typed: one shape per
stage, snake_case like the original design's stage outputs (high_risk_count, record_count).

A writer builds the dataclass and stores `to_summary()`; a reader takes `from_summary(...)`, which
raises `MissingSummaryKey` naming the stage and the key when a field is absent (a summary written
before a rename, or by another version): never a silent None further down.

camelCase stays only where the original design's shape says so, and none of those are here: the
scores table and FraudScores items (transactionId, fraudScore, riskLevel, modelVersion), the SNS
alert messages and `metrics/{date}.json` (drift_metrics' summary is that record, see `drift.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping, TypeVar

S = TypeVar("S", bound="StageSummary")


class MissingSummaryKey(KeyError):
    """A stage summary lacks a field its shape promises: the writer and the reader disagree."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class StageSummary:
    """Mixin for a frozen dataclass: `STAGE` names the asset that writes it (for the errors)."""

    STAGE: ClassVar[str]

    def to_summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_summary(cls: type[S], summary: Mapping[str, Any]) -> S:
        """The typed summary; extra keys (e.g. the IO manager's `artifacts`) are ignored, a missing
        one raises MissingSummaryKey naming it."""
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        missing = [n for n in names if n not in summary]
        if missing:
            raise MissingSummaryKey(
                f"{cls.STAGE}'s summary (output.json) has no {', '.join(repr(m) for m in missing)} (has {sorted(summary)}): "
                f"written by another version of {cls.STAGE}? Materialise {cls.STAGE} for this partition again."
            )
        return cls(**{n: summary[n] for n in names})


@dataclasses.dataclass(frozen=True)
class TransactionCounts(StageSummary):
    """daily_transactions: received = accepted + quarantined, always."""

    STAGE: ClassVar[str] = "daily_transactions"
    date: str
    source: str
    received: int
    accepted: int
    quarantined: int


@dataclasses.dataclass(frozen=True)
class ScoreSummary(StageSummary):
    """daily_scores: the model and endpoint that scored the day, the thresholds it was scored at
    (stored, alerted and measured at these too) and the risk distribution."""

    STAGE: ClassVar[str] = "daily_scores"
    date: str
    model_version: str
    model_uri: str
    endpoint_name: str
    record_count: int
    high_risk_count: int
    medium_risk_count: int
    low_risk_count: int
    average_score: float | None  # None on a day with no scores
    explained: int
    top_reasons: int
    high_risk_threshold: float
    medium_risk_threshold: float
    calibrated: bool

    @property
    def high_risk_rate(self) -> float | None:
        return self.high_risk_count / self.record_count if self.record_count else None

    def risk_distribution(self) -> dict[str, int]:
        return {
            "high_risk_count": self.high_risk_count,
            "medium_risk_count": self.medium_risk_count,
            "low_risk_count": self.low_risk_count,
        }


@dataclasses.dataclass(frozen=True)
class AlertSummary(StageSummary):
    """fraud_alerts: what was alerted, which messages this run sent or found already sent, and what
    the alert budget held back."""

    STAGE: ClassVar[str] = "fraud_alerts"
    date: str
    high_risk_count: int
    alerts_sent: int  # messages this run published
    batch_count: int  # messages the day's alerts make
    sent_message_keys: list[str]
    skipped_message_keys: list[str]
    # The high-risk transactions the alert budget kept out of the messages (high_risk_count counts
    # them too) and the budget capped at (None: not capped).
    alerts_held_back: int
    alert_budget: int | None


@dataclasses.dataclass(frozen=True)
class LabelledSummary(StageSummary):
    """labelled_scores: the label file read (None: none yet), the endpoint and thresholds the day
    was scored at (what its quality is measured at), and the label file's counts."""

    STAGE: ClassVar[str] = "labelled_scores"
    date: str
    labels_source: dict[str, Any] | None  # {"uri", "etag", "version_id"}
    endpoint_name: str
    high_risk_threshold: float
    medium_risk_threshold: float
    scored: int
    labelled: int
    source: str
    received: int
    accepted: int
    quarantined: int
    fraud: int
    quarantine_checks: dict[str, int]
