"""The fraud-assets command as a user runs it: a subprocess against the local stack."""

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames

NAMES = PlatformNames()


def fraud_assets(*args: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"), **(env or {})}
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "fraud_assets.cli", *args], capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=300
    )


def raw_keys() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=NAMES.data_bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("Time,V1,Amount\n0,1.0,2.0\n", "Class"),
        ("", "empty file"),
    ],
)
def test_bad_csv_exits_non_zero_naming_the_problem_and_uploads_nothing(aws, tmp_path, content, expected):
    bad = tmp_path / "creditcard.csv"
    bad.write_text(content)
    result = fraud_assets("run", "--csv", str(bad), "--days", "1", tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "creditcard.csv" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr
    assert raw_keys() == []
    assert not (tmp_path / "dagster_home" / "history").exists() or not any((tmp_path / "dagster_home" / "history").rglob("*.db"))


def test_non_numeric_value_is_named_by_row_and_column(aws, tmp_path):
    from fraud_assets.lib.config import RAW_COLUMNS

    header = ",".join(RAW_COLUMNS)
    good = ",".join(["1"] * (len(RAW_COLUMNS) - 1) + ["0"])
    bad = good.split(",")
    bad[3] = "abc"  # V3
    path = tmp_path / "creditcard.csv"
    path.write_text("\n".join([header, good, ",".join(bad), good]) + "\n")
    result = fraud_assets("seed", "--csv", str(path), "--days", "1", tmp_path=tmp_path)
    assert result.returncode == 2
    assert "'V3'" in result.stderr and "row 2" in result.stderr and "abc" in result.stderr
    assert raw_keys() == []


def test_seed_uploads_raw_data_daily_batches_and_due_labels(aws, tmp_path):
    result = fraud_assets(
        "seed",
        "--rows",
        "2000",
        "--days",
        "2",
        "--start-date",
        "2026-05-01",
        "--transactions-per-day",
        "50",
        "--label-delay-days",
        "2",
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Today is 2026-05-03: only the first day is two days old, so only it has labels yet.
    assert sorted(raw_keys()) == ["daily-batches/2026-05-01.json", "daily-batches/2026-05-02.json", "labels/2026-05-01.json", RAW_DATA_KEY]


def test_seed_the_world_and_refuse_it_a_csv(aws, tmp_path):
    refused = fraud_assets("seed", "--data", "world", "--csv", str(tmp_path / "x.csv"), "--days", "1", tmp_path=tmp_path)
    assert refused.returncode == 2 and "--data world" in refused.stderr and "Traceback" not in refused.stderr
    assert raw_keys() == []
    args = ("--data", "world", "--history-days", "2", "--days", "1", "--start-date", "2026-05-01", "--transactions-per-day", "50")
    result = fraud_assets("seed", *args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(raw_keys()) == ["daily-batches/2026-05-01.json", "labels/2026-05-01.json", RAW_DATA_KEY]
    header = boto3.client("s3").get_object(Bucket=NAMES.data_bucket, Key=RAW_DATA_KEY)["Body"].read().decode().splitlines()[0]
    assert header.startswith('"transactionId","timestamp","customerId","merchant","category","Time"') and "scenario" not in header


def test_experiments_list_is_readable_when_empty(aws, tmp_path):
    result = fraud_assets("experiments", "list", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_code_location_loads_without_aws_or_environment(tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    root = Path(__file__).resolve().parents[1]
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(root / "workspace.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    # A normal load logs no warnings (it was dg's "code location name ... does not match", once per
    # definition, in any checkout whose folder is not named fraud_assets).
    warnings = [line for line in (result.stdout + result.stderr).splitlines() if "WARNING" in line]
    assert warnings == [], warnings[:3]


def test_dev_starts_the_ui_without_a_warning(tmp_path, monkeypatch):
    # `dagster dev` printed a SupersessionWarning ("use dg dev") on every start of `make dev`.
    import argparse

    import fraud_assets_local.dagster_dev as dagster_dev
    from fraud_assets.cli import cmd_dev

    started = []
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setattr(dagster_dev, "run_dagster_dev", lambda argv, env: started.append(argv) or 0)
    assert cmd_dev(argparse.Namespace(port=3999)) == 0
    [argv] = started
    assert Path(argv[0]).name == "dg" and argv[1:4] == ["dev", "-w", "workspace.yaml"] and "3999" in argv


def test_every_entry_point_names_the_code_location_alike():
    import tomllib

    import yaml

    root = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    names = {
        "[tool.dagster]": pyproject["tool"]["dagster"]["code_location_name"],
        # dg's name for the project; unset it is the checkout's folder name, which varies.
        "[tool.dg.project]": pyproject["tool"]["dg"]["project"].get("code_location_name"),
        "workspace.yaml": yaml.safe_load((root / "workspace.yaml").read_text())["load_from"][0]["python_module"]["location_name"],
        "dagster_cloud.yaml": yaml.safe_load((root / "dagster_cloud.yaml").read_text())["locations"][0]["location_name"],
    }
    assert set(names.values()) == {"fraud_assets"}, names


@pytest.mark.e2e
def test_run_with_zero_days_trains_and_deploys_only(aws, tmp_path):
    summary_path = tmp_path / "summary.json"
    result = fraud_assets(
        "run",
        "--days",
        "0",
        "--rows",
        "30000",
        "--summary-json",
        str(summary_path),
        tmp_path=tmp_path,
        env={"FRAUD_GATE_PR_AUC_FLOOR": "0", "FRAUD_GATE_HIGH_RISK_PRECISION_FLOOR": "0"},
    )  # 51 frauds: gates are not the point
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    summary = json.loads(summary_path.read_text())
    assert summary["training"]["succeeded"] and summary["training"]["deployed"]
    assert summary["days"] == [] and summary["retraining"] is None
    assert raw_keys() == [RAW_DATA_KEY]  # no daily batches, no label files


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    return line


def test_a_bad_experiment_id_and_a_missing_bucket_are_one_line_errors(aws, tmp_path):
    assert "invalid experiment id '../x'" in one_line_error(fraud_assets("experiments", "show", "../x", tmp_path=tmp_path))
    assert "no experiment 'nope' recorded" in one_line_error(fraud_assets("experiments", "show", "nope", tmp_path=tmp_path))
    line = one_line_error(
        fraud_assets(
            "seed",
            "--rows",
            "200",
            "--days",
            "1",
            "--transactions-per-day",
            "5",
            tmp_path=tmp_path,
            env={"FRAUD_DATA_BUCKET": "no-such-data-bucket"},
        )
    )
    assert "NoSuchBucket" in line and "no-such-data-bucket" in line


def test_run_refuses_days_that_are_not_partitions_before_any_work(aws, tmp_path):
    line = one_line_error(fraud_assets("run", "--start-date", "2999-01-01", "--days", "2", tmp_path=tmp_path))
    assert "asks for 2999-01-01 (and 1 more days), not a daily partition" in line
    line = one_line_error(fraud_assets("run", "--start-date", "2026-02-30", tmp_path=tmp_path))
    assert "2026-02-30" in line
    assert raw_keys() == []  # nothing seeded, nothing trained


def test_the_cli_instance_monitors_runs(tmp_path):
    # A run killed mid-step must not stay STARTED forever: the daemon's run monitoring ends it.
    from dagster import DagsterInstance

    from fraud_assets.cli import _dagster_home

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # written by an earlier version
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        _dagster_home()
        instance = DagsterInstance.from_config(str(home))
        assert instance.run_monitoring_enabled and 0 < instance.run_monitoring_max_runtime_seconds <= 24 * 3600
        assert instance.run_monitoring_cancel_timeout_seconds > 0
    finally:
        os.environ.pop("DAGSTER_HOME") if saved is None else os.environ.update(DAGSTER_HOME=saved)
