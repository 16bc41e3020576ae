"""Gates on the daily data: accounting and schema block scoring; scoring completeness blocks
storing and alerting; drift is a warning the UI shows, never a stop."""


import numpy as np
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetIn, asset_check, multi_asset_check

from fraud_assets.defs.resources import AwsClients, FraudPlatform
from fraud_assets.lib import score_store
from fraud_assets.lib.config import FEATURE_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.storage import StageResult


@multi_asset_check(
    specs=[
        AssetCheckSpec("row_accounting", asset="daily_transactions", blocking=True,
                       description="received = accepted + quarantined: no row is lost."),
        AssetCheckSpec("schema_and_values", asset="daily_transactions", blocking=True,
                       description="Accepted rows carry every model feature as a finite number and unique transaction ids."),
    ],
    ins={"daily_transactions": AssetIn("daily_transactions")},
)
def daily_transactions_checks(daily_transactions: StageResult):
    summary = daily_transactions.summary
    accepted, quarantined = daily_transactions.tables["transactions"], daily_transactions.tables["quarantine"]
    accounted = len(accepted) + len(quarantined)
    yield AssetCheckResult(
        check_name="row_accounting", passed=summary["received"] == accounted == summary["accepted"] + summary["quarantined"],
        metadata={"received": summary["received"], "accepted": len(accepted), "quarantined": len(quarantined)},
    )
    missing = [c for c in FEATURE_COLUMNS if c not in accepted.columns]
    non_finite = int((~np.isfinite(accepted[[c for c in FEATURE_COLUMNS if c in accepted.columns]].to_numpy(dtype=float))).sum())
    duplicates = int(accepted[TRANSACTION_ID].duplicated().sum())
    yield AssetCheckResult(
        check_name="schema_and_values", passed=not missing and non_finite == 0 and duplicates == 0,
        metadata={"missing_features": str(missing), "non_finite_values": non_finite, "duplicate_ids": duplicates},
    )


@asset_check(asset="daily_scores", blocking=True, additional_ins={"daily_transactions": AssetIn("daily_transactions")},
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


@asset_check(asset="stored_scores", additional_ins={"daily_scores": AssetIn("daily_scores")},
             description="DynamoDB holds exactly one item per scored transaction of the day (counted through the GSI).")
def stored_count_matches_scored(context, stored_scores: StageResult, daily_scores: StageResult, aws: AwsClients,
                                platform: FraudPlatform) -> AssetCheckResult:
    date = stored_scores.summary["date"]
    stored = score_store.count_items_for_date(aws.client("dynamodb"), platform.scores_table, platform.scores_gsi, date)
    scored = len(daily_scores.tables["scores"])
    return AssetCheckResult(passed=stored == scored, metadata={"stored": stored, "scored": scored})


@multi_asset_check(
    specs=[
        AssetCheckSpec("average_score_drift", asset="drift_metrics", description="Average fraudScore within 0.1 of the 30-day baseline."),
        AssetCheckSpec("high_risk_share_drift", asset="drift_metrics", description="High-risk share within 0.05 of the 30-day baseline."),
        AssetCheckSpec("score_distribution_psi", asset="drift_metrics", description="PSI of the day's scores against validation < 0.25."),
    ],
    ins={"drift_metrics": AssetIn("drift_metrics")},
)
def drift_warnings(drift_metrics: StageResult):
    m = drift_metrics.summary
    enough = m.get("baseline") is not None
    for name, key, threshold in (("average_score_drift", "avgScoreDrift", 0.1), ("high_risk_share_drift", "highRiskDrift", 0.05)):
        value = m.get(key)
        yield AssetCheckResult(
            check_name=name, severity=AssetCheckSeverity.WARN, passed=not enough or value is None or value <= threshold,
            metadata={"drift": value if value is not None else float("nan"), "threshold": threshold},
            description=None if enough else m.get("reason"),
        )
    psi = m.get("scorePsi")
    yield AssetCheckResult(
        check_name="score_distribution_psi", severity=AssetCheckSeverity.WARN, passed=psi is None or psi < 0.25,
        metadata={"psi": psi if psi is not None else float("nan")},
    )
