"""`make bench`: the platform's steps as ratios against the raw libraries doing the same work in
the same process, plus wall times through Dagster. Not a test: nothing here asserts a time.

    python -m benchmarks [--only training|scoring|inference] [--rows N] [--json PATH]

`--only scoring` trains once (untimed) and times the endpoint client against the protocol floor;
`--only inference` runs the training graph (it deploys the endpoint) and the daily graph.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import xgboost as xgb


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    """Median wall time of `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def prepared_splits(csv_bytes: bytes) -> dict:
    """The training assets' path on pandas from a raw CSV alone: data_extraction (no labelled days),
    its data set stored as parquet, then prepared_splits over that file."""
    from fraud_assets.lib.aws.storage import write_parquet
    from fraud_assets.lib.training import extraction
    from fraud_assets.lib.training.prep_engines import split_dataset_with_pandas

    dataset, _ = extraction.extract_with_pandas(csv_bytes, "bench.csv", extraction.empty_daily_rows(), 42)
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        with open(Path(tmp) / "dataset.parquet", "wb") as f:
            write_parquet(dataset, f)
        return split_dataset_with_pandas(Path(tmp) / "dataset.parquet", 42)


def bench_data_prep(csv_bytes: bytes) -> dict:
    from fraud_assets.lib.aws.storage import table_to_parquet

    def ours():  # data_extraction then prepared_splits, each writing its parquet
        splits = prepared_splits(csv_bytes)
        return [table_to_parquet(frame) for frame in splits.values()]

    def raw():  # pyarrow read, numpy random 70/15/15, parquet write: no validation, no ids
        frame = pacsv.read_csv(pa.BufferReader(csv_bytes)).to_pandas()
        order = np.random.default_rng(42).permutation(len(frame))
        cut1, cut2 = int(0.7 * len(frame)), int(0.85 * len(frame))
        out = []
        for part in (order[:cut1], order[cut1:cut2], order[cut2:]):
            sink = io.BytesIO()
            pq.write_table(pa.Table.from_pandas(frame.iloc[part], preserve_index=False), sink, compression="zstd")
            out.append(sink.getvalue())
        return out

    ours_s, _ = timed(ours)
    raw_s, _ = timed(raw)
    return {"ours_s": ours_s, "raw_s": raw_s, "ratio": ours_s / raw_s, "target": 1.5}


def bench_training(splits: dict) -> dict:
    from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN
    from fraud_assets.lib.training.model import (
        DEFAULT_EARLY_STOPPING_ROUNDS,
        DEFAULT_HYPERPARAMETERS,
        DEFAULT_NUM_ROUND,
        booster_params,
        train_model,
    )

    train, validation = splits["train"], splits["validation"]

    def ours():
        return train_model(train, validation, DEFAULT_HYPERPARAMETERS)

    def raw():
        dtrain = xgb.DMatrix(train[list(FEATURE_COLUMNS)].to_numpy(np.float32), label=train[LABEL_COLUMN].to_numpy())
        dvalid = xgb.DMatrix(validation[list(FEATURE_COLUMNS)].to_numpy(np.float32), label=validation[LABEL_COLUMN].to_numpy())
        return xgb.train(
            booster_params(DEFAULT_HYPERPARAMETERS),
            dtrain,
            DEFAULT_NUM_ROUND,
            evals=[(dvalid, "validation")],
            early_stopping_rounds=DEFAULT_EARLY_STOPPING_ROUNDS,
            verbose_eval=False,
        )

    ours_s, trained = timed(ours)
    raw_s, _ = timed(raw)
    return {"ours_s": ours_s, "raw_s": raw_s, "ratio": ours_s / raw_s, "target": 1.2, "rounds": trained.best_iteration + 1}, trained


def deploy_for_bench(trained, names) -> None:
    import boto3

    from fraud_assets.lib.aws.storage import put_bytes
    from fraud_assets.lib.training.model import package_model

    s3, sagemaker = boto3.client("s3"), boto3.client("sagemaker")
    put_bytes(s3, names.models_bucket, "bench/model.tar.gz", package_model(trained.booster, {"feature_names": trained.feature_names}))
    sagemaker.create_model(
        ModelName="bench-model",
        PrimaryContainer={"Image": names.xgboost_image_uri, "ModelDataUrl": f"s3://{names.models_bucket}/bench/model.tar.gz"},
        ExecutionRoleArn=names.sagemaker_role_arn,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="bench-config",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "bench-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sagemaker.create_endpoint(EndpointName="bench-endpoint", EndpointConfigName="bench-config")


def scoring_floor(booster, features: np.ndarray) -> tuple[float, dict]:
    """The protocol's floor, no HTTP: encode the rows as CSV (orjson, the fastest exact float32
    text), parse them back (pyarrow, multi-threaded, into float32) and `inplace_predict`, each
    with the best library call, one after the other in this process."""
    import orjson

    rows = np.ascontiguousarray(features, dtype=np.float32)
    names = [f"f{j}" for j in range(rows.shape[1])]
    convert = pacsv.ConvertOptions(column_types={n: pa.float32() for n in names})

    def encode():
        return orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2].replace(b"],[", b"\n")

    def parse(body):
        table = pacsv.read_csv(pa.py_buffer(body), read_options=pacsv.ReadOptions(column_names=names), convert_options=convert)
        return np.column_stack([c.to_numpy() for c in table.columns])

    encode_s, body = timed(encode)
    parse_s, parsed = timed(lambda: parse(body))
    predict_s, _ = timed(lambda: booster.inplace_predict(parsed))
    return encode_s + parse_s + predict_s, {"encode_s": encode_s, "parse_s": parse_s, "predict_s": predict_s}


def bench_scoring(trained, features: np.ndarray) -> dict:
    import boto3

    from fraud_assets.lib.inference.scoring import score_one_at_a_time, score_through_endpoint

    runtime = boto3.client("sagemaker-runtime")
    booster = trained.booster
    ours_s, served = timed(lambda: score_through_endpoint(runtime, "bench-endpoint", features))
    floor_s, floor_parts = scoring_floor(booster, features)
    raw_s, local = timed(lambda: booster.inplace_predict(features))
    sample = features[:1_000]
    one_s, _ = timed(lambda: score_one_at_a_time(runtime, "bench-endpoint", sample), repeat=1)
    per_txn = one_s / len(sample)
    return {
        "rows": len(features),
        "endpoint_s": ours_s,
        "floor_s": floor_s,
        "floor_parts_s": floor_parts,
        "ratio_to_floor": ours_s / floor_s,
        "target_ratio_to_floor": 1.3,
        "inplace_predict_s": raw_s,
        "ratio": ours_s / raw_s,
        "max_abs_diff": float(np.max(np.abs(served - local))),
        "one_per_transaction_s_per_row": per_txn,
        "one_per_transaction_extrapolated_s": per_txn * len(features),
        "batched_speedup_over_one_per_transaction": per_txn * len(features) / ours_s,
    }


def bench_training_graph() -> dict:
    from dagster import DagsterInstance

    from fraud_assets.definitions import location_defs
    from fraud_assets.main_job import QUIET

    job = location_defs().resolve_job_def("training_job")
    started = time.perf_counter()
    result = job.execute_in_process(instance=DagsterInstance.get(), run_config=QUIET, raise_on_error=False)
    return {"wall_s": time.perf_counter() - started, "succeeded": result.success, "target_s": 60.0}


def bench_inference(sizes: list[int]) -> dict:
    import boto3
    from dagster import DagsterInstance

    from fraud_assets.definitions import location_defs
    from fraud_assets.lib.aws.storage import put_bytes
    from fraud_assets.lib.config import PlatformNames, daily_batch_key
    from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch
    from fraud_assets.main_job import QUIET

    names = PlatformNames.from_env()
    s3 = boto3.client("s3")
    job = location_defs().resolve_job_def("inference_job")
    out = {}
    for i, size in enumerate(sizes):
        date = f"2026-02-{10 + i:02d}"
        put_bytes(s3, names.data_bucket, daily_batch_key(date), batch_to_json_bytes(generate_daily_batch(date, n_transactions=size)))
        started = time.perf_counter()
        result = job.execute_in_process(instance=DagsterInstance.get(), partition_key=date, run_config=QUIET, raise_on_error=False)
        wall = time.perf_counter() - started
        steps = {
            e.step_key: round(e.event_specific_data.duration_ms / 1000, 3)
            for e in result.all_events
            if e.event_type_value == "STEP_SUCCESS"
        }
        out[str(size)] = {"wall_s": wall, "succeeded": result.success, "us_per_transaction": wall / size * 1e6, "steps_s": steps}
    if len(sizes) == 2:
        a, b = (out[str(s)]["wall_s"] for s in sizes)
        out["growth"] = {"size_ratio": sizes[1] / sizes[0], "time_ratio": b / a, "linear_or_better": b / a <= sizes[1] / sizes[0]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=284_807)
    parser.add_argument("--only", choices=["training", "scoring", "inference"])
    parser.add_argument("--json", default=".fraud_assets/bench.json")
    args = parser.parse_args()

    import boto3

    from fraud_assets.lib.aws.storage import put_bytes
    from fraud_assets.lib.config import FEATURE_COLUMNS, FIRST_DAY_VARIABLE, RAW_DATA_KEY, PlatformNames
    from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
    from fraud_assets_local.stack import LocalStack

    os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="fraud-bench-dagster-")
    # The benchmark's days (2026-02/03) are partitions: before the code location loads.
    os.environ.setdefault(FIRST_DAY_VARIABLE, "2026-01-01")
    results: dict = {"rows": args.rows, "cores": os.cpu_count()}
    with LocalStack() as stack:
        os.environ.update(stack.env())
        names = PlatformNames.from_env()
        csv_bytes = to_csv_bytes(generate_transactions(n_rows=args.rows))
        put_bytes(boto3.client("s3"), names.data_bucket, RAW_DATA_KEY, csv_bytes)
        if args.only in (None, "training", "scoring"):
            splits = prepared_splits(csv_bytes)
            if args.only == "scoring":
                from fraud_assets.lib.training.model import DEFAULT_HYPERPARAMETERS, train_model

                trained = train_model(splits["train"], splits["validation"], DEFAULT_HYPERPARAMETERS)
            else:
                results["data_prep"] = bench_data_prep(csv_bytes)
                results["training"], trained = bench_training(splits)
            deploy_for_bench(trained, names)
            all_rows = np.concatenate([s[list(FEATURE_COLUMNS)].to_numpy(np.float32) for s in splits.values()])
            results["scoring"] = bench_scoring(trained, all_rows)
        if args.only != "scoring":
            results["training_graph"] = bench_training_graph()
        if args.only in (None, "inference"):
            results["inference"] = bench_inference([10_000, 100_000])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
