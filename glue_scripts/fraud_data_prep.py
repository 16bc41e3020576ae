"""PySpark data preparation, the Spark twin of `fraud_assets.lib.training`'s pandas steps:

- `extract_training_dataset_spark`: the raw CSV (with the checks of `fraud_assets.lib.training.raw_data`)
  plus the labelled daily rows, deduplicated and sampled (`extraction.combine`'s twin); run by the
  Spark engine in local mode;
- `split_dataset_spark`: the prepared data set (parquet) split by the hash of its transactionIds
  (`prep_engines.split_dataset_with_pandas`'s twin); run by the Spark engine in local mode and, as
  this file's entry point, on AWS Glue: `--input s3://.../dataset.parquet --output s3://.../prefix
  --seed 42` (Glue adds its own `--JOB_NAME`, `--JOB_RUN_ID`, `--TempDir`, ... which are ignored).
  Launched by Dagster Pipes (`PipesGlueClient`) it reads the Pipes context from S3 and reports the
  split counts back over stdout, which Glue ships to CloudWatch, where `PipesCloudWatchMessageReader`
  picks them up.

Self-contained on purpose: Glue uploads only this file, so nothing here imports fraud_assets and the
constants below are copies that fraud_assets_tests/test_glue_constants.py holds equal to the library's.
Needs Spark >= 3.5 (Glue 5.0): the `_metadata.file_block_start` column and `unix_micros`; tested on
PySpark 4.

Output of the split: `<output>/split=<name>/part-*.parquet` for train, validation and test (Spark's
partitioned layout, written by one job; an empty split has no directory), columns transactionId then
Time, V1..V28, Amount (double) and Class (bigint), each part file in transactionId order.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import re
import sys
from typing import Any, Iterator, Sequence

FEATURE_COLUMNS: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
LABEL_COLUMN = "Class"
RAW_COLUMNS: tuple[str, ...] = (*FEATURE_COLUMNS, LABEL_COLUMN)
TRANSACTION_ID = "transactionId"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULT_RATIOS: tuple[float, float, float] = (0.70, 0.15, 0.15)
HASH_BUCKETS = 10_000
ID_PREFIX = "txn-"

# The decimal numbers pyarrow's CSV reader (the pandas engine) accepts: optional sign, digits with
# an optional point, optional exponent, surrounding blanks. Spark's own cast would also take hex,
# Java's "1d"/"1f" suffixes and NaN/Infinity words, so only text matching this is cast. Values
# must then be finite; Class must be 0 or 1 and Amount >= 0, as raw_data.read_raw_csv requires.
NUMBER_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_NUMBER_RE = re.compile(NUMBER_PATTERN, re.ASCII)
_NON_FINITE_RE = re.compile(r"^\s*[+-]?(nan|inf|infinity)\s*$", re.ASCII | re.IGNORECASE)
AMOUNT_COLUMN = "Amount"

SPLIT_COLUMN = "split"  # the Hive partition column of the output: <output>/split=<name>/
_POS = "_pos"
_SPLIT = "_split"
_CORRUPT = "_corrupt_record"
_BLOCK = "_block_start"
_FILE = "_file_path"
_MONO = "_mono"


class DataValidationError(ValueError):
    """The input is not a usable raw transactions file. Same fields and message as
    fraud_assets.lib.training.raw_data.RawDataError (which the Spark engine turns this into): `row` is the
    1-based data row, `column` a name or a tuple of names, `value` the offending text."""

    def __init__(self, source: str, problem: str, *, row: int | None = None, column: Any = None, value: str | None = None):
        self.source, self.problem, self.row, self.column, self.value = source, problem, row, column, value
        where = []
        if isinstance(column, tuple):
            where.append("columns " + ", ".join(repr(c) for c in column))
        elif column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        message = f"{source}: " + (", ".join(where) + ": " if where else "") + problem
        if value is not None:
            message += f" {value!r}"
        super().__init__(message)


# --------------------------------------------------------------------------- split assignment


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r <= 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-9:
        raise ValueError(f"split ratios must be three positive fractions summing to 1, got {ratios}")
    return ratios  # type: ignore[return-value]


def split_cuts(ratios: Sequence[float]) -> tuple[int, int]:
    """Bucket bounds of train and validation, computed exactly as splits.assign_splits does."""
    ratios = validate_ratios(ratios)
    return round(ratios[0] * HASH_BUCKETS), round((ratios[0] + ratios[1]) * HASH_BUCKETS)


def transaction_id_column(position):
    from pyspark.sql import functions as F

    # format_string, not lpad: lpad would truncate a position past 999,999,999 where zfill does not.
    return F.format_string(ID_PREFIX + "%09d", position)


def split_code_column(transaction_id, seed: int, ratios: Sequence[float]):
    """0/1/2 (train/validation/test) from pmod(xxhash64("<seed>:<id>"), 10000): Spark's xxhash64
    is seeded with 42 and returns the signed 64-bit digest, the same as splits.split_buckets."""
    from pyspark.sql import functions as F

    cut_train, cut_validation = split_cuts(ratios)
    bucket = F.pmod(F.xxhash64(F.concat(F.lit(f"{int(seed)}:"), transaction_id)), F.lit(HASH_BUCKETS))
    return F.when(bucket < cut_train, 0).when(bucket < cut_validation, 1).otherwise(2).cast("tinyint")


def split_path(output_dir: str, name: str) -> str:
    return f"{output_dir.rstrip('/')}/{SPLIT_COLUMN}={name}"


# --------------------------------------------------------------------------- reading


def read_header(spark, input_path: str) -> list[str]:
    """The header line's column names (the first line of the file, parsed as CSV), checked like
    raw_data.read_raw_csv: every required column present once; other columns are ignored."""
    from pyspark.sql import functions as F

    lines = spark.read.text(input_path)
    first = lines.limit(1).collect()
    line = first[0][0].lstrip("\ufeff") if first else ""  # a byte-order mark is not part of a name
    if not line.strip() and not lines.where(F.trim(F.col("value")) != "").limit(1).collect():
        raise DataValidationError(input_path, "empty file")
    names = next(csv.reader([line.rstrip("\r")]), [])
    missing = tuple(c for c in RAW_COLUMNS if c not in names)
    if missing:
        hint = " (is the header row missing?)" if len(missing) == len(RAW_COLUMNS) else ""
        raise DataValidationError(
            input_path,
            ("missing required columns" if len(missing) > 1 else "missing required column") + hint,
            column=missing if len(missing) > 1 else missing[0],
        )
    duplicated = tuple(c for c in RAW_COLUMNS if names.count(c) > 1)
    if duplicated:
        raise DataValidationError(input_path, "required column appears more than once", column=duplicated[0])
    return names


def read_positioned(spark, input_path: str, header: Sequence[str]):
    """The CSV as strings (one positional column `_c<i>` per header name) with `_pos`, the 0-based
    position of the record among the file's data rows.

    Why not zipWithIndex: in PySpark it would ship every row through Python. Why not a single
    partition: it serialises the whole read. Instead the scan stays parallel and the position is
    made from what Spark records about each row: the byte offset of the split it came from
    (`_metadata.file_block_start`; a line belongs to the split it starts in, so ordering splits by
    offset orders lines by file position) and its rank within that split (monotonically_increasing_id
    grows by one per row inside a partition). One small aggregate turns per-split counts into
    offsets; no shuffle of the data. The header is dropped by Spark from the split at offset 0 and
    blank lines are skipped, as pandas does."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(f"_c{i}", T.StringType()) for i in range(len(header))] + [T.StructField(_CORRUPT, T.StringType())])
    rows = (
        spark.read.schema(schema)
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", _CORRUPT)
        .option("multiLine", False)
        .option("escape", '"')  # RFC 4180 "" inside quotes, as pyarrow reads it (Spark's default is \\)
        .csv(input_path)
        .select(
            "*",
            F.col("_metadata.file_path").alias(_FILE),
            F.col("_metadata.file_block_start").alias(_BLOCK),
            F.monotonically_increasing_id().alias(_MONO),
        )
    )
    blocks = rows.groupBy(_FILE, _BLOCK).agg(F.count(F.lit(1)).alias("n"), F.min(_MONO).alias("first")).collect()
    files = {b[_FILE] for b in blocks}
    if len(files) > 1:
        raise DataValidationError(input_path, f"expected one CSV file, found {len(files)}: row positions would be ambiguous")
    offsets, total = [], 0
    for block in sorted(blocks, key=lambda b: b[_BLOCK]):
        offsets.append((block[_BLOCK], block["first"], total))
        total += block["n"]
    offset_frame = spark.createDataFrame(offsets, f"{_BLOCK} long, _first long, _offset long")
    positioned = rows.join(F.broadcast(offset_frame), _BLOCK).withColumn(_POS, F.col("_offset") + F.col(_MONO) - F.col("_first"))
    return positioned.drop(_FILE, _BLOCK, _MONO, "_first", "_offset"), total


def typed_columns(header: Sequence[str]):
    """Typed RAW_COLUMNS (null where invalid) and a boolean column: is every required value valid?"""
    from pyspark.sql import functions as F

    index = {name: i for i, name in enumerate(header)}
    typed, all_ok = [], F.lit(True)
    for name in RAW_COLUMNS:
        raw = F.col(f"_c{index[name]}")
        # try_cast: the pattern already guarantees a number; ANSI mode must not turn a bad row we
        # are about to report into an anonymous cast error. SQL form: Column.try_cast is PySpark 4
        # only, and Glue 5.0 runs Spark 3.5.
        value = F.expr(f"try_cast(_c{index[name]} AS DOUBLE)")
        ok = raw.isNotNull() & raw.rlike(NUMBER_PATTERN) & ~F.isnan(value) & (F.abs(value) != float("inf"))
        if name == LABEL_COLUMN:
            ok = ok & value.isin(0.0, 1.0)
            value = value.cast("bigint")
        elif name == AMOUNT_COLUMN:
            ok = ok & (value >= 0.0)
        typed.append(F.when(ok, value).alias(name))
        all_ok = all_ok & F.coalesce(ok, F.lit(False))
    return typed, all_ok


def value_problem(name: str, raw: str | None) -> tuple[str, str] | None:
    """(problem, value) for one cell, worded as raw_data.read_raw_csv words it; None if valid. The
    same rules as typed_columns, run in Python on the one bad row that gets reported."""
    if raw is None or not raw.strip():
        return "empty value", ""
    if _NON_FINITE_RE.match(raw):
        return "non-finite value", str(float(raw))
    if not _NUMBER_RE.match(raw):
        return "non-numeric value", raw
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        return "non-finite value", str(value)
    text = str(int(value)) if value.is_integer() else repr(value)
    if name == LABEL_COLUMN and value not in (0.0, 1.0):
        return "class label must be 0 or 1, got", text
    if name == AMOUNT_COLUMN and value < 0:
        return "negative amount", text
    return None


def _bad_row_error(spark_row, header: Sequence[str], input_path: str) -> DataValidationError:
    row = spark_row[_POS] + 1
    if spark_row[_CORRUPT] is not None:
        text = spark_row[_CORRUPT]
        n_fields = len(next(csv.reader([text]), []))
        shown = text if len(text) <= 200 else text[:200] + "..."
        return DataValidationError(input_path, f"malformed row: expected {len(header)} fields, got {n_fields}:", row=row, value=shown)
    for name in sorted(RAW_COLUMNS, key=list(header).index):  # the leftmost bad column, in file order
        found = value_problem(name, spark_row[f"_c{list(header).index(name)}"])
        if found is not None:
            return DataValidationError(input_path, found[0], row=row, column=name, value=found[1])
    return DataValidationError(input_path, "invalid row", row=row)  # unreachable while the rules agree


# --------------------------------------------------------------------------- the training data set


SOURCE_COLUMN = "source"
RAW_SOURCE = "raw"
SAMPLE_BUCKETS = 1_000_000


def sampling_threshold(legit_rows: int, cap: int | None) -> tuple[float, int]:
    """The same rate and bucket threshold as extraction.sampling_threshold."""
    if cap is None or legit_rows <= cap:
        return 1.0, SAMPLE_BUCKETS
    if cap < 1:
        raise ValueError(f"legitimate-row cap must be >= 1, got {cap}")
    rate = cap / legit_rows
    return rate, round(rate * SAMPLE_BUCKETS)


def extract_training_dataset_spark(
    spark, input_path: str, daily_path: str | None, output_dir: str, seed: int, legit_cap: int | None = None
) -> dict[str, Any]:
    """The Spark twin of fraud_assets.lib.training.extraction.combine: the raw CSV, validated as
    raw_data.read_raw_csv validates it, with its position ids and source "raw", plus the labelled
    daily rows (parquet with transactionId, RAW_COLUMNS, source), deduplicated by transactionId
    (raw first, then days in date order), legitimate rows sampled by id hash to about `legit_cap`,
    written as parquet under `output_dir`. Returns the counts the pandas side reports."""
    from functools import reduce

    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    header = read_header(spark, input_path)
    positioned, total = read_positioned(spark, input_path, header)
    if total == 0:
        raise DataValidationError(input_path, "no data rows")
    typed, all_ok = typed_columns(header)
    prepared = positioned.select(_POS, *typed, all_ok.alias("_ok"), F.col(_CORRUPT).isNotNull().alias("_malformed"))
    prepared = prepared.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = prepared.agg(
            F.min(F.when(F.col("_malformed"), F.col(_POS))).alias("first_malformed"),
            F.min(F.when(~F.col("_ok"), F.col(_POS))).alias("first_invalid"),
        ).first()
        first_bad = stats["first_malformed"] if stats["first_malformed"] is not None else stats["first_invalid"]
        if first_bad is not None:
            raise _bad_row_error(positioned.where(F.col(_POS) == first_bad).first(), header, input_path)
        parts = [
            prepared.select(
                transaction_id_column(F.col(_POS)).alias(TRANSACTION_ID),
                *RAW_COLUMNS,
                F.lit(RAW_SOURCE).alias(SOURCE_COLUMN),
                F.lit(0).alias("_priority"),
            )
        ]
        daily_rows = 0
        if daily_path is not None:
            daily = spark.read.parquet(daily_path).select(
                F.col(TRANSACTION_ID).cast("string"),
                *[F.col(c).cast("double") for c in FEATURE_COLUMNS],
                F.col(LABEL_COLUMN).cast("bigint"),
                F.col(SOURCE_COLUMN).cast("string"),
                F.lit(1).alias("_priority"),
            )
            daily_rows = daily.count()
            parts.append(daily)
        union = reduce(lambda a, b: a.unionByName(b), parts)
        first = Window.partitionBy(TRANSACTION_ID).orderBy("_priority", SOURCE_COLUMN)
        deduped = union.withColumn("_rank", F.row_number().over(first)).where(F.col("_rank") == 1).drop("_rank", "_priority")
        deduped = deduped.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = deduped.agg(F.count(F.lit(1)).alias("rows"), F.count(F.when(F.col(LABEL_COLUMN) == 0, 1)).alias("legit")).first()
            rate, threshold = sampling_threshold(int(counts["legit"]), legit_cap)
            kept = deduped
            if threshold < SAMPLE_BUCKETS:
                bucket = F.pmod(F.xxhash64(F.concat(F.lit(f"sample:{int(seed)}:"), F.col(TRANSACTION_ID))), F.lit(SAMPLE_BUCKETS))
                kept = deduped.where((F.col(LABEL_COLUMN) != 0) | (bucket < threshold))
            kept.sortWithinPartitions(TRANSACTION_ID).write.mode("overwrite").parquet(output_dir.rstrip("/"))
        finally:
            deduped.unpersist()
    finally:
        prepared.unpersist()
    return {
        "rawRowsRead": total,
        "dailyRowsRead": daily_rows,
        "duplicatesDropped": total + daily_rows - int(counts["rows"]),
        "legitimateRowsBefore": int(counts["legit"]),
        "legitimateRate": rate,
        "engine": "spark",
    }


def split_dataset_spark(spark, input_path: str, output_dir: str, seed: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> dict[str, Any]:
    """Split a prepared data set (parquet with transactionId and RAW_COLUMNS, e.g. the
    training_dataset asset's) by the hash of its ids, under `output_dir/split=<name>/`. Returns the
    stage summary (the shape of `splits.split_summary`, plus each split's path)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    ratios = validate_ratios(ratios)
    frame = spark.read.parquet(input_path)
    missing = tuple(c for c in (TRANSACTION_ID, *RAW_COLUMNS) if c not in frame.columns)
    if missing:
        raise DataValidationError(
            input_path,
            "missing required columns" if len(missing) > 1 else "missing required column",
            column=missing if len(missing) > 1 else missing[0],
        )
    coded = frame.select(
        F.col(TRANSACTION_ID).cast("string").alias(TRANSACTION_ID),
        *[F.col(c).cast("double") for c in FEATURE_COLUMNS],
        F.col(LABEL_COLUMN).cast("bigint"),
        split_code_column(F.col(TRANSACTION_ID), int(seed), ratios).alias(_SPLIT),
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = coded.agg(
            F.count(F.lit(1)).alias("rows"),
            *[F.count(F.when(F.col(_SPLIT) == i, 1)).alias(f"rows_{i}") for i in range(3)],
            *[F.sum(F.when(F.col(_SPLIT) == i, F.col(LABEL_COLUMN))).alias(f"fraud_{i}") for i in range(3)],
        ).first()
        total = int(stats["rows"])
        if total == 0:
            raise DataValidationError(input_path, "no data rows")
        base = output_dir.rstrip("/")
        names = F.element_at(F.array(*[F.lit(n) for n in SPLITS]), F.col(_SPLIT).cast("int") + 1)
        (
            coded.select(TRANSACTION_ID, *RAW_COLUMNS, names.alias(SPLIT_COLUMN))
            .sortWithinPartitions(SPLIT_COLUMN, TRANSACTION_ID)
            .write.mode("overwrite")
            .partitionBy(SPLIT_COLUMN)
            .parquet(base)
        )
    finally:
        coded.unpersist()
    return {
        "recordCount": total,
        "splits": splits_summary(stats, total, base),
        "seed": int(seed),
        "ratios": list(ratios),
        "engine": "spark",
    }


def splits_summary(stats, total: int, base: str) -> dict[str, dict[str, Any]]:
    """Per split: rows, fraud count and rate, share of the input, and where it was written (the
    path is absent when the split is empty). `stats` holds rows_<i> and fraud_<i> per SPLITS index."""
    out = {}
    for i, name in enumerate(SPLITS):
        rows, fraud = int(stats[f"rows_{i}"]), int(stats[f"fraud_{i}"] or 0)
        out[name] = {
            "rows": rows,
            "fraudCount": fraud,
            "fraudRate": fraud / rows if rows else 0.0,
            "fraction": rows / total,
            "path": split_path(base, name),
        }
    return out


# --------------------------------------------------------------------------- Glue entry point


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Our arguments out of Glue's argv. Glue passes `--KEY value` pairs of its own (JOB_NAME,
    JOB_RUN_ID, TempDir, job-bookmark-option, ...) and the Pipes bootstrap pair; we take ours and
    leave the rest, as awsglue.utils.getResolvedOptions would, without needing awsglue."""
    parser = argparse.ArgumentParser(prog="fraud_data_prep", allow_abbrev=False)
    parser.add_argument("--input", required=True, help="the prepared data set, parquet (s3:// on Glue, a local path in local mode)")
    parser.add_argument("--output", required=True, help="prefix that receives split=<name>/part-*.parquet")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ratios", default=",".join(str(r) for r in DEFAULT_RATIOS), help="train,validation,test")
    args, _unknown = parser.parse_known_args(list(argv))
    args.ratios = validate_ratios([float(r) for r in args.ratios.split(",")])
    return args


PIPES_CONTEXT_ARG = "--dagster-pipes-context"
PIPES_MESSAGES_ARG = "--dagster-pipes-messages"
# The kind of the custom Pipes message carrying the summary (defs/engines.py GLUE_SUMMARY_MESSAGE reads it).
SUMMARY_MESSAGE_KIND = "fraud_data_prep_summary"


def _pipes_args(argv: Sequence[str]) -> dict[str, str]:
    """The Pipes bootstrap values from argv, keyed by the env-var names dagster_pipes expects. Read
    from our argv rather than sys.argv so the entry point can be called in-process."""
    values: dict[str, str] = {}
    args = list(argv)
    for flag, env_name in ((PIPES_CONTEXT_ARG, "DAGSTER_PIPES_CONTEXT"), (PIPES_MESSAGES_ARG, "DAGSTER_PIPES_MESSAGES")):
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                values[env_name] = args[i + 1]
            elif arg.startswith(flag + "="):
                values[env_name] = arg.split("=", 1)[1]
    return values


@contextlib.contextmanager
def pipes_session(argv: Sequence[str]) -> Iterator[Any]:
    """A dagster_pipes context when Dagster launched us, else None (a plain Glue run or a local call).
    dagster_pipes and boto3 are imported only then: Glue installs dagster-pipes through the job's
    `--additional-python-modules`."""
    values = _pipes_args(argv)
    if "DAGSTER_PIPES_CONTEXT" not in values:
        yield None
        return
    import boto3
    from dagster_pipes import PipesMappingParamsLoader, PipesS3ContextLoader, open_dagster_pipes

    with open_dagster_pipes(
        params_loader=PipesMappingParamsLoader(values),
        context_loader=PipesS3ContextLoader(client=boto3.client("s3")),
    ) as pipes:
        yield pipes


def main(argv: Sequence[str] | None = None, spark=None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    with pipes_session(argv) as pipes:
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.appName("fraud-data-prep").getOrCreate()
        if pipes is not None:
            pipes.log.info(f"fraud_data_prep: {args.input} -> {args.output} (seed {args.seed}, ratios {args.ratios})")
        try:
            summary = split_dataset_spark(spark, args.input, args.output, args.seed, args.ratios)
        except DataValidationError as err:
            if pipes is not None:
                pipes.log.error(str(err))
            raise
        if pipes is not None:
            counts = {name: s["rows"] for name, s in summary["splits"].items()}
            pipes.log.info(f"fraud_data_prep: {summary['recordCount']} records -> {counts}")
            # The summary goes back as a custom message: the engine checks the parquet it reads
            # against these counts and records them as metadata on the split assets.
            pipes.report_custom_message({"kind": SUMMARY_MESSAGE_KIND, "summary": summary})
    print(json.dumps({"fraud_data_prep": summary}, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
