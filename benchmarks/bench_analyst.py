"""What reasons and the daily report cost: the day's inference graph with them (the default) against
without them (daily_scores top_reasons=0 and no daily_report), at 10,000 and 100,000 transactions,
in one process against the local stack, alternating the two so load drifts hit both alike.

    python -m benchmarks.bench_analyst [--rows N] [--repeat R] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="training rows (the model only needs to exist)")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", default=".fraud_assets/bench_analyst.json")
    args = parser.parse_args()
    # Before the definitions load: partitions are fixed when the code location loads.
    os.environ.setdefault("FRAUD_FIRST_DAY", "2026-01-01")

    import boto3
    from dagster import AssetSelection, DagsterInstance, Definitions, define_asset_job

    from fraud_assets.definitions import location_defs
    from fraud_assets.defs.common import INFERENCE, daily_partitions
    from fraud_assets.defs.resources import QualityGates
    from fraud_assets.lib.aws.storage import put_bytes
    from fraud_assets.lib.config import RAW_DATA_KEY, PlatformNames, daily_batch_key
    from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch, generate_transactions, to_csv_bytes
    from fraud_assets.main_job import QUIET
    from fraud_assets_local.stack import LocalStack

    os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="fraud-bench-dagster-")
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict = {"cores": os.cpu_count(), "repeat": args.repeat}
    with LocalStack() as stack:
        os.environ.update(stack.env())
        names = PlatformNames.from_env()
        s3 = boto3.client("s3")
        put_bytes(s3, names.data_bucket, RAW_DATA_KEY, to_csv_bytes(generate_transactions(n_rows=args.rows)))
        without_job = define_asset_job(
            "inference_without_reasons_or_report",
            partitions_def=daily_partitions,
            selection=AssetSelection.groups(INFERENCE) - AssetSelection.assets("daily_report"),
        )
        loaded = location_defs(quality_gates=QualityGates(pr_auc_floor=0.0, high_risk_precision_floor=0.0))
        defs = Definitions.merge(loaded, Definitions(jobs=[without_job]))
        instance = DagsterInstance.get()
        assert defs.resolve_job_def("training_job").execute_in_process(instance=instance, run_config=QUIET).success
        variants = {
            "with": (defs.resolve_job_def("inference_job"), QUIET),
            "without": (defs.resolve_job_def(without_job.name), {**QUIET, "ops": {"daily_scores": {"config": {"top_reasons": 0}}}}),
        }
        day = 0
        for size in sizes:
            runs: dict[str, list] = {"with": [], "without": []}
            for _ in range(args.repeat):
                for name in ("without", "with"):
                    day += 1
                    date = f"2026-02-{day:02d}"  # a fresh day per run: no ledger or stored item from an earlier run
                    put_bytes(
                        s3,
                        names.data_bucket,
                        daily_batch_key(date),
                        batch_to_json_bytes(generate_daily_batch(date, n_transactions=size, seed=17, fraud_rate=0.01)),
                    )
                    job, config = variants[name]
                    started = time.perf_counter()
                    result = job.execute_in_process(instance=instance, partition_key=date, run_config=config)
                    wall = time.perf_counter() - started
                    steps = {
                        e.step_key: e.event_specific_data.duration_ms / 1000
                        for e in result.all_events
                        if e.event_type_value == "STEP_SUCCESS"
                    }
                    runs[name].append({"wall_s": wall, "steps_s": steps, "succeeded": result.success})
            med = {name: statistics.median(r["wall_s"] for r in runs[name]) for name in runs}
            added = statistics.median(
                w["steps_s"].get("daily_report", 0.0) + w["steps_s"].get("daily_scores", 0.0) - o["steps_s"].get("daily_scores", 0.0)
                for w, o in zip(runs["with"], runs["without"])
            )
            results[str(size)] = {
                "with_s": med["with"],
                "without_s": med["without"],
                "ratio": med["with"] / med["without"],
                "report_step_s": statistics.median(r["steps_s"].get("daily_report", 0.0) for r in runs["with"]),
                "added_step_s": added,
                "runs": runs,
            }
            print(
                f"{size:>7,} transactions: with reasons + report {med['with']:.1f} s, without {med['without']:.1f} s, "
                f"ratio {med['with'] / med['without']:.3f}; report step {results[str(size)]['report_step_s']:.2f} s, "
                f"reasons + report steps add {added:.2f} s",
                flush=True,
            )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
