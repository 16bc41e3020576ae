"""Gates on the daily data, one evaluation per partition: accounting and schema block scoring;
scoring completeness blocks storing and alerting; drift is a warning the UI shows, never a stop."""

import numpy as np
from dagster import AssetCheckResult, AssetCheckSeverity, AssetIn, asset_check

from fraud_assets.defs.common import daily_partitions
from fraud_assets.defs.resources import AwsClients, FraudPlatform
from fraud_assets.lib import score_store
from fraud_assets.lib.config import FEATURE_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.storage import StageResult


@asset_check(asset="daily_transactions", partitions_def=daily_partitions, blocking=True,
             description="received = accepted + quarantined: no row is lost.")
def row_accounting(daily_transactions: StageResult) -> AssetCheckResult:
    summary = daily_transactions.summary
    accepted, quarantined = daily_transactions.tables["transactions"], daily_transactions.tables["quarantine"]
    return AssetCheckResult(
        passed=summary["received"] == len(accepted) + len(quarantined) == summary["accepted"] + summary["quarantined"],
        metadata={"received": summary["received"], "accepted": len(accepted), "quarantined": len(quarantined)},
    )


@asset_check(asset="daily_transactions", partitions_def=daily_partitions, blocking=True,
             description="Accepted rows carry every model feature as a finite number, and unique transaction ids.")
def schema_and_values(daily_transactions: StageResult) -> AssetCheckResult:
    accepted = daily_transactions.tables["transactions"]
    missing = [c for c in FEATURE_COLUMNS if c not in accepted.columns]
    present = [c for c in FEATURE_COLUMNS if c in accepted.columns]
    non_finite = int((~np.isfinite(accepted[present].to_numpy(dtype=float))).sum())
    duplicates = int(accepted[TRANSACTION_ID].duplicated().sum())
    return AssetCheckResult(
        passed=not missing and non_finite == 0 and duplicates == 0,
        metadata={"missing_features": str(missing), "non_finite_values": non_finite, "duplicate_ids": duplicates},
    )


@asset_check(asset="daily_scores", partitions_def=daily_partitions, blocking=True,
             additional_ins={"daily_transactions": AssetIn("daily_transactions")},
             description="Every accepted transaction scored exactly once, with a score in [0, 1].")
def every_transaction_scored_once(daily_scores: StageResult, daily_transactions: StageResult) -> AssetCheckResult:
    scores = daily_scores.tables["scores"]
    accepted_ids = set(daily_transactions.tables["transactions"][TRANSACTION_ID])
    scored_ids = scores[TRANSACTION_ID]
    duplicates = int(scored_ids.duplicated().sum())
    missing = len(accepted_ids - set(scored_ids))
    extra = len(set(scored_ids) - accepted_ids)
    out_of_range = int(((scores["fraudScore"] < 0) | (scores["fraudScore"] > 1) | scores["fraudScore"].isna()).sum())
    return AssetCheckResult(
        passed=duplicates == missing == extra == out_of_range == 0,
        metadata={"scored": len(scores), "accepted": len(accepted_ids), "duplicates": duplicates, "unscored": missing,
                  "unexpected": extra, "out_of_range": out_of_range},
    )


@asset_check(asset="stored_scores", partitions_def=daily_partitions, additional_ins={"daily_scores": AssetIn("daily_scores")},
             description="Every scored transaction of the day is in DynamoDB exactly once, with its fraudScore and "
             "modelVersion (read back by key with consistent reads).")
def stored_count_matches_scored(stored_scores: StageResult, daily_scores: StageResult, aws: AwsClients,
                                platform: FraudPlatform) -> AssetCheckResult:
    items = score_store.to_items(daily_scores.tables["scores"], stored_scores.summary["date"])
    result = score_store.verify_stored(aws.client("dynamodb"), platform.scores_table, items)
    return AssetCheckResult(
        passed=result.found == result.expected and not result.mismatched,
        metadata={"stored": result.found, "scored": result.expected, "missing": len(result.missing),
                  "mismatched": len(result.mismatched), "examples": str((result.missing + result.mismatched)[:5])},
    )


def _drift_warning(name: str, key: str, threshold: float, description: str):
    @asset_check(asset="drift_metrics", name=name, partitions_def=daily_partitions, description=description)
    def _check(drift_metrics: StageResult) -> AssetCheckResult:
        value = drift_metrics.summary.get(key)
        return AssetCheckResult(
            severity=AssetCheckSeverity.WARN,
            passed=value is None or value <= threshold,
            metadata={"value": value if value is not None else float("nan"), "threshold": threshold},
            description=drift_metrics.summary.get("reason") if value is None else None,
        )

    return _check


drift_warnings = [
    _drift_warning("average_score_drift", "avgScoreDrift", 0.1, "Average fraudScore within 0.1 of the 30-day baseline."),
    _drift_warning("high_risk_share_drift", "highRiskDrift", 0.05, "High-risk share within 0.05 of the 30-day baseline."),
    _drift_warning("score_distribution_psi", "scorePsi", 0.25, "PSI of the day's scores against validation below 0.25."),
    _drift_warning("train_serve_skew", "maxFeaturePsi", 0.25,
                   "Train/serve skew: PSI of each top model feature, the day's batch against training, below 0.25."),
]
