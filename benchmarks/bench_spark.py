"""The data-prep split (prepared_splits: the training data set's parquet in, the three split frames
out) on the pandas engine vs Spark local mode, on the default synthetic set (284,807 rows, the Kaggle
size) and a 10x set, in one run; plus what the Spark job would cost on AWS Glue, which runs this split.

    python -m benchmarks.bench_spark [--scale 10] [--json .fraud_assets/bench_spark.json]

Both engines start from the same local parquet (data_extraction's output for the raw set alone). The
Spark time is broken down into the Spark job itself (glue_scripts/fraud_data_prep.py's
split_dataset_spark, what the Glue job runs) and reading its parquet back into pandas. The large set
runs once per engine (the machine is shared); the default set takes the median of two.

Glue cost assumption: the original design's 5 DPUs at $0.44 per DPU-hour, billed per second with Glue's
1-minute minimum, for the *measured local Spark job time*. Glue would run the job on 5 G.1X workers
(20 vCPUs) rather than 2 local cores, but also adds its start-up (tens of seconds, not billed before
the job starts on Glue 4/5), so this is an order-of-magnitude figure, not a quote.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

GLUE_DPUS = 5
GLUE_USD_PER_DPU_HOUR = 0.44
GLUE_MINIMUM_BILLED_SECONDS = 60
DEFAULT_ROWS = 284_807


def glue_cost_usd(seconds: float) -> float:
    return GLUE_DPUS * GLUE_USD_PER_DPU_HOUR * max(seconds, GLUE_MINIMUM_BILLED_SECONDS) / 3600.0


def spark_session(driver_memory: str):
    from fraud_assets.lib.training.prep_engines import local_spark_session

    # The 10x set's cache must fit in the driver or spill.
    return local_spark_session(
        **{"spark.app.name": "bench-spark", "spark.ui.showConsoleProgress": "false", "spark.driver.memory": driver_memory}
    )


def run_pandas(dataset: Path, repeat: int) -> tuple[float, dict]:
    from fraud_assets.lib.training.prep_engines import split_dataset_with_pandas

    times, result = [], {}
    for _ in range(repeat):
        result = {}
        gc.collect()
        started = time.perf_counter()
        result = split_dataset_with_pandas(dataset, 42)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run_spark(spark, dataset: Path, repeat: int) -> tuple[dict, dict]:
    """split_dataset_with_spark's steps, timed one by one."""
    from fraud_assets.lib.training.prep_engines import DATA_PREP_SCRIPT, load_glue_script, read_split_parquet_dir
    from fraud_assets.lib.training.splits import SPLITS

    script = load_glue_script(DATA_PREP_SCRIPT)
    runs, frames = [], {}
    for _ in range(repeat):
        frames = {}
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
            t1 = time.perf_counter()
            summary = script.split_dataset_spark(spark, str(dataset), str(Path(tmp) / "out"), 42)
            t2 = time.perf_counter()
            frames = {name: read_split_parquet_dir(Path(script.split_path(str(Path(tmp) / "out"), name))) for name in SPLITS}
            t3 = time.perf_counter()
        runs.append({"job_s": t2 - t1, "read_back_s": t3 - t2, "total_s": t3 - t1, "records": summary["recordCount"]})
    median = {k: statistics.median(r[k] for r in runs) for k in ("job_s", "read_back_s", "total_s")}
    return {**median, "records": runs[-1]["records"]}, frames


def same_splits(a: dict, b: dict) -> bool:
    return all(len(a[k]) == len(b[k]) and np.array_equal(a[k]["transactionId"].to_numpy(), b[k]["transactionId"].to_numpy()) for k in a)


def bench(rows: int, spark, repeat: int) -> dict:
    from fraud_assets.lib.aws.storage import write_parquet
    from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
    from fraud_assets.lib.training import extraction

    started = time.perf_counter()
    csv = to_csv_bytes(generate_transactions(rows, seed=7))
    dataset, _ = extraction.extract_with_pandas(csv, "bench.csv", extraction.empty_daily_rows(), 42)
    del csv
    generated_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-dataset-") as tmp:
        path = Path(tmp) / "dataset.parquet"
        with open(path, "wb") as f:
            write_parquet(dataset, f)
        del dataset
        parquet_mb = path.stat().st_size / 1e6
        pandas_s, by_pandas = run_pandas(path, repeat)
        spark_times, by_spark = run_spark(spark, path, repeat)
    agree = same_splits(by_pandas, by_spark)
    del by_pandas, by_spark
    gc.collect()
    return {
        "rows": rows,
        "dataset_parquet_mb": round(parquet_mb, 1),
        "repeat": repeat,
        "generate_s": round(generated_s, 2),
        "pandas_s": round(pandas_s, 2),
        "spark": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in spark_times.items()},
        "spark_over_pandas": round(spark_times["total_s"] / pandas_s, 2),
        "spark_job_over_pandas": round(spark_times["job_s"] / pandas_s, 2),
        "same_transaction_ids": agree,
        "glue_usd_at_measured_job_time": round(glue_cost_usd(spark_times["job_s"]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--scale", type=int, default=10, help="the large set is rows x scale (0: skip it)")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--json", default=".fraud_assets/bench_spark.json")
    args = parser.parse_args()

    spark = spark_session(args.driver_memory)
    try:
        # Warm the JVM (class loading, codegen) on a small file, so neither size pays for it.
        bench(2_000, spark, repeat=1)
        results = [bench(args.rows, spark, repeat=2)]
        if args.scale > 1:
            results.append(bench(args.rows * args.scale, spark, repeat=1))
    finally:
        spark.stop()
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
        "glue_assumption": f"{GLUE_DPUS} DPUs x ${GLUE_USD_PER_DPU_HOUR}/DPU-hour, per second, {GLUE_MINIMUM_BILLED_SECONDS} s minimum, at the local[2] job time",
        "results": results,
    }
    print(f"{'rows':>10} {'pq MB':>7} {'pandas s':>9} {'spark s':>8} {'(job s)':>8} {'ratio':>6} {'same ids':>8} {'Glue $':>7}")
    for r in results:
        print(
            f"{r['rows']:>10,} {r['dataset_parquet_mb']:>7} {r['pandas_s']:>9} {r['spark']['total_s']:>8} {r['spark']['job_s']:>8} "
            f"{r['spark_over_pandas']:>6} {str(r['same_transaction_ids']):>8} {r['glue_usd_at_measured_job_time']:>7}"
        )
    print(report["glue_assumption"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
