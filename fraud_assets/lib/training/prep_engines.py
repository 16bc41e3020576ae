"""The data-prep engines behind the `DataPrepEngine` resource, without Dagster: pandas in-process,
Spark local mode, and the helpers of the AWS Glue path. Every engine returns the same frames
(transactionId first, then RAW_COLUMNS, in transactionId order, index 0..n-1).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fraud_assets.lib.aws.storage import S3Uri, validate_key_part
from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.training.splits import DEFAULT_RATIOS, SPLITS, validate_ratios

GLUE_SCRIPTS_DIR = Path(__file__).resolve().parents[3] / "glue_scripts"
DATA_PREP_SCRIPT = GLUE_SCRIPTS_DIR / "fraud_data_prep.py"
FEATURE_ENG_SCRIPT = GLUE_SCRIPTS_DIR / "fraud_feature_eng.py"

_SOURCE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


# Spark local mode on this project's machines: two cores, no UI, UTC so time features never depend
# on the machine's zone. The Dagster resource, the tests and the benchmark all start from this.
LOCAL_SPARK_CONFIG: dict[str, str] = {
    "spark.master": "local[2]",
    "spark.app.name": "fraud-data-prep",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g",
    "spark.sql.session.timeZone": "UTC",
}


def local_spark_session(**overrides: str):
    """A local Spark session with LOCAL_SPARK_CONFIG (keys given with dots, e.g.
    `**{"spark.sql.shuffle.partitions": "2"}`), quiet logs."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in {**LOCAL_SPARK_CONFIG, **overrides}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def load_glue_script(path: Path | str = DATA_PREP_SCRIPT) -> ModuleType:
    """A glue_scripts/ file as a module. glue_scripts is not a package (Glue uploads single files),
    so it is loaded by path; cached so every caller shares one module object."""
    return _load_script(str(Path(path).resolve()))


@functools.cache
def _load_script(path: str) -> ModuleType:
    name = "glue_scripts_" + Path(path).stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load Glue script {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- pandas


def split_dataset_with_pandas(dataset: str | Path, seed: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> dict[str, pd.DataFrame]:
    """Split a prepared data set (the training_dataset asset's parquet, transactionId sorted) by
    the hash of its own ids; the frames keep its order and drop its provenance column.

    Read a column at a time and split at once: the peak is the splits plus one column, never the
    whole data set next to its splits (2.85M rows are ~0.8 GB)."""
    from fraud_assets.lib.training.splits import split_rows

    parquet = pq.ParquetFile(dataset)
    ids = parquet.read(columns=[TRANSACTION_ID]).column(0)
    rows = split_rows(len(ids), functools.partial(_id_texts, ids), seed, tuple(ratios))
    columns: list[dict[str, Any]] = [{TRANSACTION_ID: pd.array(ids.take(pa.array(r, pa.int64())), dtype="str")} for r in rows]
    del ids
    for name in RAW_COLUMNS:
        values = parquet.read(columns=[name]).column(0).to_numpy().astype(np.int64 if name == LABEL_COLUMN else np.float64, copy=False)
        for split_columns, r in zip(columns, rows):
            split_columns[name] = values[r]
        del values
    return {name: pd.DataFrame(split_columns, copy=False) for name, split_columns in zip(SPLITS, columns)}


def _id_texts(ids: pa.ChunkedArray, start: int, stop: int) -> np.ndarray:
    return ids.slice(start, stop - start).to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- Spark local mode


def split_dataset_with_spark(
    spark, dataset: str | Path, seed: int, ratios: Sequence[float] = DEFAULT_RATIOS, workdir: str | Path | None = None
) -> dict[str, pd.DataFrame]:
    """The Glue script's `split_dataset_spark` on a local Spark session, over the data set's parquet."""
    ratios = tuple(ratios)
    validate_ratios(ratios)
    script = load_glue_script(DATA_PREP_SCRIPT)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fraud-data-prep-", dir=workdir) as tmp:
        output_dir = Path(tmp) / "splits"
        script.split_dataset_spark(spark, str(dataset), str(output_dir), int(seed), ratios)
        return {name: read_split_parquet_dir(Path(script.split_path(str(output_dir), name))) for name in SPLITS}


def extract_with_spark(
    spark,
    csv_bytes: bytes | Path,
    source: str,
    daily: pd.DataFrame,
    seed: int,
    legit_cap: int | None = None,
    workdir: str | Path | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """The Glue script's `extract_training_dataset_spark` on a local Spark session: the CSV and the
    labelled daily rows staged as local files, the data set read back sorted by transactionId."""
    from fraud_assets.lib.training.extraction import DATASET_COLUMNS, DATASET_SCHEMA, extraction_summary
    from fraud_assets.lib.training.raw_data import RawDataError

    script = load_glue_script(DATA_PREP_SCRIPT)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fraud-extract-", dir=workdir) as tmp:
        if isinstance(csv_bytes, Path):  # already a local file
            input_path = csv_bytes
        else:
            input_path = Path(tmp) / (_SOURCE_NAME.sub("_", Path(str(source)).name)[:100] or "input.csv")
            input_path.write_bytes(csv_bytes)
        daily_path = None
        if len(daily):
            daily_path = Path(tmp) / "daily.parquet"
            pq.write_table(pa.Table.from_pandas(daily.loc[:, list(DATASET_COLUMNS)], preserve_index=False), daily_path)
        output_dir = Path(tmp) / "dataset"
        try:
            counts = script.extract_training_dataset_spark(
                spark, str(input_path), None if daily_path is None else str(daily_path), str(output_dir), int(seed), legit_cap
            )
        except script.DataValidationError as err:
            raise RawDataError(str(source), err.problem, row=err.row, column=err.column, value=err.value) from None
        parts = [pq.read_table(p, pre_buffer=False).select(list(DATASET_COLUMNS)).cast(DATASET_SCHEMA) for p in part_files(output_dir)]
        dataset = concat_sorted(parts, TRANSACTION_ID) if parts else DATASET_SCHEMA.empty_table()
    summary = extraction_summary(
        dataset,
        counts["rawRowsRead"],
        counts["dailyRowsRead"],
        counts["duplicatesDropped"],
        counts["legitimateRowsBefore"],
        counts["legitimateRate"],
        legit_cap,
    )
    return dataset, summary


def read_split_parquet_dir(path: Path) -> pd.DataFrame:
    """A split written by Spark (a directory of part files; none for an empty split) as the pandas
    engine's frame."""
    return split_frame_from_tables([pq.read_table(p, pre_buffer=False) for p in part_files(Path(path))])


def part_files(directory: Path) -> list[Path]:
    """The parquet part files Spark wrote into `directory` (none if it does not exist), in name order."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith(("_", ".")))


def concat_sorted(parts: list[pa.Table], key: str) -> pa.Table:
    """`concat_tables(parts).sort_by(key)` a column at a time, emptying `parts`: the rows are never
    held twice (the whole-table sort copies every column at once; 2.85M rows are ~0.8 GB)."""
    table = pa.concat_tables(parts)
    parts.clear()
    order = pc.sort_indices(table.column(key))
    columns = {}
    for name in table.column_names:
        columns[name] = table.column(name).take(order)
        table = table.drop_columns([name])
    return pa.table(columns)


def split_frame_from_tables(tables: list[pa.Table]) -> pd.DataFrame:
    """Part tables -> one frame with the pandas engine's columns, dtypes and row order, emptying
    `tables`. Ordered by transactionId, which is the file position zero-padded, so it is file order."""
    # Cast per part (free where the type already matches), before the rows are put together.
    selected = [t.select(list(_SPLIT_SCHEMA.names)).cast(_SPLIT_SCHEMA) for t in tables] or [_SPLIT_SCHEMA.empty_table()]
    tables.clear()
    frame = concat_sorted(selected, TRANSACTION_ID).to_pandas(split_blocks=True, self_destruct=True)
    frame[TRANSACTION_ID] = frame[TRANSACTION_ID].astype(str)  # str even when empty
    return frame


_SPLIT_SCHEMA = pa.schema([(TRANSACTION_ID, pa.string()), *((c, pa.float64()) for c in FEATURE_COLUMNS), (LABEL_COLUMN, pa.int64())])


def engineer_with_pandas(splits: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Feature engineering in-process: statistics fitted on the training split, applied to all."""
    from fraud_assets.lib.training.features import add_features, fit_feature_stats

    stats = fit_feature_stats(splits["train"])
    return {name: add_features(frame, stats) for name, frame in splits.items()}, stats


def engineer_with_spark(
    spark, splits: dict[str, pd.DataFrame], workdir: str | Path | None = None
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """glue_scripts/fraud_feature_eng.py on a local Spark session: the splits staged as local
    parquet in the data-prep script's layout (`split=<name>/`), read back in transactionId order."""
    script = load_glue_script(FEATURE_ENG_SCRIPT)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fraud-features-", dir=workdir) as tmp:
        for name, frame in splits.items():
            folder = Path(tmp) / "in" / f"split={name}"
            folder.mkdir(parents=True)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "part-00000.parquet")
        summary = script.engineer_features_spark(spark, str(Path(tmp) / "in"), str(Path(tmp) / "out"))
        tables = {}
        for name in SPLITS:
            parts = [pq.read_table(p) for p in part_files(Path(tmp) / "out" / f"split={name}")]
            tables[name] = concat_sorted(parts, TRANSACTION_ID).to_pandas()
    return tables, summary["stats"]


# --------------------------------------------------------------------------- AWS Glue


def history_with_spark(spark, source: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
    """The Glue script's `history_features_spark` over `source` (transactionId, CUSTOMER_FIELDS,
    Amount, Class), back as pandas in `source`'s row order."""
    from fraud_assets.lib.config import CUSTOMER_FIELDS
    from fraud_assets.lib.features.history import HISTORY_FEATURES

    script = load_glue_script(FEATURE_ENG_SCRIPT)
    frame = source.loc[:, [TRANSACTION_ID, *CUSTOMER_FIELDS, "Amount", LABEL_COLUMN]].copy()
    frame["_row"] = np.arange(len(frame), dtype=np.int64)
    schema = "transactionId string, customerId string, merchant string, timestamp string, Amount double, Class bigint, _row bigint"
    result = script.history_features_spark(spark.createDataFrame(frame.astype({"Class": "int64"}), schema), int(label_delay_days))
    out = result.select("_row", *HISTORY_FEATURES).toPandas().sort_values("_row")
    return out.drop(columns="_row").set_index(source.index)


def glue_job_arguments(input_uri: str, output_uri: str, seed: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> dict[str, str]:
    """StartJobRun `Arguments` for glue_scripts/fraud_data_prep.py: split the prepared data set (parquet)
    at `input_uri` into `output_uri`. Both locations are validated s3:// URIs: they become paths that
    the job writes under."""
    ratios = tuple(float(r) for r in ratios)
    validate_ratios(ratios)
    return {
        "--input": str(S3Uri.parse(input_uri)),
        "--output": str(S3Uri.parse(output_uri)).rstrip("/"),
        "--seed": str(int(seed)),
        "--ratios": ",".join(repr(r) for r in ratios),
    }


def glue_output_uri(bucket: str, run_id: str, stage: str = "glue_data_prep") -> str:
    """Where a run's Glue job writes: executions/<run id>/<stage>/ in the workflow bucket, beside
    the run's other stage outputs."""
    return str(S3Uri(bucket, f"executions/{validate_key_part(run_id, 'run id')}/{validate_key_part(stage, 'stage')}"))


def read_splits_from_s3(s3, output_uri: str) -> dict[str, pd.DataFrame]:
    """The Glue job's `<output>/split=<name>/part-*.parquet` objects as the pandas engine's frames.
    The job leaves `_SUCCESS` at the top when its write committed; without it the output is partial."""
    base = S3Uri.parse(output_uri.rstrip("/"))
    if not _list_keys(s3, base.bucket, f"{base.key}/_SUCCESS"):
        raise FileNotFoundError(f"{base}/_SUCCESS is missing: the Glue job's output did not commit")
    script = load_glue_script(DATA_PREP_SCRIPT)
    frames = {}
    for name in SPLITS:
        prefix = S3Uri.parse(script.split_path(str(base), name)).key + "/"
        tables = []
        for key in _list_keys(s3, base.bucket, prefix):
            leaf = key[len(prefix) :]
            if "/" in leaf or not leaf.endswith(".parquet") or leaf.startswith(("_", ".")):
                continue
            body = s3.get_object(Bucket=base.bucket, Key=key)["Body"].read()
            tables.append(pq.read_table(pa.BufferReader(body)))
        frames[name] = split_frame_from_tables(tables)
    return frames


def _list_keys(s3, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def check_against_summary(frames: dict[str, pd.DataFrame], summary: dict[str, Any]) -> None:
    """The rows read back must be the rows the job says it wrote (a partial or stale output prefix
    would otherwise pass silently)."""
    for name in SPLITS:
        expected = summary["splits"][name]["rows"]
        if len(frames[name]) != expected:
            raise RuntimeError(f"{name} split: read {len(frames[name])} rows back, the job reported {expected}")
    if sum(len(f) for f in frames.values()) != summary["recordCount"]:
        raise RuntimeError(f"splits hold {sum(len(f) for f in frames.values())} rows, the job read {summary['recordCount']}")
