"""The `fraud-assets` command: the embedded AWS stack, seeding, the main job, experiments."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
from pathlib import Path

STATE_ROOT = Path(".fraud_assets")


def _aws_is_configured() -> bool:
    """The environment already points boto3 somewhere: a local endpoint or real credentials."""
    return bool(os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))


def _local(module: str):
    """A module of the embedded AWS stack, imported only by the commands that start it: the stack is
    the separate `fraud_assets_local` package, installed for development and absent from the image."""
    import importlib

    try:
        return importlib.import_module(f"fraud_assets_local.{module}")
    except ModuleNotFoundError as err:
        if err.name != "fraud_assets_local":
            raise
        raise SystemExit(
            "the embedded AWS stack (package fraud_assets_local) is not installed here, as in the production image: "
            "point AWS_ENDPOINT_URL or AWS credentials at an AWS, or run from a development checkout (make install)"
        ) from None


@contextlib.contextmanager
def aws_target(state_dir: Path, announce=print):
    """Use the AWS the environment points at, or start the embedded stack when none is set."""
    if _aws_is_configured():
        announce(f"Using the AWS the environment points at ({os.environ.get('AWS_ENDPOINT_URL') or 'AWS account'}).")
        yield None
        return
    with _local("stack").LocalStack(state_dir=state_dir) as stack:
        os.environ.update(stack.env())
        announce(f"Started the embedded AWS stack at {stack.env()['AWS_ENDPOINT_URL']} (state in {state_dir}).")
        yield stack


# Run monitoring (the daemon `dagster dev` runs): a run whose process was killed mid-step would stay
# STARTED forever; past max_runtime_seconds the daemon cancels it, and a cancel nobody answers ends
# as CANCELED after cancel_timeout_seconds. Six hours is far beyond any run of this platform.
RUN_MONITORING = """run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_runtime_seconds: 21600
  poll_interval_seconds: 60
"""


def _dagster_home() -> None:
    """Runs go to a persistent instance so `dagster dev` shows them afterwards."""
    home = Path(os.environ.get("DAGSTER_HOME") or STATE_ROOT / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():  # an explicit (default) instance; no telemetry from a local run
        config.write_text("telemetry:\n  enabled: false\n" + RUN_MONITORING)
    elif "run_monitoring:" not in config.read_text():  # written by an earlier version: add it
        with config.open("a") as f:
            f.write("\n" + RUN_MONITORING)
    os.environ["DAGSTER_HOME"] = str(home)


def cmd_local_stack(args) -> int:
    return _local("stack").run_local_stack_cli(args.state_dir, args.moto_port, args.model_port)


def cmd_seed(args) -> int:
    from fraud_assets.lib.config import PlatformNames

    _check_data_options(args)
    _check_partition_dates(args)  # a day outside the partitions would be data no run can score
    with aws_target(Path(args.state_dir)):
        summary = _seed(args, PlatformNames.from_env())
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _seed(args, names, pending_labels: dict | None = None, labels_as_of=None) -> dict:
    from fraud_assets.lib.aws.clients import make_client
    from fraud_assets.lib.seeding.seed import seed_dates, seed_platform

    drift_from = args.drift_from
    if args.drift_last:
        drift_from = seed_dates(args.days, args.start_date)[-args.drift_last]
    return seed_platform(
        make_client("s3"),
        names,
        csv_path=args.csv,
        days=args.days,
        start_date=args.start_date,
        drift_from=drift_from,
        drift_kind=args.drift_kind,
        transactions_per_day=args.transactions_per_day,
        rows=args.rows,
        label_delay_days=args.label_delay_days,
        pending_labels=pending_labels,
        labels_as_of=labels_as_of,
        data=args.data,
        history_days=args.history_days,
    )


def cmd_run(args) -> int:
    import datetime as dt

    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.seeding.seed import seed_dates
    from fraud_assets.main_job import run_main_job

    _dagster_home()
    if args.engine:
        os.environ["FRAUD_DATA_PREP_ENGINE"] = args.engine
    if args.feature_engineering:
        os.environ["FRAUD_FEATURE_ENGINEERING"] = "1"
    _check_data_options(args)  # before the stack starts, as the dates
    _check_partition_dates(args)  # before the stack starts: a bad date costs nothing
    with aws_target(Path(args.state_dir)) as stack:
        names = PlatformNames.from_env()
        # The run lives through the days one by one: no label has arrived before the first day.
        pending: dict[str, bytes] = {}
        first = seed_dates(args.days, args.start_date)[:1]
        seeded = _seed(args, names, pending, labels_as_of=dt.date.fromisoformat(first[0]) if first else None)
        drifted = seeded.get("drifted_dates") or []
        print(
            f"Seeded s3://{names.data_bucket}: {seeded.get('rows')} training rows, {len(seeded.get('dates', []))} daily batches"
            + (f", {args.drift_kind} drift from {drifted[0]}." if drifted else ".")
        )
        if stack is not None and stack.restored_snapshot_time:
            from dagster import DagsterInstance

            from fraud_assets.main_job import flag_lost_in_restore

            flag_lost_in_restore(DagsterInstance.get(), stack.restored_snapshot_time)  # this run re-runs the seeded days
        summary = run_main_job(
            seeded.get("dates", []),
            print,
            pending_labels=pending,
            label_delay_days=args.label_delay_days,
            recent_window_days=args.recent_window_days,
        )
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, default=_json_safe))
        print(f"Summary written to {args.summary_json}")
    return 0 if summary["training"]["succeeded"] else 1


class DateRangeError(ValueError):
    """The days asked for are not daily partitions of the definitions: refused before any work."""


class OptionsError(ValueError):
    """Options that contradict each other: refused before any work."""


def _check_data_options(args) -> None:
    if args.data == "world" and args.csv:
        raise OptionsError("--csv is Kaggle-schema data: it cannot be combined with --data world")


def _check_partition_dates(args) -> None:
    """Every day `run` or `seed` would make must be a daily partition as every process that loads
    the location sees them (the first day is fixed, or FRAUD_FIRST_DAY for all of them): never
    moved to fit this command's days, which `dagster dev` would not know."""
    from fraud_assets.lib.config import FIRST_DAY_VARIABLE
    from fraud_assets.lib.seeding.seed import seed_dates

    try:
        dates = seed_dates(args.days, args.start_date)
    except ValueError as err:
        raise DateRangeError(str(err)) from None
    if not dates:  # a training-only run: no day to check
        return
    from fraud_assets.defs.common import daily_partitions

    keys = set(daily_partitions.get_partition_keys())
    outside = [d for d in dates if d not in keys]
    if outside:
        span = f"{min(keys)} to {max(keys)}" if keys else "none yet"
        raise DateRangeError(
            f"--start-date {args.start_date or dates[0]} --days {args.days} asks for {outside[0]}"
            f"{f' (and {len(outside) - 1} more days)' if len(outside) > 1 else ''}, not a daily partition "
            f"(partitions: {span}; the last is yesterday, the last complete UTC day; {FIRST_DAY_VARIABLE} moves the "
            "first, for every process that loads the location). Nothing was done."
        )


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def cmd_experiments(args) -> int:
    from fraud_assets.lib.aws.clients import make_client
    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.experimentation.experiments import (
        format_experiment_detail,
        format_experiment_table,
        list_experiments,
        load_experiment,
    )

    names = PlatformNames.from_env()
    with aws_target(Path(args.state_dir), announce=lambda *_: None):
        s3 = make_client("s3")
        if args.action == "list":
            print(format_experiment_table(list_experiments(s3, names.workflow_bucket)))
        else:
            print(format_experiment_detail(load_experiment(s3, names.workflow_bucket, args.experiment_id)))
    return 0


def cmd_promote(args) -> int:
    from fraud_assets.main_job import promote_and_maybe_retrain

    _dagster_home()
    with aws_target(Path(args.state_dir)):
        result = promote_and_maybe_retrain(args.experiment_id, retrain=args.retrain, announce=print)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_rollback(args) -> int:
    from fraud_assets.lib.aws.clients import make_client
    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.experimentation.promotion import rollback_hyperparameters

    with aws_target(Path(args.state_dir)):
        result = rollback_hyperparameters(args.backup, s3=make_client("s3"), ssm=make_client("ssm"), names=PlatformNames.from_env())
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_rollback_model(args) -> int:
    from fraud_assets.lib.aws.clients import make_client
    from fraud_assets.lib.config import PlatformNames
    from fraud_assets.lib.training.endpoint import current_endpoint, deployment_history, rollback_model
    from fraud_assets.lib.training.registry import REGISTRY_COLUMNS, list_models, registry_rows

    with aws_target(Path(args.state_dir)):
        if args.list:
            names, s3 = PlatformNames.from_env(), make_client("s3")
            serving = (current_endpoint(s3, names) or {}).get("model_version")
            rows = registry_rows(list_models(make_client("sagemaker")), deployment_history(s3, names), serving)
            print("\t".join(REGISTRY_COLUMNS))
            print("\n".join("\t".join(str(v) for v in row) for row in rows) or "(no model registered)")
            return 0
        result = rollback_model(
            sagemaker=make_client("sagemaker"),
            runtime=make_client("sagemaker-runtime"),
            s3=make_client("s3"),
            names=PlatformNames.from_env(),
            version=args.version,
        )
    print(json.dumps({k: result[k] for k in ("endpoint_name", "model_version", "rolled_back_from", "model_uri", "deployed_at")}, indent=2))
    return 0


def cmd_dev(args) -> int:
    """The Dagster UI on this project, with the runs `make run` recorded (its partitions are
    everyone's: the fixed first day, or FRAUD_FIRST_DAY)."""
    run_dagster_dev = _local("dagster_dev").run_dagster_dev

    _dagster_home()
    # dg's dev, not `dagster dev`: the same server, without the latter's "superseded" warning on every start.
    dg = str(Path(sys.executable).with_name("dg"))
    return run_dagster_dev([dg, "dev", "-w", "workspace.yaml", "--host", "127.0.0.1", "--port", str(args.port)], dict(os.environ))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraud-assets", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", default=str(STATE_ROOT / "state"), help="where the embedded AWS stack keeps its state")
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[common])

    stack = add("local-stack", help="run the embedded AWS stack (moto + model server) until Ctrl-C")
    stack.add_argument("--moto-port", type=int, default=0)
    stack.add_argument("--model-port", type=int, default=0)
    stack.set_defaults(func=cmd_local_stack)

    from fraud_assets.lib.config import DEFAULT_HISTORY_DAYS, DEFAULT_SEED_DATA, SEED_DATA

    def data_options(p):
        p.add_argument(
            "--data",
            choices=SEED_DATA,
            default=DEFAULT_SEED_DATA,
            help="kaggle: the Kaggle schema, no customers (synthetic, or --csv); "
            f"world: simulated customers and terminals whose history reveals fraud (default {DEFAULT_SEED_DATA})",
        )
        p.add_argument(
            "--history-days",
            type=int,
            default=DEFAULT_HISTORY_DAYS,
            metavar="N",
            help="with --data world: days of training history before the first daily batch",
        )
        p.add_argument("--csv", help="a Kaggle-schema CSV (Time, V1..V28, Amount, Class); synthetic data when omitted")
        p.add_argument("--days", type=int, default=7, help="daily batches to make (and, for run, to score)")
        p.add_argument("--start-date", help="first daily batch, YYYY-MM-DD (default: the days ending yesterday)")
        p.add_argument("--drift-from", help="inject drift into the daily batches from this date (YYYY-MM-DD)")
        p.add_argument("--drift-last", type=int, default=0, metavar="N", help="inject drift into the last N daily batches")
        p.add_argument(
            "--drift-kind",
            choices=["shift", "new-pattern"],
            default="shift",
            help="shift: more fraud of the known kind; new-pattern: fraud the training data never had",
        )
        p.add_argument(
            "--label-delay-days",
            type=int,
            default=1,
            metavar="N",
            help="a day's label file exists once the day is at least N days old (today = the day after the last day)",
        )
        p.add_argument("--transactions-per-day", type=int, default=10_000)
        p.add_argument("--rows", type=int, default=284_807, help="rows of the synthetic Kaggle-schema training set (without --csv)")

    seed = add("seed", help="upload the raw training CSV and daily batches")
    data_options(seed)
    seed.set_defaults(func=cmd_seed)

    run = add("run", help="the main job: seed, train and deploy, then score the daily partitions")
    data_options(run)
    run.add_argument("--summary-json", help="write the run summary as JSON here")
    run.add_argument("--engine", choices=["pandas", "spark", "glue"], help="data-prep engine (default pandas)")
    run.add_argument("--feature-engineering", action="store_true", help="train and score on engineered features too")
    run.add_argument(
        "--recent-window-days",
        type=int,
        metavar="N",
        help="labelled days held out of training for champion vs challenger (default: the asset's, 7)",
    )
    run.set_defaults(func=cmd_run)

    experiments = add("experiments", help="hyperparameter experiments recorded in S3")
    exp_sub = experiments.add_subparsers(dest="action", required=True)
    exp_sub.add_parser("list")
    show = exp_sub.add_parser("show")
    show.add_argument("experiment_id")
    experiments.set_defaults(func=cmd_experiments)

    promote = add("promote", help="promote an experiment's best hyperparameters to production")
    promote.add_argument("experiment_id")
    promote.add_argument("--retrain", action="store_true", help="launch training_job afterwards")
    promote.set_defaults(func=cmd_promote)

    dev = add("dev", help="the Dagster UI (dg dev) on 127.0.0.1; stops on Ctrl-C or SIGTERM")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=cmd_dev)

    rollback = add("rollback-hyperparameters", help="restore Parameter Store from a backup")
    rollback.add_argument("backup", nargs="?", help="backup key (default: the latest)")
    rollback.set_defaults(func=cmd_rollback)

    rollback_model = add("rollback-model", help="point the endpoint back at an earlier model version (health-checked)")
    rollback_model.add_argument(
        "version", nargs="?", help="model version from the deployment history (default: the one before the current)"
    )
    rollback_model.add_argument(
        "--list", action="store_true", help="list the registered model versions (approval, failed gates, served before) and exit"
    )
    rollback_model.set_defaults(func=cmd_rollback_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # one readable line for expected failures; tracebacks stay in Dagster's logs
        from fraud_assets.lib.errors import USER_ERRORS

        if isinstance(err, (*USER_ERRORS, DateRangeError, OptionsError)):
            print(f"fraud-assets: error: {err}", file=sys.stderr)
            return 2
        from botocore.exceptions import ClientError

        if isinstance(err, ClientError):  # AWS refused: what and why in one line
            error = err.response.get("Error", {})
            bucket = f" (bucket {error['BucketName']!r})" if error.get("BucketName") else ""
            print(
                f"fraud-assets: error: AWS {err.operation_name} failed: {error.get('Code')}: {error.get('Message')}{bucket}",
                file=sys.stderr,
            )
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
