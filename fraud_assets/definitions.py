"""The fraud_assets code location: Dagster assembles it from `fraud_assets/defs/`, each domain
folder declaring its own assets, jobs, schedules and sensors, and `defs/resources.py` the resources.

Loading it needs no AWS account and no environment variables: nothing here talks to AWS until a
run starts, and heavy libraries (xgboost, scikit-learn, optuna, Spark) load in the steps that use them.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


def location_defs(**resource_overrides) -> dg.Definitions:
    """The code location's definitions with some resources replaced by name (tests, benchmarks)."""
    loaded = defs()
    if not resource_overrides:
        return loaded
    return dg.Definitions(
        assets=loaded.assets,
        asset_checks=loaded.asset_checks,
        jobs=loaded.jobs,
        schedules=loaded.schedules,
        sensors=loaded.sensors,
        resources={**(loaded.resources or {}), **resource_overrides},
        executor=loaded.executor,
    )
