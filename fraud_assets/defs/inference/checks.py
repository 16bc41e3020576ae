"""Gates on the daily data, evaluated in the step of the asset they guard (`check_specs`):
accounting and schema block scoring; scoring completeness blocks storing and alerting; drift is a
warning the UI shows, never a stop."""

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity

from fraud_assets.defs.common import daily_check
from fraud_assets.lib.config import FEATURE_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.inference import drift as drift_lib
from fraud_assets.lib.inference.drift import DRIFT_WARNINGS
from fraud_assets.lib.inference.score_store import StoredCheck

daily_transaction_check_specs = [
    daily_check(
        "row_accounting", asset="daily_transactions", blocking=True, description="received = accepted + quarantined: no row is lost."
    ),
    daily_check(
        "schema_and_values",
        asset="daily_transactions",
        blocking=True,
        description="Accepted rows carry every model feature as a finite number, and unique transaction ids.",
    ),
]


def row_accounting(received: int, accepted: pd.DataFrame, quarantined: pd.DataFrame) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="row_accounting",
        passed=received == len(accepted) + len(quarantined),
        metadata={"received": received, "accepted": len(accepted), "quarantined": len(quarantined)},
    )


def schema_and_values(accepted: pd.DataFrame) -> AssetCheckResult:
    missing = [c for c in FEATURE_COLUMNS if c not in accepted.columns]
    present = [c for c in FEATURE_COLUMNS if c in accepted.columns]
    non_finite = int((~np.isfinite(accepted[present].to_numpy(dtype=float))).sum())
    duplicates = int(accepted[TRANSACTION_ID].duplicated().sum())
    return AssetCheckResult(
        check_name="schema_and_values",
        passed=not missing and non_finite == 0 and duplicates == 0,
        metadata={"missing_features": str(missing), "non_finite_values": non_finite, "duplicate_ids": duplicates},
    )


daily_score_check_specs = [
    daily_check(
        "every_transaction_scored_once",
        asset="daily_scores",
        blocking=True,
        description="Every accepted transaction scored exactly once, with a score in [0, 1].",
    ),
    daily_check(
        "reasons_match_endpoint",
        asset="daily_scores",
        blocking=True,
        description="The high-risk rows' reasons come from the model that scored them: the in-process score equals "
        "the endpoint's and TreeSHAP contributions + bias add up to the margin.",
    ),
]


def every_transaction_scored_once(scores: pd.DataFrame, accepted: pd.DataFrame) -> AssetCheckResult:
    # Set differences over whole columns (hashed in Arrow/pandas), not Python sets of a day's ids.
    accepted_ids = pd.Series(accepted[TRANSACTION_ID].unique())
    scored_ids = scores[TRANSACTION_ID]
    duplicates = int(scored_ids.duplicated().sum())
    scored_unique = pd.Series(scored_ids.unique())
    missing = int((~accepted_ids.isin(scored_unique)).sum())
    extra = int((~scored_unique.isin(accepted_ids)).sum())
    out_of_range = int(((scores["fraudScore"] < 0) | (scores["fraudScore"] > 1) | scores["fraudScore"].isna()).sum())
    return AssetCheckResult(
        check_name="every_transaction_scored_once",
        passed=duplicates == missing == extra == out_of_range == 0,
        metadata={
            "scored": len(scores),
            "accepted": len(accepted_ids),
            "duplicates": duplicates,
            "unscored": missing,
            "unexpected": extra,
            "out_of_range": out_of_range,
        },
    )


def reasons_match_endpoint(explanation, endpoint_scores: np.ndarray) -> AssetCheckResult:
    """The reasons come from the model that scored: the in-process probability of each explained
    row equals the endpoint's, and each row's contributions plus bias add up to its margin."""
    from fraud_assets.lib.inference.reasons import ADDITIVITY_TOLERANCE, SCORE_TOLERANCE

    score_diff = float(np.max(np.abs(explanation.probabilities - endpoint_scores))) if len(endpoint_scores) else 0.0
    additivity = explanation.additivity_error
    return AssetCheckResult(
        check_name="reasons_match_endpoint",
        passed=score_diff <= SCORE_TOLERANCE and additivity <= ADDITIVITY_TOLERANCE,
        metadata={
            "explained": len(endpoint_scores),
            "max_score_difference": score_diff,
            "max_additivity_error": additivity,
            "score_tolerance": SCORE_TOLERANCE,
            "additivity_tolerance": ADDITIVITY_TOLERANCE,
        },
        description=f"{len(endpoint_scores)} explained rows: in-process vs endpoint score differ by at most {score_diff:.2e}, "
        f"contributions + bias vs margin by at most {additivity:.2e}",
    )


stored_score_check_specs = [
    daily_check(
        "stored_count_matches_scored",
        asset="stored_scores",
        description="Every scored transaction of the day is in DynamoDB exactly once, with its fraudScore and "
        "modelVersion (read back by key with consistent reads).",
    ),
]


def stored_count_matches_scored(result: StoredCheck) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="stored_count_matches_scored",
        passed=result.found == result.expected and not result.mismatched,
        metadata={
            "stored": result.found,
            "scored": result.expected,
            "missing": len(result.missing),
            "mismatched": len(result.mismatched),
            "examples": str((result.missing + result.mismatched)[:5]),
        },
    )


drift_check_specs = [daily_check(name, asset="drift_metrics", description=text) for name, (_, _, text) in DRIFT_WARNINGS.items()]


def drift_warnings(record: dict) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(
            check_name=v["name"],
            severity=AssetCheckSeverity.WARN,
            passed=v["passed"],
            metadata={"value": v["value"] if v["value"] is not None else float("nan"), "threshold": v["threshold"]},
            description=v["detail"],
        )
        for v in drift_lib.drift_warnings(record)
    ]
