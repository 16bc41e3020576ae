"""The Data Extraction stage (training_dataset) on pandas and on Spark local mode, against the raw
libraries doing the same work, in one run:

    python -m benchmarks.bench_extraction [--days 180] [--per-day 10000] [--json PATH]

Input: the raw CSV (284,807 synthetic rows, the Kaggle size) plus `days` x `per_day` labelled daily
rows (already parsed and joined with their labels: parsing the day's JSON is the daily parser's work,
which the inference benchmark times), 1% of each day's ids repeated from the day before, so that
dedupe has work to do.

- ours, pandas: `extraction.extract_with_pandas` (validated CSV read, position ids, provenance,
  concat, dedupe by transactionId keeping the first, sort by id, dtypes);
- ours, Spark: `prep_engines.extract_with_spark` (staging, the Glue script's
  `extract_training_dataset_spark`, reading the parquet back into pandas);
- raw baseline: pyarrow's CSV reader, the same ids and source columns, `pa.concat_tables`, pandas
  `drop_duplicates` and `sort_values`: the same result without validation or a common schema.

Ratios are against the baseline measured in the same process; each runs once (the machine is shared).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RAW_ROWS = 284_807


def daily_rows(days: int, per_day: int, seed: int = 7) -> pd.DataFrame:
    from fraud_assets.lib.seeding.synthetic import generate_transactions
    from fraud_assets.lib.training import extraction

    base = generate_transactions(days * per_day, seed=seed)
    dates = pd.date_range("2026-01-01", periods=days, freq="D").strftime("%Y-%m-%d")
    day = np.repeat(np.arange(days), per_day)
    index = np.tile(np.arange(per_day), days)
    # The last 1% of each day's rows repeat the previous day's first ids (a transaction reported again).
    first_repeat = per_day - per_day // 100
    repeated = (index >= first_repeat) & (day > 0)
    id_day = np.where(repeated, day - 1, day)
    id_index = np.where(repeated, index - first_repeat, index)
    ids = [f"TXN-{dates[d]}-{i:06d}" for d, i in zip(id_day.tolist(), id_index.tolist())]
    base.insert(0, "transactionId", ids)
    base["source"] = [f"daily:{dates[d]}" for d in day.tolist()]
    return extraction.normalise(base)


def baseline(csv: bytes, daily: pd.DataFrame) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from fraud_assets.lib.training.splits import transaction_ids

    raw = pacsv.read_csv(pa.py_buffer(csv))
    raw = raw.add_column(0, "transactionId", pa.array(transaction_ids(raw.num_rows), pa.string()))
    raw = raw.append_column("source", pa.array(["raw"] * raw.num_rows, pa.string()))
    daily_table = pa.Table.from_pandas(daily, preserve_index=False).select(raw.column_names).cast(raw.schema)
    frame = pa.concat_tables([raw, daily_table]).to_pandas()
    return frame.drop_duplicates("transactionId", keep="first").sort_values("transactionId").reset_index(drop=True)


def timed(fn):
    gc.collect()
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--per-day", type=int, default=10_000)
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--skip-spark", action="store_true")
    args = parser.parse_args(argv)

    from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes
    from fraud_assets.lib.training import extraction, prep_engines

    csv = to_csv_bytes(generate_transactions(RAW_ROWS, seed=3))
    daily = daily_rows(args.days, args.per_day)
    figures: dict = {"raw_rows": RAW_ROWS, "daily_rows": len(daily), "cpus": os.cpu_count(), "load_average": os.getloadavg()}

    base_s, expected = timed(lambda: baseline(csv, daily))
    figures["baseline_seconds"] = round(base_s, 2)
    pandas_s, (dataset, summary) = timed(lambda: extraction.extract_with_pandas(csv, "bench.csv", daily, 42))
    frame = dataset.to_pandas()
    assert frame[["transactionId", "source"]].equals(expected[["transactionId", "source"]].astype(frame["source"].dtype))
    figures.update(
        {
            "rows_out": len(frame),
            "duplicates_dropped": summary["duplicatesDropped"],
            "pandas_seconds": round(pandas_s, 2),
            "pandas_ratio": round(pandas_s / base_s, 2),
        }
    )
    del frame, dataset
    if not args.skip_spark:
        spark = prep_engines.local_spark_session(
            **{"spark.app.name": "bench-extraction", "spark.driver.memory": "3g", "spark.ui.showConsoleProgress": "false"}
        )
        with tempfile.TemporaryDirectory() as tmp:
            spark_s, (by_spark, _) = timed(lambda: prep_engines.extract_with_spark(spark, csv, "bench.csv", daily, 42, None, Path(tmp)))
        assert len(by_spark) == figures["rows_out"]
        figures.update({"spark_seconds": round(spark_s, 2), "spark_ratio": round(spark_s / base_s, 2)})
        spark.stop()
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
