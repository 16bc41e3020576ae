"""The code location's shape (asset keys, groups, deps, partitions, kinds, owners, checks, jobs,
schedules, sensors, resources) against a reviewed snapshot, so a change to the graph is a visible
diff in review.

After an intended change: `UPDATE_SNAPSHOT=1 pytest fraud_assets_tests/test_definitions_snapshot.py`
and commit fraud_assets_tests/definitions_snapshot.json with the change."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def location_shape(loaded: dg.Definitions) -> dict:
    graph = loaded.resolve_asset_graph()
    assets = {}
    for node in sorted(graph.asset_nodes, key=lambda n: n.key.to_user_string()):
        assets[node.key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitioned": node.partitions_def is not None,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "has_description": bool(node.description),
            "checks": sorted(k.name for k in node.check_keys),
            "blocking_checks": sorted(k.name for k in node.check_keys if graph.get_check_spec(k).blocking),
        }
    return {
        "assets": assets,
        "jobs": sorted(j.name for j in loaded.resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": {s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in sorted(loaded.schedules or [], key=lambda s: s.name)},
        "sensors": sorted(s.name for s in loaded.sensors or []),
        "resources": sorted(loaded.resources or {}),
    }


def _location() -> dg.Definitions:
    from fraud_assets.definitions import defs

    return defs()


def test_definitions_match_the_reviewed_snapshot() -> None:
    shape = location_shape(_location())
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(shape, indent=2, sort_keys=True) + "\n")
    assert shape == json.loads(SNAPSHOT.read_text()), "the graph changed: review the diff, then UPDATE_SNAPSHOT=1 (module doc)"


def test_every_asset_has_a_description_group_kinds_and_owners() -> None:
    for key, asset in location_shape(_location())["assets"].items():
        assert asset["has_description"] and asset["group"] and asset["kinds"] and asset["owners"], key


def test_a_renamed_asset_fails_the_snapshot() -> None:
    loaded = _location()
    old, new = dg.AssetKey("daily_scores"), dg.AssetKey("daily_scorez")
    renamed = dg.Definitions(
        # Renamed where it is produced and where it is read, as a rename in the code would.
        assets=[a.with_attributes(asset_key_replacements={old: new}) if isinstance(a, dg.AssetsDefinition) else a for a in loaded.assets],
        resources=loaded.resources,
    )
    shape = location_shape(renamed)
    assert "daily_scorez" in shape["assets"] and "daily_scores" not in shape["assets"]
    assert shape["assets"] != json.loads(SNAPSHOT.read_text())["assets"]
