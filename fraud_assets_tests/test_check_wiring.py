"""Asset checks are wired as defined: every check spec and every check result the code makes is
attached to its asset, a result for an undeclared check fails the step instead of vanishing, and
the checks of a daily asset are partitioned as it is, so the UI's check history holds one result
per day."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import boto3
import dagster as dg
import pytest

import fraud_assets.defs
from fraud_assets.defs.common import selected_checks
from fraud_assets.lib.aws.storage import put_bytes
from fraud_assets.lib.config import PlatformNames, daily_batch_key
from fraud_assets.lib.seeding.synthetic import batch_to_json_bytes, generate_daily_batch

NAMES = PlatformNames()
DEFS_DIR = Path(fraud_assets.defs.__file__).parent


def _graph():
    from fraud_assets.definitions import defs

    return defs().resolve_asset_graph()


def _defined_specs() -> list[dg.AssetCheckSpec]:
    """Every AssetCheckSpec the defs modules hold at module level, alone or in a list."""
    specs = []
    for module_info in pkgutil.walk_packages([str(DEFS_DIR)], prefix="fraud_assets.defs."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            for item in value if type(value) in (list, tuple) else [value]:
                if isinstance(item, dg.AssetCheckSpec):
                    specs.append(item)
    return specs


def test_every_check_spec_defined_is_attached_to_its_asset() -> None:
    attached = _graph().asset_check_keys
    specs = _defined_specs()
    assert len(specs) >= 20  # the walk found the modules' specs
    assert sorted(s.key.to_user_string() for s in specs if s.key not in attached) == []


def test_every_check_result_the_code_makes_names_an_attached_check() -> None:
    # Literal check names of the results built in the defs modules (the check functions).
    named = {m for path in DEFS_DIR.rglob("*.py") for m in re.findall(r'check_name="(\w+)"', path.read_text())}
    attached = {k.name for k in _graph().asset_check_keys}
    assert {"row_accounting", "schema_and_values", "every_transaction_scored_once"} <= named
    assert sorted(named - attached) == []


def test_every_check_of_a_partitioned_asset_has_the_assets_partitions() -> None:
    graph = _graph()
    checks = {key: graph.get_check_spec(key) for key in graph.asset_check_keys}
    partitioned = {k: s for k, s in checks.items() if graph.get(k.asset_key).partitions_def is not None}
    assert "row_accounting" in {k.name for k in partitioned}
    wrong = sorted(k.to_user_string() for k, s in partitioned.items() if s.partitions_def != graph.get(k.asset_key).partitions_def)
    assert wrong == []


def test_a_result_for_an_undeclared_check_fails_the_step_with_its_name() -> None:
    @dg.asset(check_specs=[dg.AssetCheckSpec("declared", asset="thing")])
    def thing(context):
        yield dg.Output(1)
        yield from selected_checks(
            context, [dg.AssetCheckResult(check_name="declared", passed=True), dg.AssetCheckResult(check_name="forgotten", passed=True)]
        )

    result = dg.materialize([thing], raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "check 'forgotten' of thing has a result but no AssetCheckSpec" in failure.event_specific_data.error.message


@pytest.mark.e2e
def test_the_daily_checks_history_holds_one_result_per_day(aws) -> None:
    from fraud_assets.definitions import location_defs

    days = ["2026-03-01", "2026-03-02"]
    for i, day in enumerate(days):
        put_bytes(
            boto3.client("s3"),
            NAMES.data_bucket,
            daily_batch_key(day),
            batch_to_json_bytes(generate_daily_batch(day, n_transactions=50, seed=i)),
        )
    job = location_defs().resolve_job_def("inference_job")
    with dg.instance_for_test() as instance:
        for day in days:
            result = job.execute_in_process(instance=instance, partition_key=day, asset_selection=[dg.AssetKey("daily_transactions")])
            assert {c.check_name for c in result.get_asset_check_evaluations()} == {"row_accounting", "schema_and_values"}
        for name in ("row_accounting", "schema_and_values"):
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("daily_transactions"), name), limit=10
            )
            # One record per day, each carrying its day and its verdict: none left planned (shown "Skipped").
            assert sorted((r.partition, r.status.value) for r in history) == [(day, "SUCCEEDED") for day in days], name
