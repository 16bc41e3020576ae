"""Runs launched the way the UI launches them against the same work in process.

    python -m benchmarks.bench_launched [--rows N] [--transactions-per-day N]

The UI submits a run to the instance's run launcher (DefaultRunLauncher: a new `dagster api
execute_run` process that loads the code location and executes the job). `dagster job launch`
submits through that same launcher; the time counted is the run's own, from its creation to its
end as the instance records them, so the CLI's start-up (which the UI does not pay per run) is
left out. The baseline is `execute_in_process` of the same job and partition in this process, as
`make run` does it. Runs are launched at once (DefaultRunCoordinator) rather than queued for the
daemon's next tick as under `dagster dev`. Also times the code location's import on its own (a fresh interpreter),
and the cold imports any launched daily run pays (`floor_ratio`: the best ratio a launched run
could reach with no Dagster overhead at all).

`asset_job_daily` is the other way the UI launches the same work: "Materialize all" on the inference
group (or "Materialize" on an asset page) for one day, a run of the implicit asset job `__ASSET_JOB`
with an asset selection, sent as the UI sends it (the launchPipelineExecution mutation) through a
workspace loaded from workspace.yaml; it runs with the location's default executor, not the named
job's. Its ratio is against the same in-process baseline as the daily partition.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_seconds(repeat: int = 3) -> float:
    code = "import time; t = time.perf_counter(); from fraud_assets.definitions import defs; defs(); print(time.perf_counter() - t)"
    times = [
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
        for _ in range(repeat)
    ]
    return sorted(times)[len(times) // 2]


def cold_library_seconds(repeat: int = 3) -> float:
    """What a launched daily run pays before its work, whatever the code: a fresh interpreter
    importing what the run worker and the daily steps need (Dagster's run worker, pandas, the
    code location, xgboost for the reasons, which imports scikit-learn and scipy.stats, and
    scikit-learn's metrics for the realised performance). The in-process baseline has them warm."""
    code = (
        "import time; t = time.perf_counter(); import dagster._grpc.impl, pandas, xgboost, sklearn.metrics; "
        "from fraud_assets.definitions import defs; defs(); print(time.perf_counter() - t)"
    )
    times = [
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
        for _ in range(repeat)
    ]
    return sorted(times)[len(times) // 2]


def launched_seconds(instance, job: str, partition: str | None) -> tuple[float, str]:
    before = {r.run_id for r in instance.get_runs()}
    argv = [str(Path(sys.executable).with_name("dagster")), "job", "launch", "-w", "workspace.yaml", "-j", job]
    if partition:
        argv += ["--tags", json.dumps({"dagster/partition": partition})]
    subprocess.run(argv, check=True, cwd=ROOT, capture_output=True)
    [run] = [r for r in instance.get_runs() if r.run_id not in before]
    while not (record := instance.get_run_record_by_id(run.run_id)).dagster_run.is_finished:
        time.sleep(0.2)
    stats = instance.get_run_stats(run.run_id)
    return stats.end_time - record.create_timestamp.timestamp(), record.dagster_run.status.value


def asset_job_launched_seconds(instance, asset_keys, partition: str) -> tuple[float, str]:
    """One day of the selected assets launched as the UI launches "Materialize all": the implicit
    asset job with an asset selection, through the run launcher (a new process)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import materialize_assets

    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(ROOT / "workspace.yaml")])) as workspace:
        [result] = materialize_assets(workspace.create_request_context(), asset_keys, partition_keys=[partition])
        launched = result.data["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        while not (record := instance.get_run_record_by_id(run_id)).dagster_run.is_finished:
            time.sleep(0.2)
    stats = instance.get_run_stats(run_id)
    return stats.end_time - record.create_timestamp.timestamp(), record.dagster_run.status.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=284_807)
    parser.add_argument("--transactions-per-day", type=int, default=10_000)
    parser.add_argument("--json", default=".fraud_assets/bench_launched.json")
    args = parser.parse_args()

    import boto3
    from dagster import DagsterInstance

    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.seeding.seed import seed_platform
    from fraud_assets_local.stack import LocalStack

    home = Path(tempfile.mkdtemp(prefix="fraud-bench-launched-"))
    # Launched at once (DefaultRunCoordinator): under `dagster dev` runs wait in a queue for the
    # daemon's next tick first, a wait that depends on the daemon, not on the run.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    os.environ["DAGSTER_HOME"] = str(home)
    results: dict = {
        "rows": args.rows,
        "transactions_per_day": args.transactions_per_day,
        "cores": os.cpu_count(),
        "code_location_import_s": import_seconds(),
        "cold_libraries_s": cold_library_seconds(),
    }
    with LocalStack() as stack:
        os.environ.update(stack.env())
        names = PlatformNames.from_env()
        seeded = seed_platform(boto3.client("s3"), names, days=3, rows=args.rows, transactions_per_day=args.transactions_per_day)
        instance = DagsterInstance.get()
        from fraud_assets.definitions import location_defs
        from fraud_assets.main_job import QUIET

        defs = location_defs()
        for job, partition in (("training_job", None), ("inference_job", seeded["dates"][0])):
            started = time.perf_counter()
            result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition, run_config=QUIET)
            in_process = time.perf_counter() - started
            launched, status = launched_seconds(instance, job, partition if partition is None else seeded["dates"][1])
            results[job] = {
                # The least a launched run can cost: its work in process plus the cold imports.
                "floor_ratio": round((in_process + results["cold_libraries_s"]) / in_process, 2),
                "in_process_s": round(in_process, 2),
                "in_process_ok": result.success,
                "launched_s": round(launched, 2),
                "launched_status": status,
                "ratio": round(launched / in_process, 2),
                "target": 1.5,
            }
            if job == "inference_job":
                # The UI's other path to the same day's work (a day of its own: no step finds it done).
                graph = defs.resolve_asset_graph()
                keys = [k for k in graph.materializable_asset_keys if graph.get(k).group_name == "inference"]
                launched, status = asset_job_launched_seconds(instance, keys, seeded["dates"][2])
                results["asset_job_daily"] = {
                    "in_process_s": round(in_process, 2),
                    "launched_s": round(launched, 2),
                    "launched_status": status,
                    "ratio": round(launched / in_process, 2),
                    "target": 1.5,
                }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
