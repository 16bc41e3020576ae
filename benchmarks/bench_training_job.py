"""Training in-process against a SageMaker training job run by the local stack, on 1 and 2 hosts,
same data and hyperparameters; and what the job protocol costs (writing the channels, staging,
the host process start-up, upload, polling) as a ratio to the training itself.

    python -m benchmarks.bench_training_job [--rows 100000] [--repeat 2] [--json PATH]

Phases of a job come from its SecondaryStatusTransitions (Downloading = staging the channels,
Training = the host processes from start to exit, Uploading = model.tar.gz to S3); "client" is
what the caller waits beyond the job's own end (the polling interval). Not a test: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import boto3

from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, PlatformNames
from fraud_assets.lib.seeding.synthetic import generate_transactions
from fraud_assets.lib.training import training_job as tj
from fraud_assets.lib.training.model import predict, train_model

HYPERPARAMETERS = {"max_depth": 5, "eta": 0.1, "num_round": 100, "early_stopping_rounds": 20, "tree_method": "hist"}


def _splits(rows: int):
    import numpy as np

    frame = generate_transactions(rows, seed=7)
    order = np.random.default_rng(0).permutation(len(frame))
    a, b = int(0.7 * rows), int(0.85 * rows)
    return frame.iloc[order[:a]], frame.iloc[order[a:b]], frame.iloc[order[b:]]


def _phases(job: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in job["SecondaryStatusTransitions"]:
        if t.get("EndTime") is not None:
            out[t["Status"]] = out.get(t["Status"], 0.0) + (t["EndTime"] - t["StartTime"]).total_seconds()
    return out


def _pr_auc(labels, scores) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def run(rows: int, repeat: int) -> dict:
    from fraud_assets_local.stack import LocalStack

    train, validation, test = _splits(rows)
    results: dict = {"rows": rows, "hyperparameters": HYPERPARAMETERS}

    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        trained = train_model(train, validation, HYPERPARAMETERS)
        times.append(time.perf_counter() - started)
    results["in_process"] = {
        "wall_s": statistics.median(times),
        "rounds": trained.booster.num_boosted_rounds(),
        "test_pr_auc": _pr_auc(test[LABEL_COLUMN], trained.predict(test)),
    }

    names = PlatformNames()
    with LocalStack() as stack:
        import os

        os.environ.update(stack.env())
        boto3.DEFAULT_SESSION = None
        sm, logs, s3 = boto3.client("sagemaker"), boto3.client("logs"), boto3.client("s3")
        for hosts, shards in ((1, 1), (2, 4)):
            walls, writes, phases, auc = [], [], [], None
            for attempt in range(repeat):
                name = f"bench-{hosts}h-{attempt}-{int(time.time())}"
                started = time.perf_counter()
                channels = {
                    split: tj.write_channel(s3, frame, names.workflow_bucket, f"bench/{name}/{split}", shards)
                    for split, frame in (("train", train), ("validation", validation))
                }
                written = time.perf_counter()
                request = tj.build_request(
                    name=name,
                    role_arn=names.sagemaker_role_arn,
                    channels=channels,
                    hyperparameters=HYPERPARAMETERS,
                    output_path=f"s3://{names.models_bucket}/training-jobs",
                    settings=tj.TrainingSettings(instance_count=hosts),
                    region=stack.region,
                )
                tj.start_or_find(sm, request)
                job = tj.wait(sm, logs, name, on_log_line=lambda s, line: None, min_poll_s=0.5, max_poll_s=2.0)
                booster = tj.load_job_booster(s3, job, FEATURE_COLUMNS)
                walls.append(time.perf_counter() - started)
                writes.append(written - started)
                phases.append(_phases(job))
                auc = _pr_auc(test[LABEL_COLUMN], predict(booster, test, FEATURE_COLUMNS))
            median = statistics.median(walls)
            phase = {k: statistics.median(p.get(k, 0.0) for p in phases) for k in ("Starting", "Downloading", "Training", "Uploading")}
            results[f"job_{hosts}_host"] = {
                "wall_s": median,
                "write_channels_s": statistics.median(writes),
                "phases_s": phase,
                "rounds": booster.num_boosted_rounds(),
                "test_pr_auc": auc,
                "ratio_to_in_process": median / results["in_process"]["wall_s"],
                # Everything that is not the host processes' own run: channel writing, staging,
                # upload, state changes, polling and loading the artifact back.
                "protocol_overhead_s": median - phase["Training"],
                "protocol_overhead_ratio": (median - phase["Training"]) / phase["Training"],
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    results = run(args.rows, args.repeat)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
