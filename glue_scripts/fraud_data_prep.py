"""PySpark data preparation: the Spark twin of `fraud_assets.lib.splits.prepare_splits` (with the
raw CSV checks of `fraud_assets.lib.raw_data`), runnable two ways:

- on AWS Glue: `--input s3://.../creditcard.csv --output s3://.../prefix --seed 42` (Glue adds its
  own `--JOB_NAME`, `--JOB_RUN_ID`, `--TempDir`, ... which are ignored). Launched by Dagster Pipes
  (`PipesGlueClient`) it reads the Pipes context from S3 and reports the split counts back over
  stdout, which Glue ships to CloudWatch, where `PipesCloudWatchMessageReader` picks them up;
- in Spark local mode: import this file and call `prepare_splits_spark(spark, ...)` on local paths.

Self-contained on purpose: Glue uploads only this file, so nothing here imports fraud_assets and the
constants below are copies that the parity tests hold equal to the pandas side.

Output: `<output>/<split>/part-*.parquet` for train, validation and test, columns transactionId then
Time, V1..V28, Amount (double) and Class (bigint), each part file in file order.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
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

# Finite decimal numbers only: no NaN/Infinity, no hex or Java's "1d"/"1f" suffixes, which Spark's
# cast would accept and pandas would not. Surrounding blanks are allowed (both parsers skip them).
NUMBER_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
LABEL_PATTERN = r"^\s*[+]?[01](\.0*)?\s*$"

_POS = "_pos"
_SPLIT = "_split"
_CORRUPT = "_corrupt_record"
_BLOCK = "_block_start"
_FILE = "_file_path"
_MONO = "_mono"


class DataValidationError(ValueError):
    """The input is not a usable raw transactions file; the message names file, row and column."""


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


# --------------------------------------------------------------------------- reading


def read_header(spark, input_path: str) -> list[str]:
    """The header line's column names (the first line of the file, parsed as CSV)."""
    first = spark.read.text(input_path).limit(1).collect()
    if not first:
        raise DataValidationError(f"{input_path}: the file is empty (no header line)")
    line = first[0][0].lstrip("\ufeff")  # a UTF-8 byte-order mark is not part of the first name
    names = next(csv.reader([line]), [])
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataValidationError(f"{input_path}: column {name!r} appears twice in the header")
        seen.add(name)
    missing = [c for c in RAW_COLUMNS if c not in seen]
    if missing:
        raise DataValidationError(f"{input_path}: missing required column(s) {', '.join(map(repr, missing))}; header has {names}")
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

    schema = T.StructType(
        [T.StructField(f"_c{i}", T.StringType()) for i in range(len(header))] + [T.StructField(_CORRUPT, T.StringType())]
    )
    rows = (
        spark.read.schema(schema)
        .option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", _CORRUPT)
        .option("multiLine", False)
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
        raise DataValidationError(f"{input_path}: expected one CSV file, found {len(files)}; row positions would be ambiguous")
    offsets, total = [], 0
    for block in sorted(blocks, key=lambda b: b[_BLOCK]):
        offsets.append((block[_BLOCK], block["first"], total))
        total += block["n"]
    offset_frame = spark.createDataFrame(offsets, f"{_BLOCK} long, _first long, _offset long")
    positioned = rows.join(F.broadcast(offset_frame), _BLOCK).withColumn(
        _POS, F.col("_offset") + F.col(_MONO) - F.col("_first")
    )
    return positioned.drop(_FILE, _BLOCK, _MONO, "_first", "_offset"), total


def typed_columns(header: Sequence[str]):
    """Typed RAW_COLUMNS plus `_bad`: the name of the first invalid column of the row, else null."""
    from pyspark.sql import functions as F

    index = {name: i for i, name in enumerate(header)}
    typed, checks = [], []
    for name in RAW_COLUMNS:
        raw = F.col(f"_c{index[name]}")
        pattern = LABEL_PATTERN if name == LABEL_COLUMN else NUMBER_PATTERN
        ok = raw.isNotNull() & raw.rlike(pattern)
        # try_cast: the pattern already guarantees a number; ANSI mode must not turn a bad row we
        # are about to report into an anonymous cast error.
        value = raw.try_cast("double")
        if name == LABEL_COLUMN:
            value = value.cast("bigint")
        else:
            ok = ok & ~F.isnan(value) & (F.abs(value) != float("inf"))  # decimal overflow such as 1e999
        typed.append(F.when(ok, value).alias(name))
        checks.append((name, ok))
    first_bad = F.lit(None).cast("string")
    for name, ok in reversed(checks):
        first_bad = F.when(~ok, F.lit(name)).otherwise(first_bad)
    return typed, first_bad


def _describe_bad_row(spark_row, header: Sequence[str], input_path: str) -> str:
    position = spark_row[_POS]
    where = f"{input_path}: data row {position + 1} (line {position + 2})"
    if spark_row[_CORRUPT] is not None:
        n_fields = len(next(csv.reader([spark_row[_CORRUPT]]), []))
        return f"{where}: has {n_fields} fields, the header has {len(header)}"
    column = spark_row["_bad"]
    value = spark_row[f"_c{list(header).index(column)}"]
    expected = "0 or 1" if column == LABEL_COLUMN else "a finite number"
    return f"{where}: column {column!r}: value {value!r} is not {expected}"


# --------------------------------------------------------------------------- the job


def prepare_splits_spark(
    spark,
    input_path: str,
    output_dir: str,
    seed: int,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    *,
    expected_records: int | None = None,
) -> dict[str, Any]:
    """Read the raw CSV, validate it, assign transactionIds and splits, write one parquet dataset per
    split under `output_dir/<split>/`. Returns the stage summary (the shape of
    `splits.split_summary`, plus each split's path). Raises DataValidationError naming the file,
    row and column of the first bad record (in file order)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    ratios = validate_ratios(ratios)
    seed = int(seed)
    header = read_header(spark, input_path)
    positioned, total = read_positioned(spark, input_path, header)
    if total == 0:
        raise DataValidationError(f"{input_path}: no data rows below the header")
    if expected_records is not None and total != expected_records:
        raise DataValidationError(f"{input_path}: {total} records, expected {expected_records}")

    typed, first_bad = typed_columns(header)
    prepared = positioned.select(
        _POS, *typed, split_code_column(transaction_id_column(F.col(_POS)), seed, ratios).alias(_SPLIT),
        first_bad.alias("_bad"), *[f"_c{i}" for i in range(len(header))], _CORRUPT,
    )
    invalid = F.col("_bad").isNotNull() | F.col(_CORRUPT).isNotNull()
    # Cached so the CSV is parsed once more only: the aggregate below fills the cache, the three
    # writes read it. The raw strings stay only for the error message of a bad row.
    prepared = prepared.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        stats = prepared.agg(
            F.count(F.lit(1)).alias("rows"),
            F.min(F.when(invalid, F.col(_POS))).alias("first_invalid"),
            *[F.count(F.when(F.col(_SPLIT) == i, 1)).alias(f"rows_{i}") for i in range(3)],
            *[F.sum(F.when((F.col(_SPLIT) == i) & ~invalid, F.col(LABEL_COLUMN))).alias(f"fraud_{i}") for i in range(3)],
        ).first()
        if stats["first_invalid"] is not None:
            bad = prepared.where(F.col(_POS) == stats["first_invalid"]).first()
            raise DataValidationError(_describe_bad_row(bad, header, input_path))
        if stats["rows"] != total:  # the two passes over the file must agree
            raise DataValidationError(f"{input_path}: counted {total} records, then {stats['rows']}")

        clean = prepared.select(_POS, *RAW_COLUMNS, _SPLIT)
        summary: dict[str, Any] = {"recordCount": total, "splits": {}, "seed": seed, "ratios": list(ratios), "engine": "spark"}
        base = output_dir.rstrip("/")
        for i, name in enumerate(SPLITS):
            path = f"{base}/{name}"
            (
                clean.where(F.col(_SPLIT) == i)
                .sortWithinPartitions(_POS)
                .select(transaction_id_column(F.col(_POS)).alias(TRANSACTION_ID), *RAW_COLUMNS)
                .write.mode("overwrite")
                .parquet(path)
            )
            rows, fraud = int(stats[f"rows_{i}"]), int(stats[f"fraud_{i}"] or 0)
            summary["splits"][name] = {
                "rows": rows,
                "fraudCount": fraud,
                "fraudRate": fraud / rows if rows else 0.0,
                "fraction": rows / total,
                "path": path,
            }
        return summary
    finally:
        prepared.unpersist()


# --------------------------------------------------------------------------- Glue entry point


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Our arguments out of Glue's argv. Glue passes `--KEY value` pairs of its own (JOB_NAME,
    JOB_RUN_ID, TempDir, job-bookmark-option, ...) and the Pipes bootstrap pair; we take ours and
    leave the rest, as awsglue.utils.getResolvedOptions would, without needing awsglue."""
    parser = argparse.ArgumentParser(prog="fraud_data_prep", allow_abbrev=False)
    parser.add_argument("--input", required=True, help="the raw CSV (s3:// on Glue, a local path in local mode)")
    parser.add_argument("--output", required=True, help="prefix that receives <split>/part-*.parquet")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--ratios", default=",".join(str(r) for r in DEFAULT_RATIOS), help="train,validation,test")
    parser.add_argument("--expected-records", type=int, default=None)
    args, _unknown = parser.parse_known_args(list(argv))
    args.ratios = validate_ratios([float(r) for r in args.ratios.split(",")])
    return args


PIPES_CONTEXT_ARG = "--dagster-pipes-context"
PIPES_MESSAGES_ARG = "--dagster-pipes-messages"


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
            summary = prepare_splits_spark(
                spark, args.input, args.output, args.seed, args.ratios, expected_records=args.expected_records
            )
        except DataValidationError as err:
            if pipes is not None:
                pipes.log.error(str(err))
            raise
        if pipes is not None:
            counts = {name: s["rows"] for name, s in summary["splits"].items()}
            pipes.log.info(f"fraud_data_prep: {summary['recordCount']} records -> {counts}")
            # The summary goes back as a custom message: the engine checks the parquet it reads
            # against these counts and records them as metadata on the split assets.
            pipes.report_custom_message({"kind": "fraud_data_prep_summary", "summary": summary})
    print(json.dumps({"fraud_data_prep": summary}, sort_keys=True))
    return summary


if __name__ == "__main__":
    main()
