"""Quality gates as data: each gate is a name, a value, a floor and a verdict, so the asset checks,
the evaluation summary and the CLI all judge a model the same way."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, TRANSACTION_ID
from fraud_assets.lib.training.splits import DEFAULT_RATIOS, SPLITS


@dataclasses.dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    message: str
    value: float | None = None
    floor: float | None = None


def _at_least(name: str, value: float, floor: float, what: str) -> GateResult:
    passed = math.isfinite(value) and value >= floor
    return GateResult(name, passed, f"{what} {value:.4f} {'>=' if passed else '<'} floor {floor:.4f}", value, floor)


def model_gates(
    metrics: dict, comparison: dict, *, accuracy_floor: float, pr_auc_floor: float, high_risk_precision_floor: float
) -> list[GateResult]:
    return [
        _at_least("accuracy_gate", metrics["accuracy"], accuracy_floor, "accuracy"),
        _at_least("pr_auc_gate", metrics["pr_auc"], pr_auc_floor, "PR-AUC"),
        _at_least("high_risk_precision_gate", metrics["high_risk_precision"], high_risk_precision_floor, "high-risk precision"),
        GateResult("no_regression_gate", not comparison.get("regression", False), comparison.get("reason", "")),
    ]


def split_gates(splits: dict[str, pd.DataFrame], record_count: int, ratio_tolerance: float) -> dict[str, list[GateResult]]:
    """Per split: schema, both classes, share within tolerance of 70/15/15; across splits (reported
    on train_split): counts add up to the input and no transaction is in two splits."""
    expected_columns = [TRANSACTION_ID, *FEATURE_COLUMNS, LABEL_COLUMN]
    results: dict[str, list[GateResult]] = {}
    for name, ratio in zip(SPLITS, DEFAULT_RATIOS):
        frame = splits[name]
        missing = [c for c in expected_columns if c not in frame.columns]
        non_numeric = [c for c in [*FEATURE_COLUMNS, LABEL_COLUMN] if c in frame.columns and not pd.api.types.is_numeric_dtype(frame[c])]
        schema_ok = not missing and not non_numeric
        classes = sorted(frame[LABEL_COLUMN].unique().tolist()) if LABEL_COLUMN in frame.columns else []
        share = len(frame) / record_count if record_count else 0.0
        results[name] = [
            GateResult("schema", schema_ok, "schema as expected" if schema_ok else f"missing columns {missing}, non-numeric {non_numeric}"),
            GateResult("both_classes", classes == [0, 1], f"classes present: {classes}", float(len(classes))),
            GateResult(
                "ratio_within_tolerance",
                abs(share - ratio) <= ratio_tolerance,
                f"{name} holds {share:.4f} of the rows, expected {ratio:.2f} ± {ratio_tolerance}",
                share,
                ratio,
            ),
        ]
    total = sum(len(f) for f in splits.values())
    # Sorted, every repeat sits next to its twin: 2.85M ids cost ~80 MB this way, ~340 MB as
    # arrow's hash set and more as Python strings.
    ids = pa.chunked_array([pa.array(splits[n][TRANSACTION_ID].array, from_pandas=True).cast(pa.large_string()) for n in SPLITS])
    ordered = ids.take(pc.sort_indices(ids))
    duplicated = int(pc.sum(pc.equal(ordered.slice(1), ordered.slice(0, len(ordered) - 1))).as_py() or 0) if len(ordered) > 1 else 0
    results["train"] += [
        GateResult(
            "counts_add_up", total == record_count, f"splits hold {total} rows, input had {record_count}", float(total), float(record_count)
        ),
        GateResult("ids_disjoint", duplicated == 0, f"{duplicated} transaction ids appear more than once across splits", float(duplicated)),
    ]
    return results


def gate_records(gates: list[GateResult]) -> list[dict]:
    """The verdict as evaluation_metrics records it (its summary's `gates`): what deployment reads."""
    return [{"name": g.name, "passed": bool(g.passed), "message": g.message} for g in gates]
