"""The code location as every entry point sees it: how its runs execute, and where its days start."""

from __future__ import annotations

from dagster import in_process_executor

from fraud_assets.definitions import defs, location_defs


def test_every_job_runs_in_one_process_including_the_implicit_asset_job():
    # "Materialize all" and an asset page's "Materialize" launch the implicit asset job: with
    # Dagster's default executor each step was a process of its own paying the location's import
    # again (one daily partition 3.7x slower than in process).
    for loaded in (defs(), location_defs(quality_gates=None)):
        executors = {job.name: job.executor_def for job in loaded.resolve_all_job_defs()}
        assert "__ASSET_JOB" in executors
        assert {name: e.name for name, e in executors.items() if e is not in_process_executor} == {}


def test_the_named_jobs_keep_releasing_freed_memory_between_steps():
    loaded = defs()
    for name in ("training_job", "inference_job"):
        assert "release_freed_memory" in {h.name for h in loaded.resolve_job_def(name).hook_defs}, name
