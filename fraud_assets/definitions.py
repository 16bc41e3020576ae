"""The fraud_assets code location: Dagster assembles it from `fraud_assets/defs/`, each domain
folder declaring its own assets, jobs, schedules and sensors, and `defs/resources.py` the resources.
The project-wide rules are applied here, once: every asset's owners, and its group, which is the
domain folder that declares it (`defs/training/` -> group `training`).

Loading it needs no AWS account and no environment variables: nothing here talks to AWS until a
run starts, and heavy libraries (xgboost, scikit-learn, optuna, Spark) load in the steps that use them.
"""

import sys
import warnings
from pathlib import Path

import dagster as dg

from fraud_assets.defs.common import DOMAINS, OWNERS
from fraud_assets.lib.memory import freeze_long_lived

_DEFS_PACKAGE = "fraud_assets.defs"


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    domains = asset_domains()

    def project_rules(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.key not in domains:
            raise dg.DagsterInvalidDefinitionError(
                f"asset {spec.key.to_user_string()} is not declared in a domain folder of {_DEFS_PACKAGE} ({', '.join(DOMAINS)})"
            )
        return spec.replace_attributes(owners=OWNERS, group_name=domains[spec.key])

    with warnings.catch_warnings():
        # map_asset_specs is a preview API in Dagster 1.13: its warning would repeat at every load.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        built = loaded.map_asset_specs(func=project_rules)
    freeze_long_lived()
    return built


def asset_domains() -> dict[dg.AssetKey, str]:
    """Asset key -> the domain folder whose module declares it, read from the modules
    load_from_defs_folder imported (`fraud_assets.defs.<domain>.*`)."""
    found: dict[dg.AssetKey, str] = {}
    for name, module in list(sys.modules.items()):
        parts = name.split(".")
        if module is None or len(parts) < 4 or parts[:2] != _DEFS_PACKAGE.split(".") or parts[2] not in DOMAINS:
            continue
        for value in vars(module).values():
            keys = [value.key] if isinstance(value, dg.AssetSpec) else value.keys if isinstance(value, dg.AssetsDefinition) else []
            for key in keys:
                if found.setdefault(key, parts[2]) != parts[2]:
                    raise dg.DagsterInvalidDefinitionError(f"asset {key.to_user_string()} is declared in {found[key]} and {parts[2]}")
    return found


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
