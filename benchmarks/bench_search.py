"""A 20-trial hyperparameter search on the default synthetic set, and what it found against the
the original design's default hyperparameters (same splits, validation and test PR-AUC).

    python -m benchmarks.bench_search [--trials 20] [--strategy bayesian]
"""

from __future__ import annotations

import argparse
import json
import time

from fraud_assets.lib.config import LABEL_COLUMN
from fraud_assets.lib.experimentation.experiments import run_experiment
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training.metrics import evaluate_scores
from fraud_assets.lib.training.model import DEFAULT_HYPERPARAMETERS, train_model
from fraud_assets.lib.training.splits import prepare_splits


def test_metrics(splits, hyperparameters) -> dict:
    trained = train_model(splits["train"], splits["validation"], hyperparameters)
    test = splits["test"]
    m = evaluate_scores(test[LABEL_COLUMN].to_numpy(), trained.predict(test))
    return {k: m[k] for k in ("pr_auc", "roc_auc", "recall", "precision", "high_risk_precision", "high_risk_recall")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--strategy", default="bayesian", choices=["grid", "random", "bayesian"])
    args = parser.parse_args()
    splits = prepare_splits(generate_transactions(), seed=42)
    started = time.perf_counter()
    result = run_experiment(splits["train"], splits["validation"], strategy=args.strategy, n_trials=args.trials, seed=0)
    seconds = time.perf_counter() - started
    best = result.best
    out = {
        "strategy": args.strategy,
        "trials": len(result.trials),
        "completed": len(result.completed),
        "search_seconds": seconds,
        "best_params": best["params"] if best else None,
        "best_validation": best["metrics"]["pr_auc"] if best else None,
        "test_default": test_metrics(splits, DEFAULT_HYPERPARAMETERS),
        "test_best": test_metrics(splits, best["hyperparameters"]) if best else None,
    }
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
