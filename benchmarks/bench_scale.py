"""`make bench-scale`: the training graph and the daily graph at growing sizes on the local stack,
with wall time, CPU time and peak RSS of the whole process tree (this process, moto, the model
server, Spark's JVM) per step, and the growth factor per 10x. Not a test: nothing here asserts.

    python -m benchmarks.bench_scale [--training-rows 284807,2848070] [--engines pandas,spark]
                                     [--training-engines sagemaker,in-process]
                                     [--days 10000,100000,1000000] [--json PATH]

Per training engine (`training_engine`: a SageMaker training job on the local stack, or xgboost in
this process) the training runs record the main process's peak RSS over the CSV's size and the
fraud_model step's wall time.

Data is generated and uploaded by a child process, so this process holds only what the graphs
themselves hold. RSS and CPU are sampled every 0.1 s with psutil (a spike shorter than that can
be missed); per step, CPU is the tree's CPU seconds between the step's start and end events, and
`peak_main_rss_mb` is this process alone (where the steps run: the in-process executor).
Results are written after every run, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

MB = 1024 * 1024


class TreeMonitor:
    """Samples (time, tree RSS, main RSS, tree CPU seconds) of this process and its descendants."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.samples: list[tuple[float, int, int, float]] = []
        self._stop = threading.Event()
        self._me = psutil.Process()
        self._thread = threading.Thread(target=self._run, name="tree-monitor", daemon=True)

    def __enter__(self) -> "TreeMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval)

    def sample(self) -> tuple[float, int, int, float]:
        now = time.time()
        tree_rss, cpu, main_rss = 0, 0.0, 0
        for proc in [self._me, *self._me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
            except psutil.Error:  # exited between listing and reading
                continue
            tree_rss += rss
            cpu += times.user + times.system
            if proc.pid == self._me.pid:
                main_rss = rss
        return now, tree_rss, main_rss, cpu

    def window(self, start: float, end: float) -> dict:
        inside = [s for s in self.samples if start <= s[0] <= end] or [self.sample()]
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= end] or [self.sample()]
        return {
            "wall_s": round(end - start, 3),
            "cpu_s": round(after[0][3] - before[-1][3], 3),
            "peak_tree_rss_mb": round(max(s[1] for s in inside) / MB),
            "peak_main_rss_mb": round(max(s[2] for s in inside) / MB),
        }


def run_job(monitor: TreeMonitor, job_name: str, resources: dict | None = None, partition_key: str | None = None) -> dict:
    """Execute a job in this process as `fraud-assets run` does (`main_job.execute`: execute_job,
    the job's in-process executor, no step output captured); the whole run and each step measured
    from the run's own events."""
    from dagster import DagsterEventType, DagsterInstance

    from fraud_assets.main_job import execute

    instance = DagsterInstance.get()
    main_rss_before = monitor.sample()[2]
    started = time.time()
    result = execute(job_name, instance, resources=resources, partition_key=partition_key)
    ended = time.time()
    starts, steps = {}, {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = entry.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and event.step_key in starts:
            steps[event.step_key] = {
                **monitor.window(starts[event.step_key], entry.timestamp),
                "succeeded": event.event_type == DagsterEventType.STEP_SUCCESS,
            }
    return {
        "succeeded": result.success,
        "main_rss_before_mb": round(main_rss_before / MB),
        **monitor.window(started, ended),
        "steps": steps,
    }


def upload_in_child(env: dict[str, str], code: str) -> float:
    """Run `code` (which generates data and uploads it to the stack) in a child Python process;
    returns its wall seconds. Its memory is gone before the graph runs."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - started


def growth(runs: dict[str, dict], sizes: list[int]) -> list[dict]:
    """Per 10x (consecutive sizes): how much wall, CPU and peak RSS grew, normalised to 10x."""
    out = []
    for small, large in zip(sizes, sizes[1:]):
        a, b = runs.get(str(small)), runs.get(str(large))
        if not a or not b or not a["succeeded"] or not b["succeeded"]:
            continue
        factor = large / small
        out.append(
            {
                "from": small,
                "to": large,
                "size_ratio": round(factor, 2),
                **{f"{k}_ratio": round(b[k] / a[k], 2) for k in ("wall_s", "cpu_s", "peak_tree_rss_mb", "peak_main_rss_mb") if a[k]},
                "us_per_row_small": round(a["wall_s"] / small * 1e6, 1),
                "us_per_row_large": round(b["wall_s"] / large * 1e6, 1),
            }
        )
    return out


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--training-rows", default="284807,2848070")
    parser.add_argument("--engines", default="pandas,spark")
    parser.add_argument("--training-engines", default="sagemaker,in-process")
    parser.add_argument("--days", default="10000,100000,1000000")
    parser.add_argument("--json", default=".fraud_assets/bench_scale.json")
    args = parser.parse_args()
    training_rows = [int(x) for x in args.training_rows.split(",") if x]
    engines = [x for x in args.engines.split(",") if x]
    days = [int(x) for x in args.days.split(",") if x]

    from fraud_assets.lib.config import FIRST_DAY_VARIABLE
    from fraud_assets_local.stack import LocalStack

    os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="fraud-bench-scale-dagster-")
    # The benchmark's days (2026-02/03) are partitions: before the code location loads.
    os.environ.setdefault(FIRST_DAY_VARIABLE, "2026-01-01")
    out_path = Path(args.json)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "memory_mb": round(psutil.virtual_memory().total / MB),
        "training": {},
        "daily": {},
    }

    def save() -> None:
        out_path.write_text(json.dumps(results, indent=2))

    with LocalStack() as stack, TreeMonitor() as monitor:
        env = {**os.environ, **stack.env()}
        os.environ.update(stack.env())
        for engine, training_engine in [(e, t) for e in engines for t in args.training_engines.split(",") if t]:
            runs = results["training"].setdefault(f"{engine}/{training_engine}", {})
            resources = {
                "training_engine": {"engine": training_engine},
                # Spark's driver holds the 10x data in local mode: 4g, as bench_spark (2g, the
                # default, loses the driver at 2.85M rows).
                "data_prep_engine": {"engine": engine, "spark_config": {"spark.driver.memory": "4g"} if engine == "spark" else {}},
                # Each size is its own synthetic data set: a smaller one's model must not be held
                # back for being worse than a larger one's. The benchmark times the graph.
                "quality_gates": {"regression_tolerance": 1.0},
            }
            for rows in training_rows:
                upload_s = upload_in_child(
                    env,
                    (
                        "import boto3\n"
                        "from fraud_assets.lib.aws.storage import put_bytes\n"
                        "from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames\n"
                        "from fraud_assets.lib.seeding.synthetic import generate_transactions, to_csv_bytes\n"
                        f"data = to_csv_bytes(generate_transactions(n_rows={rows}))\n"
                        "put_bytes(boto3.client('s3'), PlatformNames.from_env().data_bucket, RAW_DATA_KEY, data)\n"
                        "print(len(data))\n"
                    ),
                )
                csv_mb = _raw_csv_mb()
                run = {
                    "load_before": load(),
                    "csv_mb": csv_mb,
                    "generate_and_upload_s": round(upload_s, 1),
                    **run_job(monitor, "training_job", resources),
                    "load_after": load(),
                }
                # Data preparation: the data set's extraction and its split.
                prep = [run["steps"][s]["peak_main_rss_mb"] for s in ("data_extraction", "prepared_splits") if s in run["steps"]]
                if prep:
                    run["prep_peak_main_rss_mb"] = max(prep)
                    run["prep_peak_main_rss_over_csv"] = round(max(prep) / csv_mb, 2)
                run["peak_main_rss_over_csv"] = round(run["peak_main_rss_mb"] / csv_mb, 2)
                run["fraud_model_wall_s"] = run["steps"].get("fraud_model", {}).get("wall_s")
                runs[str(rows)] = run
                print(
                    json.dumps({"training": f"{engine}/{training_engine}", "rows": rows, **{k: v for k, v in run.items() if k != "steps"}}),
                    flush=True,
                )
                save()
            results["training"][f"{engine}/{training_engine}_growth"] = growth(runs, training_rows)
            save()
        # The daily graph needs the deployed endpoint: the last training run left one.
        for i, size in enumerate(days):
            date = f"2026-03-{10 + i:02d}"
            upload_s = upload_in_child(
                env,
                (
                    "import boto3\n"
                    "from fraud_assets.lib.aws.storage import put_bytes\n"
                    "from fraud_assets.lib.config import PlatformNames, daily_batch_key\n"
                    "from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch\n"
                    f"data = batch_to_json_bytes(generate_daily_batch({date!r}, n_transactions={size}))\n"
                    f"put_bytes(boto3.client('s3'), PlatformNames.from_env().data_bucket, daily_batch_key({date!r}), data)\n"
                ),
            )
            run = {
                "load_before": load(),
                "generate_and_upload_s": round(upload_s, 1),
                **run_job(monitor, "inference_job", partition_key=date),
                "load_after": load(),
            }
            run["us_per_transaction"] = round(run["wall_s"] / size * 1e6, 1)
            run["cpu_us_per_transaction"] = round(run["cpu_s"] / size * 1e6, 1)
            results["daily"][str(size)] = run
            print(json.dumps({"daily": size, **{k: v for k, v in run.items() if k != "steps"}}), flush=True)
            results["daily_growth"] = growth(results["daily"], days)
            save()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    save()
    print(json.dumps(results, indent=2))


def _raw_csv_mb() -> float:
    import boto3

    from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames

    head = boto3.client("s3").head_object(Bucket=PlatformNames.from_env().data_bucket, Key=RAW_DATA_KEY)
    return round(head["ContentLength"] / MB, 1)


if __name__ == "__main__":
    main()
