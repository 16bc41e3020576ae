"""pandas and Spark agree: the same transactions in the same splits (same ids, same values, same
order) and the same feature values, on hypothesis-generated CSVs and on a larger synthetic set.

One Spark session for the module (local[2], UI off, 2 shuffle partitions). Input files are split
into several scan partitions on purpose (small maxPartitionBytes, openCostInBytes 0), so the
position -> transactionId logic is exercised across partition boundaries, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import math
import random
import string
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud_assets.lib.aws.storage import write_parquet
from fraud_assets.lib.config import FEATURE_COLUMNS, LABEL_COLUMN, RAW_COLUMNS, TRANSACTION_ID
from fraud_assets.lib.features import history
from fraud_assets.lib.training import extraction, features, splits
from fraud_assets.lib.training.prep_engines import (
    DATA_PREP_SCRIPT,
    FEATURE_ENG_SCRIPT,
    extract_with_spark,
    load_glue_script,
    local_spark_session,
    split_dataset_with_pandas,
    split_dataset_with_spark,
)

pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]

prep = load_glue_script(DATA_PREP_SCRIPT)
feng = load_glue_script(FEATURE_ENG_SCRIPT)


@pytest.fixture(scope="module")
def spark():
    session = local_spark_session(
        **{
            "spark.app.name": "fraud-assets-parity",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.sql.files.openCostInBytes": "0",
        }
    )
    yield session
    session.stop()


@contextlib.contextmanager
def scan_partition_bytes(spark, n_bytes: int):
    """Spark splits the file into ~n_bytes pieces while the block is active."""
    key = "spark.sql.files.maxPartitionBytes"
    previous = spark.conf.get(key)
    spark.conf.set(key, str(max(int(n_bytes), 64)))
    try:
        yield
    finally:
        spark.conf.set(key, previous)


def assert_same_splits(expected: dict[str, pd.DataFrame], got: dict[str, pd.DataFrame]) -> None:
    assert list(got) == list(expected) == list(splits.SPLITS)
    for name in splits.SPLITS:
        assert got[name][TRANSACTION_ID].tolist() == expected[name][TRANSACTION_ID].tolist(), name
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True, check_dtype=True)


def prepare_with_pandas(csv: bytes, source: str, seed: int, ratios=splits.DEFAULT_RATIOS, workdir: Path | None = None):
    """The training assets' path on pandas, from a raw CSV alone: data_extraction (no labelled days,
    no sampling), then prepared_splits over the stored data set."""
    import tempfile

    dataset, _ = extraction.extract_with_pandas(csv, source, extraction.empty_daily_rows(), seed)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        with open(Path(tmp) / "dataset.parquet", "wb") as f:
            write_parquet(dataset, f)
        return split_dataset_with_pandas(Path(tmp) / "dataset.parquet", seed, ratios)


def prepare_with_spark(spark, csv: bytes, source: str, seed: int, ratios=splits.DEFAULT_RATIOS, workdir: Path | None = None):
    """The same path on the Spark engine (the Glue script's extraction and split)."""
    import tempfile

    dataset, _ = extract_with_spark(spark, csv, source, extraction.empty_daily_rows(), seed, None, workdir)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        with open(Path(tmp) / "dataset.parquet", "wb") as f:
            write_parquet(dataset, f)
        return split_dataset_with_spark(spark, Path(tmp) / "dataset.parquet", seed, ratios, tmp)


# --------------------------------------------------------------------------- the hash


def test_spark_xxhash64_is_python_xxh64_seed_42_signed(spark):
    """Spark's xxhash64(string) hashes the UTF-8 bytes with seed 42 and returns the digest as a
    signed long: python xxhash.xxh64_intdigest(s.encode(), 42) viewed as int64."""
    rng = random.Random(7)
    alphabet = string.printable + "éß✓中🙂"
    values = ["", "a", "42:txn-000000000", "-3:txn-999999999", "x" * 1000]
    values += [f"{seed}:txn-{i:09d}" for seed in (0, 42, -1, 2**31 - 1) for i in range(300)]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(300)]
    df = spark.createDataFrame([(v,) for v in values], "s string")
    rows = df.selectExpr("s", "xxhash64(s) AS h", f"pmod(xxhash64(s), {splits.HASH_BUCKETS}) AS b").collect()
    assert len(rows) == len(values)
    for row in rows:
        signed = int(np.uint64(xxhash.xxh64_intdigest(row.s.encode(), splits.XXHASH_SEED)).astype(np.int64))
        assert row.h == signed, row.s
        assert row.b == signed % splits.HASH_BUCKETS
    # The same buckets as splits.split_buckets (collect keeps a local collection's order).
    ids = np.array([f"txn-{i:09d}" for i in range(300)])
    for k, seed in enumerate((0, 42, -1, 2**31 - 1)):
        chunk = rows[5 + 300 * k : 5 + 300 * (k + 1)]
        assert [r.s for r in chunk] == [f"{seed}:{i}" for i in ids]
        assert [r.b for r in chunk] == splits.split_buckets(ids, seed).tolist()


# --------------------------------------------------------------------------- data prep


_NUMBER_STYLES = {
    "repr": repr,
    "g17": lambda v: f"{v:.17g}",
    "fixed6": lambda v: f"{v:.6f}",
    "exp": lambda v: f"{v:.10E}",
    "padded": lambda v: f" {v!r}\t",
    "signed": lambda v: f"{v:+.15g}",
    "bare": lambda v: (repr(v).removesuffix(".0") + ".") if float(v).is_integer() else repr(v).replace("0.", ".", 1),
}
# Corruptions pandas rejects (or, for " 1", accepts): both engines must answer alike.
_BAD_CELLS = ["abc", "", "  ", "nan", "-inf", "1e999", "0x1p3", "1d", "-1", "2", "0.5", " 1"]


@st.composite
def raw_csvs(draw):
    """A Kaggle-schema CSV: random finite values, each column in its own number format, optionally
    quoted header/labels, CRLF line ends, a missing final newline, and sometimes one corrupted cell
    or row."""
    n = draw(st.integers(1, 40))
    value = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000).map(float)
    columns = {c: draw(st.lists(value, min_size=n, max_size=n)) for c in FEATURE_COLUMNS}
    columns["Amount"] = [abs(v) for v in columns["Amount"]]
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    styles = {c: draw(st.sampled_from(sorted(_NUMBER_STYLES))) for c in FEATURE_COLUMNS}
    quote_header, quote_label = draw(st.booleans()), draw(st.booleans())
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    rows = []
    for i in range(n):
        cells = [_NUMBER_STYLES[styles[c]](columns[c][i]) for c in FEATURE_COLUMNS]
        cells.append(f'"{labels[i]}"' if quote_label else str(labels[i]))
        rows.append(cells)
    if draw(st.integers(0, 4)) == 0:  # one corruption in a fifth of the files
        row = draw(st.integers(0, n - 1))
        if draw(st.booleans()):
            rows[row][draw(st.integers(0, len(RAW_COLUMNS) - 1))] = draw(st.sampled_from(_BAD_CELLS))
        else:
            rows[row] = rows[row] + ["9"] if draw(st.booleans()) else rows[row][:-1]
    head = ",".join(f'"{c}"' if quote_header else c for c in RAW_COLUMNS)
    text = newline.join([head, *(",".join(r) for r in rows)]) + (newline if draw(st.booleans()) else "")
    return text.encode()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    csv=raw_csvs(),
    seed=st.integers(-(2**31), 2**31 - 1),
    ratios=st.sampled_from([(0.7, 0.15, 0.15), (0.5, 0.25, 0.25), (0.34, 0.33, 0.33)]),
)
def test_generated_csvs_split_identically(spark, tmp_path_factory, csv, seed, ratios):
    """Same splits from both engines, or the same RawDataError."""
    from fraud_assets.lib.training.raw_data import RawDataError

    workdir = tmp_path_factory.mktemp("prep")
    try:
        expected = prepare_with_pandas(csv, "generated.csv", seed, ratios)
    except RawDataError as err:
        with scan_partition_bytes(spark, len(csv) // 3), pytest.raises(RawDataError) as got:
            prepare_with_spark(spark, csv, "generated.csv", seed, ratios, workdir)
        assert str(got.value) == str(err)
        return
    with scan_partition_bytes(spark, len(csv) // 3):
        got = prepare_with_spark(spark, csv, "generated.csv", seed, ratios, workdir)
    assert_same_splits(expected, got)


@pytest.fixture(scope="module")
def large_csv() -> bytes:
    synthetic = pytest.importorskip("fraud_assets.lib.seeding.synthetic")
    return synthetic.to_csv_bytes(synthetic.generate_transactions(40_000, 0.01, seed=11))


@pytest.fixture(scope="module")
def large_splits(spark, large_csv, tmp_path_factory):
    expected = prepare_with_pandas(large_csv, "creditcard.csv", 42, splits.DEFAULT_RATIOS)
    with scan_partition_bytes(spark, 3 << 20):
        got = prepare_with_spark(spark, large_csv, "creditcard.csv", 42, splits.DEFAULT_RATIOS, tmp_path_factory.mktemp("big"))
    return expected, got


def test_large_synthetic_set_splits_identically(large_csv, large_splits):
    expected, got = large_splits
    assert len(large_csv) > 3 * (3 << 20)  # several scan partitions
    assert_same_splits(expected, got)
    summary = splits.split_summary(40_000, got)
    for name, share in zip(splits.SPLITS, splits.DEFAULT_RATIOS):
        assert summary["splits"][name]["fraction"] == pytest.approx(share, abs=0.01)
        assert summary["splits"][name]["fraudCount"] > 0


def test_summary_and_layout_of_the_script(spark, tmp_path):
    csv = (
        b"Time,V1,V2,V3,V4,V5,V6,V7,V8,V9,V10,V11,V12,V13,V14,V15,V16,V17,V18,V19,V20,V21,V22,V23,V24,V25,V26,V27,V28,Amount,Class,extra\n"
    )
    csv += b"".join(f"{i},{','.join(['0.5'] * 28)},{i * 1.25},{i % 2},x\n".encode() for i in range(50))
    (tmp_path / "in.csv").write_bytes(csv)
    counts = prep.extract_training_dataset_spark(spark, str(tmp_path / "in.csv"), None, str(tmp_path / "dataset"), 5)
    assert counts["rawRowsRead"] == 50 and counts["engine"] == "spark"
    summary = prep.split_dataset_spark(spark, str(tmp_path / "dataset"), str(tmp_path / "out"), 5, (0.6, 0.2, 0.2))
    assert summary["recordCount"] == 50 and summary["engine"] == "spark"
    assert sum(s["rows"] for s in summary["splits"].values()) == 50
    for name in splits.SPLITS:
        table = pq.read_table(tmp_path / "out" / f"split={name}")
        assert table.column_names == [TRANSACTION_ID, *RAW_COLUMNS]  # extra input columns and the provenance dropped
        assert table.schema.field("Class").type == pa.int64() and table.schema.field("Time").type == pa.float64()
        assert table.num_rows == summary["splits"][name]["rows"]
        assert summary["splits"][name]["fraudCount"] == pc_sum(table.column("Class"))


def pc_sum(column) -> int:
    return int(sum(column.to_pylist()))


def _good_rows(n: int = 40) -> list[str]:
    return [f"{i},{','.join(['0.5'] * 28)},{i}.5,0" for i in range(n)]


def _replace_cell(rows: list[str], index: int, column: str, text: str) -> list[str]:
    cells = rows[index].split(",")
    cells[RAW_COLUMNS.index(column)] = text
    return rows[:index] + [",".join(cells)] + rows[index + 1 :]


HEADER = ",".join(RAW_COLUMNS)
BAD_FILES = {
    "missing column": HEADER.replace(",V7,", ",") + "\n" + "\n".join(_good_rows()),
    "duplicated column": HEADER + ",V3\n" + "\n".join(r + ",1" for r in _good_rows()),
    "non-numeric": HEADER + "\n" + "\n".join(_replace_cell(_good_rows(), 20, "V1", "abc")),
    "label": HEADER + "\n" + "\n".join(_replace_cell(_good_rows(), 33, "Class", "2")),
    "negative amount": HEADER + "\n" + "\n".join(_replace_cell(_good_rows(), 12, "Amount", "-3.25")),
    "empty": HEADER + "\n" + "\n".join(_replace_cell(_good_rows(), 5, "V9", "")),
    "nan": HEADER + "\n" + "\n".join(_replace_cell(_good_rows(), 3, "V1", "NaN")),
    "leftmost column wins": HEADER + "\n" + "\n".join(_replace_cell(_replace_cell(_good_rows(), 9, "V20", "x"), 9, "V4", "y")),
    "first row wins": HEADER + "\n" + "\n".join(_replace_cell(_replace_cell(_good_rows(), 30, "V1", "x"), 25, "V28", "y")),
    "extra field": HEADER + "\n" + "\n".join(_good_rows()[:7] + [_good_rows()[7] + ",9"] + _good_rows()[8:]),
    "no rows": HEADER + "\n",
    "blank file": " \n\n",
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_fails_like_pandas(spark, tmp_path, case):
    """The same RawDataError (problem, row, column, value) from both engines, naming the source."""
    from fraud_assets.lib.training.raw_data import RawDataError

    data = BAD_FILES[case].encode()
    with pytest.raises(RawDataError) as expected:
        extraction.extract_with_pandas(data, "s3://bucket/raw/bad.csv", extraction.empty_daily_rows(), 42)
    with scan_partition_bytes(spark, len(data) // 3):
        with pytest.raises(RawDataError) as got:
            extract_with_spark(spark, data, "s3://bucket/raw/bad.csv", extraction.empty_daily_rows(), 42, None, tmp_path)
    fields = ("source", "problem", "row", "column", "value")
    assert {f: getattr(got.value, f) for f in fields} == {f: getattr(expected.value, f) for f in fields}
    assert str(got.value) == str(expected.value)
    assert not list(tmp_path.iterdir())  # staging cleaned up, nothing written


# --------------------------------------------------------------------------- features


def to_spark(spark, frame: pd.DataFrame, directory: Path):
    path = directory / f"in-{uuid.uuid4().hex}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, coerce_timestamps="us")
    return spark.read.parquet(str(path))


def from_spark(df, directory: Path) -> pd.DataFrame:
    path = directory / f"out-{uuid.uuid4().hex}"
    df.write.parquet(str(path))
    return pq.read_table(path).to_pandas()


def assert_same_features(expected: pd.DataFrame, got: pd.DataFrame, key: str = TRANSACTION_ID) -> None:
    got = got.sort_values(key).reset_index(drop=True)
    expected = expected.sort_values(key).reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    new = [c for c in features.engineered_feature_names(True) if c in expected.columns and c not in FEATURE_COLUMNS]
    for column in new:
        e, g = expected[column].to_numpy(), got[column].to_numpy()
        if column in ("hour_of_day", "is_night"):
            assert g.dtype == e.dtype == np.int64, column
            assert g.tolist() == e.tolist(), column
        else:
            np.testing.assert_allclose(g, e, rtol=0, atol=1e-9, equal_nan=True, err_msg=column)


def test_features_agree_on_the_prepared_splits(spark, large_splits, tmp_path):
    _, prepared = large_splits
    train = prepared["train"]
    stats = features.fit_feature_stats(train)
    spark_train = to_spark(spark, train, tmp_path)
    spark_stats = feng.fit_feature_stats_spark(spark_train)
    assert spark_stats.keys() == stats.keys()
    assert spark_stats["train_rows"] == stats["train_rows"]
    assert spark_stats["amount_mean"] == pytest.approx(stats["amount_mean"], rel=1e-12)
    assert spark_stats["amount_std"] == pytest.approx(stats["amount_std"], rel=1e-12)
    for name in splits.SPLITS:
        frame = prepared[name]
        got = from_spark(feng.add_features_spark(to_spark(spark, frame, tmp_path), stats), tmp_path)
        assert_same_features(features.add_features(frame, stats), got)


def customer_frame(rng: np.random.Generator, n: int, days: int = 3) -> pd.DataFrame:
    """Transactions with customers, merchants and timestamps over `days` days: bunched in time so
    windows overlap, with same-instant ties, missing customers/merchants/timestamps and a negative
    Time or two."""
    frame = pd.DataFrame({c: rng.normal(size=n) for c in FEATURE_COLUMNS})
    frame["Time"] = np.concatenate([[-1.0, 3599.9999999999995], rng.integers(0, 172_800, n - 2).astype(float)])[:n]
    frame["Amount"] = np.round(rng.lognormal(3, 1.5, n), 2)
    frame[LABEL_COLUMN] = (rng.random(n) < 0.2).astype("int64")
    frame.insert(0, TRANSACTION_ID, [f"txn-{i:09d}" for i in range(n)])
    customers = rng.integers(0, max(2, n // 15), n).astype(str).astype(object)
    customers[rng.random(n) < 0.03] = None
    merchants = np.array([f"merchant {i}" for i in rng.integers(0, 25, n)], dtype=object)
    merchants[rng.random(n) < 0.03] = None
    grid = rng.choice([1, 60, 900], n)
    seconds = rng.integers(0, days * 86_400, n) // grid * grid
    stamps = pd.Series(pd.Timestamp("2026-01-15", tz="UTC") + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us, UTC]")
    stamps[rng.random(n) < 0.03] = pd.NaT
    frame["customerId"], frame["merchant"], frame["timestamp"] = customers, merchants, stamps
    return frame


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([2, 30, 400]))
def test_features_agree_on_frames_with_customers(spark, tmp_path_factory, seed, n):
    """Customer fields pass through both engines untouched: the history features are not theirs."""
    directory = tmp_path_factory.mktemp("features")
    frame = customer_frame(np.random.default_rng(seed), n)
    train, scored = frame.iloc[: max(1, n // 2)].reset_index(drop=True), frame
    stats = features.fit_feature_stats(train)
    assert feng.fit_feature_stats_spark(to_spark(spark, train, directory)).keys() == stats.keys()
    expected = features.add_features(scored, stats)
    got = from_spark(feng.add_features_spark(to_spark(spark, scored, directory), stats), directory)
    assert_same_features(expected, got)
    assert got["customerId"].tolist() == expected["customerId"].tolist()


@pytest.mark.parametrize(("label_delay_days", "timestamps"), [(0, "datetime"), (3, "iso"), (1, "datetime")])
def test_history_features_agree(spark, tmp_path, label_delay_days, timestamps):
    """history_features and history_features_spark on a few thousand rows over 40 days, with
    missing customers, merchants and timestamps and one NaN amount: equal to 1e-9."""
    frame = customer_frame(np.random.default_rng(label_delay_days), 3000, days=40)
    frame.loc[17, "Amount"] = np.nan
    if timestamps == "iso":
        frame["timestamp"] = [None if pd.isna(t) else t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in frame["timestamp"]]
    expected = pd.concat([frame, history.history_features(frame, label_delay_days)], axis=1)
    got = from_spark(feng.history_features_spark(to_spark(spark, frame, tmp_path), label_delay_days), tmp_path)
    got = got.sort_values(TRANSACTION_ID).reset_index(drop=True)
    expected = expected.sort_values(TRANSACTION_ID).reset_index(drop=True)
    assert list(got.columns) == list(expected.columns) == [*frame.columns, *history.HISTORY_FEATURES]
    assert got[TRANSACTION_ID].tolist() == expected[TRANSACTION_ID].tolist()
    for column in history.HISTORY_FEATURES:
        e, g = expected[column].to_numpy(), got[column].to_numpy()
        assert g.dtype == e.dtype == np.float64, column
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-9, equal_nan=True, err_msg=column)
    # The frame exercises what it should: long windows filled, missing fields, spoiled means.
    assert expected["customer_tx_count_30d"].max() > 10 and expected["terminal_tx_count_30d"].max() > 50
    assert expected["terminal_risk_7d"].between(0.05, 0.5).any()
    for column in ("velocity_1h", "terminal_risk_1d", "customer_mean_amount_7d"):
        assert expected[column].isna().any() and expected[column].notna().any()


def test_feature_job_writes_splits_and_stats(spark, large_splits, tmp_path):
    _, prepared = large_splits
    source = tmp_path / "prep"
    for name, frame in prepared.items():
        (source / f"split={name}").mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(frame.head(2000), preserve_index=False), source / f"split={name}" / "part-0.parquet")
    summary = feng.main(["--input", str(source), "--output", str(tmp_path / "features"), "--JOB_NAME", "x"], spark=spark)
    stats = features.fit_feature_stats(prepared["train"].head(2000))
    written = __import__("json").loads((tmp_path / "features" / feng.STATS_FILE).read_text())
    assert written["amount_mean"] == pytest.approx(stats["amount_mean"], rel=1e-12)
    assert summary["featureNames"] == features.engineered_feature_names(False)
    for name in splits.SPLITS:
        got = pq.read_table(tmp_path / "features" / f"split={name}").to_pandas()
        assert len(got) == summary["splits"][name]["rows"] == 2000
        assert_same_features(features.add_features(prepared[name].head(2000), written), got)
    assert math.isfinite(written["amount_std"])


def test_engine_resource_engineers_features_alike_on_spark_and_pandas(spark, large_splits):
    """The engineered_features asset's path: DataPrepEngine.engineer_features on either engine."""
    from fraud_assets.defs.engines import DataPrepEngine

    prepared, _ = large_splits
    spark_tables, spark_stats = DataPrepEngine(engine="spark").engineer_features(prepared)
    pandas_tables, pandas_stats = DataPrepEngine(engine="pandas").engineer_features(prepared)
    assert spark_stats["amount_mean"] == pytest.approx(pandas_stats["amount_mean"], rel=1e-12)
    for name, expected in pandas_tables.items():
        got = spark_tables[name]
        assert got[TRANSACTION_ID].tolist() == expected[TRANSACTION_ID].tolist()
        for column in features.engineered_feature_names(has_customer_fields=False):
            assert np.allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=0, atol=1e-9), column


# --------------------------------------------------------------------------- the training data set


@st.composite
def daily_parts(draw):
    """Labelled daily rows of a few days: some ids repeated across days (kept from the first day),
    some ids shaped like raw ids (which the raw row wins), fraud here and there."""
    from fraud_assets.lib.training import extraction

    frames = []
    for day in range(draw(st.integers(0, 3))):
        date = f"2024-05-0{day + 1}"
        n = draw(st.integers(0, 30))
        ids = [f"TXN-{draw(st.integers(0, 40)):04d}" if draw(st.booleans()) else f"txn-{draw(st.integers(0, 60)):09d}" for _ in range(n)]
        ids = list(dict.fromkeys(ids))  # a day's batch has each id once (the parser keeps the first)
        values = draw(st.lists(st.floats(-50, 50, allow_nan=False), min_size=len(ids), max_size=len(ids)))
        frame = pd.DataFrame({c: values for c in FEATURE_COLUMNS})
        frame["Amount"] = frame["Amount"].abs()
        frame.insert(0, "transactionId", ids)
        frame["Class"] = draw(st.lists(st.integers(0, 1), min_size=len(ids), max_size=len(ids)))
        frame["source"] = extraction.daily_source(date)
        frames.append(extraction.normalise(frame))
    return pd.concat(frames, ignore_index=True) if frames else extraction.empty_daily_rows()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(daily=daily_parts(), cap=st.one_of(st.none(), st.integers(1, 80)), seed=st.integers(0, 1000))
def test_extraction_and_dataset_splits_agree(spark, tmp_path_factory, daily, cap, seed):
    """The training data set from the raw CSV plus labelled daily rows (duplicates, sampling) and its
    splits: pandas and Spark give the same rows, provenance and counts, and the same splits."""
    from fraud_assets.lib.aws.storage import write_parquet
    from fraud_assets.lib.training import extraction, prep_engines

    synthetic = pytest.importorskip("fraud_assets.lib.seeding.synthetic")
    csv = synthetic.to_csv_bytes(synthetic.generate_transactions(60, 0.1, seed=seed))
    workdir = tmp_path_factory.mktemp("extract")
    expected, expected_summary = extraction.extract_with_pandas(csv, "creditcard.csv", daily, seed, cap)
    got, got_summary = prep_engines.extract_with_spark(spark, csv, "creditcard.csv", daily, seed, cap, workdir)
    assert got.schema == expected.schema == extraction.DATASET_SCHEMA
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas(), check_exact=True)
    assert got_summary == expected_summary
    if len(expected):
        for name, frame in (("expected", expected), ("got", got)):
            with open(workdir / f"{name}.parquet", "wb") as f:
                write_parquet(frame, f)
        assert_same_splits(
            prep_engines.split_dataset_with_pandas(workdir / "expected.parquet", seed, (0.6, 0.2, 0.2)),
            prep_engines.split_dataset_with_spark(spark, workdir / "got.parquet", seed, (0.6, 0.2, 0.2), workdir),
        )


def test_extraction_on_spark_reports_a_bad_raw_file_like_pandas(spark, tmp_path):
    from fraud_assets.lib.training import extraction, prep_engines
    from fraud_assets.lib.training.raw_data import RawDataError

    synthetic = pytest.importorskip("fraud_assets.lib.seeding.synthetic")
    csv = synthetic.to_csv_bytes(synthetic.generate_transactions(30, 0.1, seed=1)).replace(b"\n", b"\nabc,", 1)
    with pytest.raises(RawDataError) as by_pandas:
        extraction.extract_with_pandas(csv, "creditcard.csv", extraction.empty_daily_rows(), 1)
    with pytest.raises(RawDataError) as by_spark:
        prep_engines.extract_with_spark(spark, csv, "creditcard.csv", extraction.empty_daily_rows(), 1, None, tmp_path)
    assert str(by_spark.value) == str(by_pandas.value)
