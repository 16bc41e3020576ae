"""The code location as every entry point sees it: how its runs execute, and where its days start."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import types

import dagster as dg
import pytest
from dagster import in_process_executor

from fraud_assets.definitions import defs, location_defs
from fraud_assets.defs.resources import TrainingEngine, resources
from fraud_assets.lib.config import FIRST_DAY_VARIABLE


def test_every_job_runs_in_one_process_including_the_implicit_asset_job():
    # "Materialize all" and an asset page's "Materialize" launch the implicit asset job: with
    # Dagster's default executor each step was a process of its own paying the location's import
    # again (one daily partition 3.7x slower than in process).
    for loaded in (defs(), location_defs(quality_gates=None)):
        executors = {job.name: job.executor_def for job in loaded.resolve_all_job_defs()}
        assert "__ASSET_JOB" in executors
        assert {name: e.name for name, e in executors.items() if e is not in_process_executor} == {}


def test_no_job_has_a_hook_so_no_step_output_is_held_past_its_step():
    # Dagster captures every step's outputs in a job with any hook (for the hook to read): the
    # training graph's data set and splits stayed in memory (measured at 2.85M rows: 1.07 GB of
    # split frames after prepared_splits). The IO manager releases freed memory between steps instead.
    for job in defs().resolve_all_job_defs():
        assert not job.hook_defs, job.name


def _fresh_process(code: str, **env: str) -> dict:
    """`code`'s printed JSON from a new interpreter without FRAUD_FIRST_DAY unless given: what a
    plain `dagster dev`, a code server or `make run` loads, not this test process's partitions."""
    environ = {k: v for k, v in os.environ.items() if k != FIRST_DAY_VARIABLE}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**environ, **env}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


PARTITIONS = """
import json, os
from fraud_assets.defs.common import daily_partitions
keys = daily_partitions.get_partition_keys()
print(json.dumps({"first": keys[0], "last": keys[-1]}))
"""

MAKE_RUN = """
import argparse, json, os
from fraud_assets.cli import DateRangeError, _check_partition_dates
from fraud_assets.lib.seeding.seed import seed_dates
from fraud_assets.defs.common import daily_partitions
refused = {}
for start in (None, "2020-01-01"):
    try:
        _check_partition_dates(argparse.Namespace(days=11, start_date=start))
    except DateRangeError as err:
        refused[str(start)] = str(err)
keys = set(daily_partitions.get_partition_keys())
print(json.dumps({"seeded_inside": set(seed_dates(11, None)) <= keys, "first": min(keys), "refused": refused,
                  "variable_after": os.environ.get("FRAUD_FIRST_DAY")}))
"""


def test_every_entry_point_sees_the_same_fixed_first_day():
    # Before: only `make dev` read the day `make run` recorded; a plain `dagster dev` showed the 8
    # days ending yesterday while `make run` seeds 11, and the first day moved with the clock.
    plain = _fresh_process(PARTITIONS)
    make_run = _fresh_process(MAKE_RUN)
    assert plain["first"] == make_run["first"]
    assert make_run["seeded_inside"], "the 11 days `make run` seeds must be partitions of every process"
    assert make_run["variable_after"] is None, "checking its days must not move this process's partitions"
    # A day before the first day is refused before any work, naming the setting that moves it.
    assert list(make_run["refused"]) == ["2020-01-01"] and FIRST_DAY_VARIABLE in make_run["refused"]["2020-01-01"]
    # The variable moves the first day for whoever sets it (a deployment sets it for every process).
    assert _fresh_process(PARTITIONS, **{FIRST_DAY_VARIABLE: "2025-06-01"})["first"] == "2025-06-01"


def test_the_first_day_does_not_slide_with_the_clock(monkeypatch):
    # In a deployment the location reloads on every deploy; a start computed from today slid
    # forward each time and dropped the days before it.
    import fraud_assets.defs.common as common

    firsts = set()
    for today in (dt.date(2026, 12, 4), dt.date(2027, 6, 30)):

        class Clock(dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return dt.datetime.combine(today, dt.time(12), tzinfo=tz)

        monkeypatch.setattr(common, "dt", types.SimpleNamespace(**{**vars(dt), "datetime": Clock}))
        firsts.add(common.first_partition_day({}))
    assert len(firsts) == 1, firsts


def test_bounded_settings_bound_to_variables_load_and_are_checked_when_the_run_resolves_them(monkeypatch):
    # Bound to a variable, a bounded int is a placeholder reading 0 until the run resolves it: the
    # location must load, the run must see the variable's value, and a value out of bounds fails there.
    monkeypatch.setenv("FRAUD_TRAINING_INSTANCE_COUNT", "3")
    monkeypatch.setenv("FRAUD_TRAINING_MAX_RUNTIME_SECONDS", "900")

    @dg.asset
    def hosts(training_engine: TrainingEngine) -> tuple[int, int]:
        return training_engine.instance_count, training_engine.max_runtime_seconds

    def run():
        bound = resources().resources["training_engine"]
        return dg.materialize([hosts], resources={"training_engine": bound}).output_for_node("hosts")

    assert run() == (3, 900)
    monkeypatch.setenv("FRAUD_TRAINING_INSTANCE_COUNT", "101")
    with pytest.raises(dg.DagsterResourceFunctionError) as refused:
        run()
    assert "instance_count must be 1..100, not 101" in str(refused.value.__cause__)
    with pytest.raises(ValueError, match="max_runtime_seconds must be at least 1, not 0"):
        TrainingEngine(max_runtime_seconds=0)
