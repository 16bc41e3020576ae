"""PySpark feature engineering: the Spark twin of `fraud_assets.lib.training.features` (the original design's Feature
Engineering Glue job). Same features, same statistics dict; the parity tests hold the values equal
to 1e-9. Runnable on AWS Glue (`--input <prep output prefix> --output <prefix>`, reads
`<input>/split=<name>/` parquet, writes `<output>/split=<name>/` parquet and
`<output>/feature_stats.json`)
and in Spark local mode by importing `fit_feature_stats_spark` / `add_features_spark` /
`engineer_features_spark`. Self-contained like fraud_data_prep.py: Glue uploads only this file, so the
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
CUSTOMER_FEATURES: tuple[str, ...] = ("velocity_1h", "velocity_24h", "merchant_risk_score")
SECONDS_PER_HOUR = 3600.0
NIGHT_END_HOUR = 6
MICROS_PER_HOUR = 3_600_000_000
VELOCITY_WINDOWS: dict[str, int] = {"velocity_1h": MICROS_PER_HOUR, "velocity_24h": 24 * MICROS_PER_HOUR}
DEFAULT_MERCHANT_SMOOTHING = 10.0
STATS_FILE = "feature_stats.json"
SPLIT_COLUMN = "split"  # fraud_data_prep's output layout: <prefix>/split=<name>/


def engineered_feature_names(has_customer_fields: bool) -> list[str]:
    names = [*FEATURE_COLUMNS, *TIME_FEATURES, *AMOUNT_FEATURES]
    if has_customer_fields:
        names += CUSTOMER_FEATURES
    return names


def has_customer_fields(df) -> bool:
    return all(c in df.columns for c in CUSTOMER_FIELDS)


# --------------------------------------------------------------------------- fitting


def fit_feature_stats_spark(train, merchant_smoothing: float = DEFAULT_MERCHANT_SMOOTHING) -> dict[str, Any]:
    """features.fit_feature_stats on a Spark DataFrame: one aggregate for the amount and labels, one
    group-by for the merchants; the scores are computed here from the integer counts with the
    pandas side's formula, so they come out bit-identical."""
    from pyspark.sql import functions as F

    if not merchant_smoothing > 0:
        raise ValueError(f"merchant_smoothing must be > 0, got {merchant_smoothing}")
    row = train.agg(
        F.count(F.lit(1)).alias("rows"),
        F.avg("Amount").alias("mean"),
        F.stddev_samp("Amount").alias("std"),
        F.sum(F.col(LABEL_COLUMN).cast("long")).alias("fraud"),
    ).first()
    if not row["rows"]:
        raise ValueError("cannot fit feature statistics on an empty training split")
    stats: dict[str, Any] = {
        "version": STATS_VERSION,
        "train_rows": int(row["rows"]),
        "amount_mean": float(row["mean"]),
        "amount_std": _amount_scale(row["std"]),
        "has_customer_fields": has_customer_fields(train),
    }
    if stats["has_customer_fields"]:
        counts = (
            train.where(F.col("merchant").isNotNull())
            .groupBy(F.col("merchant").cast("string").alias("m"))
            .agg(F.count(F.lit(1)).alias("n"), F.sum(F.col(LABEL_COLUMN).cast("long")).alias("f"))
            .collect()
        )
        prior = int(row["fraud"]) / int(row["rows"])
        smoothing = float(merchant_smoothing)
        stats.update(
            {
                "merchant_prior": prior,
                "merchant_smoothing": smoothing,
                "merchant_risk": {
                    r["m"]: (int(r["f"]) + smoothing * prior) / (int(r["n"]) + smoothing) for r in sorted(counts, key=lambda r: r["m"])
                },
            }
        )
    return stats


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
    """features.add_features on a Spark DataFrame: the input columns, then the engineered ones.
    Row order is not kept (the velocity window shuffles by customer)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    spark = df.sparkSession
    columns = list(df.columns)
    amount = F.col("Amount").cast("double")
    hour = hour_of_day_column(F.col("Time").cast("double"))
    out = df.select(
        *columns,
        hour.alias("hour_of_day"),
        (hour < NIGHT_END_HOUR).cast("long").alias("is_night"),
        F.when(amount > -1.0, F.log1p(amount)).alias("log_amount"),  # null (NaN in pandas) outside log1p's domain
        ((amount - F.lit(float(stats["amount_mean"]))) / F.lit(float(stats["amount_std"]))).alias("amount_zscore"),
    )
    if not has_customer_fields(df):
        return out
    if "merchant_risk" not in stats:
        raise ValueError("the frame has customer fields but the feature stats were fitted without them")
    out = out.withColumn("_ts", timestamp_micros_column(df))
    by_customer = Window.partitionBy("customerId").orderBy("_ts")
    loose = F.col("customerId").isNull() | F.col("_ts").isNull()  # counts only itself
    for name, window in VELOCITY_WINDOWS.items():
        out = out.withColumn(
            name, F.when(loose, F.lit(1).cast("long")).otherwise(F.count(F.lit(1)).over(by_customer.rangeBetween(-window, 0)))
        )
    scores = spark.createDataFrame([(m, float(s)) for m, s in stats["merchant_risk"].items()], "_merchant string, _score double")
    out = out.join(F.broadcast(scores), F.col("merchant").cast("string") == F.col("_merchant"), "left")
    out = out.withColumn("merchant_risk_score", F.coalesce(F.col("_score"), F.lit(float(stats["merchant_prior"]))))
    new = [*TIME_FEATURES, *AMOUNT_FEATURES, *CUSTOMER_FEATURES]
    return out.select(*columns, *new)


# --------------------------------------------------------------------------- the job


def engineer_features_spark(
    spark, input_dir: str, output_dir: str, stats: dict[str, Any] | None = None, merchant_smoothing: float = DEFAULT_MERCHANT_SMOOTHING
) -> dict[str, Any]:
    """Fit the stats on `<input>/train` (unless given), write every split with its features to
    `<output>/split=<name>/`. Returns {"stats": ..., "splits": {name: {"rows", "path"}}, "featureNames"}."""
    base_in, base_out = input_dir.rstrip("/"), output_dir.rstrip("/")
    frames = {name: spark.read.parquet(f"{base_in}/{SPLIT_COLUMN}={name}") for name in SPLITS}
    if stats is None:
        stats = fit_feature_stats_spark(frames["train"], merchant_smoothing)
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
    parser.add_argument("--merchant-smoothing", type=float, default=DEFAULT_MERCHANT_SMOOTHING)
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
        summary = engineer_features_spark(spark, args.input, args.output, merchant_smoothing=args.merchant_smoothing)
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
