"""Algorithms side by side: 4 algorithms x 10 trials (Bayesian) on the default synthetic set in the
Kaggle schema (284,807 rows; train + validation splits, the test split held out), validated
prequentially (4 folds of 8-hour blocks: the data spans two days) or on the random split; and,
with --feature-sets, raw / engineered / history features for xgboost on labelled daily data
(7-day blocks, 4 folds). Prints the comparison tables (markdown) and writes JSON.

    python -m benchmarks.bench_algorithms [--trials 10] [--validation prequential|random|both]
                                          [--feature-sets] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time

import pandas as pd

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN
from fraud_assets.lib.experimentation.algorithms import ALGORITHMS
from fraud_assets.lib.experimentation.experiments import comparison_markdown, comparison_rows, run_experiment
from fraud_assets.lib.experimentation.validation import ValidationSpec
from fraud_assets.lib.seeding.synthetic import generate_labelled_daily_batch, generate_transactions
from fraud_assets.lib.training.splits import prepare_splits

KAGGLE_PREQUENTIAL = ValidationSpec("prequential", block_days=1 / 3)  # 6 blocks of 8 h fill the two days


def labelled_daily_frame(days: int, per_day: int, seed: int = 7) -> pd.DataFrame:
    """Labelled daily transactions (customers, merchants, timestamps) as one frame."""
    start = dt.date(2025, 1, 1)
    frames = []
    for d in range(days):
        batch = generate_labelled_daily_batch((start + dt.timedelta(days=d)).isoformat(), n_transactions=per_day, seed=seed)
        frame = pd.DataFrame([r["features"] for r in batch.records], columns=list(FEATURE_COLUMNS))
        for field in ("timestamp", "customerId", "merchant"):
            frame[field] = [r[field] for r in batch.records]
        frame[LABEL_COLUMN] = batch.is_fraud.astype(int)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _summary(result, seconds: float, cpu_seconds: float) -> dict:
    rows = comparison_rows(result.trials, result.metric)
    return {
        "validation": result.validation,
        "rows": {k: v for k, v in result.rows.items() if k != "folds"},
        "fold_rows": [(f["train_rows"], f["validation_rows"]) for f in result.rows["folds"]],
        "trials": len(result.trials),
        "completed": len(result.completed),
        "seconds": round(seconds, 1),
        "minutes": round(seconds / 60, 2),
        # CPU time of this process and its threads: on a shared machine wall time measures the
        # neighbours too; CPU seconds / 2 is what two otherwise idle cores would take.
        "cpu_seconds": round(cpu_seconds, 1),
        "cpu_minutes_per_2_cores": round(cpu_seconds / 120, 2),
        "best": {"algorithm": result.best["algorithm"], "trial": result.best["number"], "value": result.best["value"]}
        if result.best
        else None,
        "comparison": rows,
        "table": comparison_markdown(rows),
    }


def algorithms(trials: int, kind: str, nthread: int | None) -> dict:
    splits = prepare_splits(generate_transactions(), seed=42)
    spec = KAGGLE_PREQUENTIAL if kind == "prequential" else ValidationSpec()
    started, cpu = time.perf_counter(), time.process_time()
    result = run_experiment(
        splits["train"],
        splits["validation"],
        strategy="bayesian",
        n_trials=trials,
        algorithms=ALGORITHMS,
        validation_spec=spec,
        nthread=nthread,
        seed=0,
    )
    return _summary(result, time.perf_counter() - started, time.process_time() - cpu)


def feature_sets(trials: int, nthread: int | None) -> dict:
    data = labelled_daily_frame(days=42, per_day=3000)
    started, cpu = time.perf_counter(), time.process_time()
    result = run_experiment(
        data.iloc[: len(data) * 7 // 10],  # the split is irrelevant here: prequential folds use both parts by time
        data.iloc[len(data) * 7 // 10 :],
        strategy="bayesian",
        n_trials=trials,
        algorithms=["xgboost"],
        feature_sets=["raw", "engineered", "history"],
        validation_spec=ValidationSpec("prequential"),
        nthread=nthread,
        seed=0,
    )
    return _summary(result, time.perf_counter() - started, time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--validation", default="prequential", choices=["prequential", "random", "both"])
    parser.add_argument("--feature-sets", action="store_true", help="also compare feature sets on labelled daily data")
    # One thread per trial on a shared machine: OpenMP's spin-waiting for a descheduled second
    # thread cost 5-25x the CPU in a measurement at load average 12 on 2 cores.
    parser.add_argument("--nthread", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    out: dict = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    kinds = ["prequential", "random"] if args.validation == "both" else [args.validation]
    for kind in kinds:
        out[f"algorithms_{kind}"] = algorithms(args.trials, kind, args.nthread)
        summary = out[f"algorithms_{kind}"]
        print(
            f"## {len(ALGORITHMS)} algorithms x {args.trials} trials, {kind}: {summary['minutes']} min wall, {summary['cpu_seconds']} CPU s"
        )
        print(out[f"algorithms_{kind}"]["table"], flush=True)
        _write(args.json, out)  # each part as soon as it is measured
    if args.feature_sets:
        out["feature_sets"] = feature_sets(max(1, args.trials // 2), args.nthread)
        print(
            f"## feature sets (xgboost, labelled daily data): {out['feature_sets']['minutes']} min wall, {out['feature_sets']['cpu_seconds']} CPU s"
        )
        print(out["feature_sets"]["table"], flush=True)
    out["load_after"] = os.getloadavg()
    _write(args.json, out)


def _write(path: str | None, out: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
