"""PySpark feature engineering: the Spark twin of `fraud_assets.lib.training.features` (the original design's Feature
Engineering Glue job). Same features, same statistics dict; the parity tests hold the values equal
to 1e-9. Runnable on AWS Glue (`--input <prep output prefix> --output <prefix>`, reads
`<input>/split=<name>/` parquet, writes `<output>/split=<name>/` parquet and
`<output>/feature_stats.json`)
and in Spark local mode by importing `fit_feature_stats_spark` / `add_features_spark` /
`engineer_features_spark`; `history_features_spark` is the twin of
`fraud_assets.lib.features.history.history_features`. Self-contained like fraud_data_prep.py: Glue uploads only this file, so the
constants below are copies that fraud_assets_tests/test_glue_constants.py holds equal to the library's.
Spark >= 3.5 (Glue 5.0) for `unix_micros`.

Timestamps: a timestamp column (an instant) is used as is; strings and zone-less timestamps are
read in the session time zone, which must be UTC (the project's sessions set it) to agree with pandas.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any, Iterator, Sequence

FEATURE_COLUMNS: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
LABEL_COLUMN = "Class"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
STATS_VERSION = 1
CUSTOMER_FIELDS: tuple[str, ...] = ("customerId", "merchant", "timestamp")
TIME_FEATURES: tuple[str, ...] = ("hour_of_day", "is_night")
AMOUNT_FEATURES: tuple[str, ...] = ("log_amount", "amount_zscore")
SECONDS_PER_HOUR = 3600.0
NIGHT_END_HOUR = 6
MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
CUSTOMER_COUNT_WINDOWS: dict[str, int] = {
    "velocity_1h": MICROS_PER_HOUR,
    "velocity_24h": MICROS_PER_DAY,
    "customer_tx_count_7d": 7 * MICROS_PER_DAY,
    "customer_tx_count_30d": 30 * MICROS_PER_DAY,
}
CUSTOMER_MEAN_WINDOWS: dict[str, int] = {
    "customer_mean_amount_1d": MICROS_PER_DAY,
    "customer_mean_amount_7d": 7 * MICROS_PER_DAY,
    "customer_mean_amount_30d": 30 * MICROS_PER_DAY,
}
AMOUNT_RATIO_FEATURE = "amount_to_customer_mean_30d"
TERMINAL_WINDOW_DAYS: tuple[int, ...] = (1, 7, 30)
CUSTOMER_FEATURES: tuple[str, ...] = (*CUSTOMER_COUNT_WINDOWS, *CUSTOMER_MEAN_WINDOWS, AMOUNT_RATIO_FEATURE)
TERMINAL_FEATURES: tuple[str, ...] = tuple(
    name for n in TERMINAL_WINDOW_DAYS for name in (f"terminal_tx_count_{n}d", f"terminal_risk_{n}d")
)
HISTORY_FEATURES: tuple[str, ...] = (*CUSTOMER_FEATURES, *TERMINAL_FEATURES)
STATS_FILE = "feature_stats.json"
SPLIT_COLUMN = "split"  # fraud_data_prep's output layout: <prefix>/split=<name>/


def engineered_feature_names(has_customer_fields: bool) -> list[str]:
    names = [*FEATURE_COLUMNS, *TIME_FEATURES, *AMOUNT_FEATURES]
    if has_customer_fields:
        names += HISTORY_FEATURES
    return names


def has_customer_fields(df) -> bool:
    return all(c in df.columns for c in CUSTOMER_FIELDS)


# --------------------------------------------------------------------------- fitting


def fit_feature_stats_spark(train) -> dict[str, Any]:
    """features.fit_feature_stats on a Spark DataFrame: one aggregate for the amount."""
    from pyspark.sql import functions as F

    row = train.agg(F.count(F.lit(1)).alias("rows"), F.avg("Amount").alias("mean"), F.stddev_samp("Amount").alias("std")).first()
    if not row["rows"]:
        raise ValueError("cannot fit feature statistics on an empty training split")
    return {
        "version": STATS_VERSION,
        "train_rows": int(row["rows"]),
        "amount_mean": float(row["mean"]),
        "amount_std": _amount_scale(row["std"]),
        "has_customer_fields": has_customer_fields(train),
    }


def _amount_scale(std) -> float:
    # Same rule as features.amount_scale: no spread -> scale by 1, never divide by zero.
    return float(std) if std is not None and std == std and 0 < float(std) < float("inf") else 1.0


# --------------------------------------------------------------------------- applying


def hour_of_day_column(time):
    """(Time // 3600) % 24 with numpy's float floor division, step by step (npy_divmod): Spark's %
    on doubles is C fmod, like numpy's; floor(Time / 3600) alone would differ just below an hour."""
    from pyspark.sql import functions as F

    mod = time % F.lit(SECONDS_PER_HOUR)
    div = (time - mod) / F.lit(SECONDS_PER_HOUR)
    div = F.when(mod < 0, div - 1.0).otherwise(div)  # divisor > 0: fix the sign as npy_divmod does
    floor = F.floor(div)
    floor = F.when(div - floor > 0.5, floor + 1).otherwise(floor)
    return F.pmod(floor, F.lit(24)).cast("long")


def timestamp_micros_column(df, name: str = "timestamp"):
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    dtype = df.schema[name].dataType
    col = F.col(name)
    if isinstance(dtype, T.TimestampType):
        return F.unix_micros(col)
    # Strings and zone-less timestamps: read in the session time zone (UTC, see the module doc).
    return F.unix_micros(col.cast("timestamp"))


def add_features_spark(df, stats: dict[str, Any]):
    """features.add_features on a Spark DataFrame: the input columns, then the time and amount features."""
    from pyspark.sql import functions as F

    amount = F.col("Amount").cast("double")
    hour = hour_of_day_column(F.col("Time").cast("double"))
    return df.select(
        *df.columns,
        hour.alias("hour_of_day"),
        (hour < NIGHT_END_HOUR).cast("long").alias("is_night"),
        F.when(amount > -1.0, F.log1p(amount)).alias("log_amount"),  # null (NaN in pandas) outside log1p's domain
        ((amount - F.lit(float(stats["amount_mean"]))) / F.lit(float(stats["amount_std"]))).alias("amount_zscore"),
    )


def history_features_spark(df, label_delay_days: int):
    """history.history_features on a Spark DataFrame (customerId, merchant, timestamp, Amount,
    Class): the input columns, then HISTORY_FEATURES as doubles, null where pandas has NaN. Row
    order is not kept. Customer windows are RANGE windows over the timestamp in microseconds;
    terminal windows sum per-(merchant, day) counts over the days D-L-N .. D-L-1."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if isinstance(label_delay_days, bool) or not isinstance(label_delay_days, int) or label_delay_days < 0:
        raise ValueError(f"label_delay_days must be an integer >= 0, got {label_delay_days!r}")
    columns = list(df.columns)
    ts = F.col("_ts")
    out = df.select(
        *columns,
        timestamp_micros_column(df).alias("_ts"),
        F.col("customerId").cast("string").alias("_customer"),
        F.col("merchant").cast("string").alias("_merchant"),
    )
    out = out.withColumn("_day", ((ts - F.pmod(ts, F.lit(MICROS_PER_DAY))) / F.lit(MICROS_PER_DAY)).cast("long"))  # exact floor

    # Customers. Rows without time sit apart from the timed ones in a range frame; their own values are masked.
    by_customer = Window.partitionBy("_customer").orderBy("_ts")
    timed_customer = F.col("_customer").isNotNull() & ts.isNotNull()
    amount = F.col("Amount").cast("double")
    # avg skips nulls and propagates NaN; the pandas side spoils a window with any non-finite amount.
    bad = F.when(amount.isNull() | F.isnan(amount) | (F.abs(amount) == F.lit(float("inf"))), 1).otherwise(0)
    for name, width in CUSTOMER_COUNT_WINDOWS.items():
        out = out.withColumn(name, F.when(timed_customer, F.count(F.lit(1)).over(by_customer.rangeBetween(-width, 0)).cast("double")))
    for name, width in CUSTOMER_MEAN_WINDOWS.items():
        window = by_customer.rangeBetween(-width, 0)
        out = out.withColumn(name, F.when(timed_customer & (F.sum(bad).over(window) == 0), F.avg(amount).over(window)))
    mean = F.col("customer_mean_amount_30d")
    out = out.withColumn(AMOUNT_RATIO_FEATURE, F.when(mean != 0, amount / mean))

    # Terminals: labelled counts per (merchant, day), summed over the window's days, joined back by (merchant, day).
    counts = (
        out.where(F.col("_merchant").isNotNull() & ts.isNotNull())
        .groupBy("_merchant", "_day")
        .agg(F.count(F.lit(1)).alias("_tx"), F.sum(F.col(LABEL_COLUMN).cast("long")).alias("_fraud"))
    )
    by_terminal = Window.partitionBy("_merchant").orderBy("_day")
    terminal = []
    for days in TERMINAL_WINDOW_DAYS:
        window = by_terminal.rangeBetween(-(label_delay_days + days), -(label_delay_days + 1))
        tx = F.coalesce(F.sum("_tx").over(window), F.lit(0))
        fraud = F.coalesce(F.sum("_fraud").over(window), F.lit(0))
        terminal += [
            tx.cast("double").alias(f"terminal_tx_count_{days}d"),
            F.when(tx > 0, fraud.cast("double") / tx.cast("double")).otherwise(F.lit(0.0)).alias(f"terminal_risk_{days}d"),
        ]
    counts = counts.select("_merchant", "_day", *terminal)
    out = out.join(counts, on=["_merchant", "_day"], how="left")  # rows without merchant or time match nothing: null
    return out.select(*columns, *HISTORY_FEATURES)


# --------------------------------------------------------------------------- the job


def engineer_features_spark(spark, input_dir: str, output_dir: str, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the stats on `<input>/train` (unless given), write every split with its features to
    `<output>/split=<name>/`. Returns {"stats": ..., "splits": {name: {"rows", "path"}}, "featureNames"}."""
    base_in, base_out = input_dir.rstrip("/"), output_dir.rstrip("/")
    frames = {name: spark.read.parquet(f"{base_in}/{SPLIT_COLUMN}={name}") for name in SPLITS}
    if stats is None:
        stats = fit_feature_stats_spark(frames["train"])
    summary: dict[str, Any] = {"stats": stats, "splits": {}, "featureNames": engineered_feature_names(has_customer_fields(frames["train"]))}
    for name, frame in frames.items():
        path = f"{base_out}/{SPLIT_COLUMN}={name}"
        add_features_spark(frame, stats).write.mode("overwrite").parquet(path)
        summary["splits"][name] = {"rows": spark.read.parquet(path).count(), "path": path}
    return summary


def write_stats(stats: dict[str, Any], output_dir: str) -> str:
    """feature_stats.json beside the splits: boto3 with SSE on S3 (the project's rule for every put),
    a plain file locally."""
    body = json.dumps(stats, indent=2, sort_keys=True).encode()
    target = f"{output_dir.rstrip('/')}/{STATS_FILE}"
    if target.startswith("s3://"):
        import boto3

        bucket, _, key = target[len("s3://") :].partition("/")
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", ServerSideEncryption="AES256")
    else:
        path = target[len("file://") :] if target.startswith("file://") else target
        with open(path, "wb") as f:
            f.write(body)
    return target


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Ours out of Glue's argv (Glue adds --JOB_NAME, --JOB_RUN_ID, ... which are left alone)."""
    parser = argparse.ArgumentParser(prog="fraud_feature_eng", allow_abbrev=False)
    parser.add_argument("--input", required=True, help="prefix holding split=<name>/ parquet from fraud_data_prep")
    parser.add_argument("--output", required=True, help="prefix that receives split=<name>/ parquet and feature_stats.json")
    args, _unknown = parser.parse_known_args(list(argv))
    for flag in ("input", "output"):
        value = getattr(args, flag)
        if ".." in value.split("/"):
            raise ValueError(f"--{flag} must not contain '..': {value!r}")
    return args


@contextlib.contextmanager
def pipes_session(argv: Sequence[str]) -> Iterator[Any]:
    """A dagster_pipes context when launched by Dagster Pipes (see fraud_data_prep.pipes_session)."""
    values: dict[str, str] = {}
    args = list(argv)
    for flag, env_name in (("--dagster-pipes-context", "DAGSTER_PIPES_CONTEXT"), ("--dagster-pipes-messages", "DAGSTER_PIPES_MESSAGES")):
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                values[env_name] = args[i + 1]
    if "DAGSTER_PIPES_CONTEXT" not in values:
        yield None
        return
    import boto3
    from dagster_pipes import PipesMappingParamsLoader, PipesS3ContextLoader, open_dagster_pipes

    with open_dagster_pipes(
        params_loader=PipesMappingParamsLoader(values), context_loader=PipesS3ContextLoader(client=boto3.client("s3"))
    ) as pipes:
        yield pipes


def main(argv: Sequence[str] | None = None, spark=None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    with pipes_session(argv) as pipes:
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.appName("fraud-feature-eng").config("spark.sql.session.timeZone", "UTC").getOrCreate()
        summary = engineer_features_spark(spark, args.input, args.output)
        summary["statsPath"] = write_stats(summary["stats"], args.output)
        if pipes is not None:
            pipes.log.info(
                f"fraud_feature_eng: {args.input} -> {args.output}: " + str({n: s["rows"] for n, s in summary["splits"].items()})
            )
            pipes.report_custom_message({"kind": "fraud_feature_eng_summary", "summary": summary})
    print(json.dumps({"fraud_feature_eng": {k: v for k, v in summary.items() if k != "stats"}}, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
