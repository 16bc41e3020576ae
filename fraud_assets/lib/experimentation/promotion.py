"""Experimentation to production: promote an experiment's best trial, roll back a promotion.

promote_to_production follows the original design's integration workflow:
  1. load the experiment's best trial (s3://<workflow bucket>/experiments/<id>/best.json)
  2. validate its hyperparameters (refused with a message naming the bad parameter)
  3. back up the current Parameter Store values to
     s3://<config bucket>/hyperparameter-backups/<UTC timestamp>.json (values and versions)
  4. write the new values to /fraud-detection/hyperparameters/<name>; names the winner does not
     set are deleted, so production trains exactly the configuration the experiment measured and
     not a mix with leftovers of an older promotion (the backup keeps them for rollback)
  5. move the current production-model-config.yaml (config bucket) to
     archive/production-model-config-<UTC timestamp>.yaml, byte for byte, and write the new one
  6. optionally request retraining (retrain_callback)
Every read and every check happens before the first write, so a refused promotion changes
nothing in Parameter Store or S3. YAML is only ever read with yaml.safe_load.

rollback_hyperparameters restores a backup: the Parameter Store values (and the experiment id
beside them) and the production-model-config.yaml that was current when the backup was taken.
It backs up the state it replaces first, so a rollback can itself be undone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Mapping

import yaml

from fraud_assets.lib.aws.storage import S3Uri, get_bytes, get_json, object_exists, put_bytes, put_json, validate_key_part
from fraud_assets.lib.config import HYPERPARAMETER_PATH, PRODUCTION_MODEL_CONFIG_KEY, PlatformNames
from fraud_assets.lib.experimentation.algorithms import SERVABLE
from fraud_assets.lib.experimentation.experiments import ALGORITHM, ExperimentNotFound, load_experiment
from fraud_assets.lib.training.hyperparameters import (
    HyperparameterError,
    StoredParameter,
    list_parameters,
    read_experiment_id,
    validate_experiment_id,
    validate_hyperparameters,
    write_experiment_id,
    write_hyperparameters,
)

BACKUP_PREFIX = "hyperparameter-backups"
ARCHIVE_PREFIX = "archive"
REASON_PROMOTION = "promotion"
REASON_ROLLBACK = "rollback"
YAML_CONTENT_TYPE = "application/yaml"


class ProductionChangeRefused(ValueError):
    """A promotion or rollback refused before anything was written."""


class PromotionRefused(ProductionChangeRefused):
    pass


class RollbackRefused(ProductionChangeRefused):
    pass


class RetrainRequestFailed(RuntimeError):
    """The promotion completed (`.summary`), but requesting retraining failed."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


def timestamp(now: dt.datetime | None = None) -> str:
    """UTC, sortable, safe as a key part; microseconds so two changes in one second differ."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.%fZ")


def backup_key(stamp: str) -> str:
    return f"{BACKUP_PREFIX}/{validate_key_part(stamp + '.json', 'backup name')}"


def archive_key(stamp: str) -> str:
    return f"{ARCHIVE_PREFIX}/{validate_key_part(f'production-model-config-{stamp}.yaml', 'archive name')}"


def _read_object(s3, bucket: str, key: str) -> bytes | None:
    return get_bytes(s3, S3Uri(bucket, key)) if object_exists(s3, bucket, key) else None


def _parse_config(data: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """The production config as a mapping, or (None, why not). A config that does not parse does
    not block a promotion (it is archived byte for byte all the same); it is only noted."""
    if data is None:
        return None, None
    try:
        parsed = yaml.safe_load(data)
    except yaml.YAMLError as err:
        return None, f"unparseable YAML: {err}"
    if not isinstance(parsed, dict):
        return None, f"not a mapping but {type(parsed).__name__}"
    return parsed, None


def _typed_or_raw(stored: Mapping[str, StoredParameter]) -> dict[str, Any]:
    raw = {name: p.value for name, p in stored.items()}
    try:
        return validate_hyperparameters(raw)
    except HyperparameterError:
        return raw  # a hand-edited value: record what was there, as it was


class _ProductionState:
    """What a promotion or rollback replaces, read before anything is written."""

    def __init__(self, s3, ssm, names: PlatformNames, path: str):
        self.parameters = list_parameters(ssm, path)
        self.experiment_id = read_experiment_id(ssm, path)
        self.config_bytes = _read_object(s3, names.config_bucket, PRODUCTION_MODEL_CONFIG_KEY)
        self.config, self.config_problem = _parse_config(self.config_bytes)

    def backup_document(
        self, stamp: str, created_at: str, path: str, names: PlatformNames, reason: str, trigger: dict[str, Any]
    ) -> dict[str, Any]:
        archived = str(S3Uri(names.config_bucket, archive_key(stamp))) if self.config_bytes is not None else None
        return {
            "backup_id": stamp,
            "created_at": created_at,
            "reason": reason,
            "trigger": trigger,
            "path": path,
            "parameters": {
                name: {"value": p.value, "version": p.version, "type": p.type, "last_modified": p.last_modified}
                for name, p in self.parameters.items()
            },
            "production_experiment_id": self.experiment_id,
            "production_config": {"key": PRODUCTION_MODEL_CONFIG_KEY, "existed": self.config_bytes is not None, "archived_as": archived},
        }


def _check_free(s3, names: PlatformNames, stamp: str, archiving: bool) -> None:
    # Backups and archives are history: never overwrite one (only a clock gone backwards could).
    taken = [k for k in [backup_key(stamp), *([archive_key(stamp)] if archiving else [])] if object_exists(s3, names.config_bucket, k)]
    if taken:
        raise ProductionChangeRefused(f"s3://{names.config_bucket}/{taken[0]} already exists; retry")


def _replace_config(s3, names: PlatformNames, stamp: str, old: bytes | None, new: bytes | None) -> str | None:
    """Archive the current production config byte for byte, then put `new` in its place (or
    leave none, when restoring a state that had none). Returns the archive's URI."""
    archived = None
    if old is not None:
        archived = str(put_bytes(s3, names.config_bucket, archive_key(stamp), old, YAML_CONTENT_TYPE))
    if new is not None:
        put_bytes(s3, names.config_bucket, PRODUCTION_MODEL_CONFIG_KEY, new, YAML_CONTENT_TYPE)
    elif old is not None:
        s3.delete_object(Bucket=names.config_bucket, Key=PRODUCTION_MODEL_CONFIG_KEY)
    return archived


def _restore_parameters(ssm, parameters: Mapping[str, StoredParameter], experiment_id: str | None, path: str) -> None:
    """Best-effort undo after a failed write: the raw strings back, exactly as they were (no
    validation: this puts back what was there, even a hand-edited value)."""
    base = path.rstrip("/")
    for name in list_parameters(ssm, base):
        if name not in parameters:
            ssm.delete_parameter(Name=f"{base}/{name}")
    for name, p in parameters.items():
        ssm.put_parameter(Name=f"{base}/{name}", Value=p.value, Type="String", Overwrite=True)
    write_experiment_id(ssm, experiment_id, base)


def _write_parameters_or_restore(
    ssm, values: Mapping[str, Any], experiment_id: str | None, state: _ProductionState, path: str
) -> dict[str, int]:
    try:
        return write_hyperparameters(ssm, values, experiment_id, path)
    except Exception:
        # A half-written set would be a configuration nobody chose; put the old one back.
        _restore_parameters(ssm, state.parameters, state.experiment_id, path)
        raise


def promote_to_production(
    experiment_id: str,
    *,
    s3,
    ssm,
    names: PlatformNames,
    retrain_callback: Callable[[dict[str, Any]], Any] | None = None,
    path: str = HYPERPARAMETER_PATH,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Promote the best trial of `experiment_id`. Returns a summary (URIs, versions, what was
    replaced). Raises PromotionRefused, before any write, when the experiment is missing, has no
    completed trial, or its hyperparameters fail validation. Promoting what is already in
    production writes nothing (but still requests retraining when asked)."""
    try:
        validate_experiment_id(experiment_id)
        record = load_experiment(s3, names.workflow_bucket, experiment_id)
    except (ValueError, ExperimentNotFound) as err:
        raise PromotionRefused(f"cannot promote {experiment_id!r}: {err}") from err
    best = record["best"]
    if best is None:
        raise PromotionRefused(f"cannot promote {experiment_id!r}: no trial completed, there is no best trial")
    if best.get("algorithm") not in SERVABLE:
        raise PromotionRefused(_not_servable(experiment_id, best))
    try:
        hyperparameters = validate_hyperparameters(best["hyperparameters"])
    except HyperparameterError as err:
        raise PromotionRefused(f"cannot promote {experiment_id!r} (best trial #{best['trial_number']}): {err}") from err

    state = _ProductionState(s3, ssm, names, path)
    summary: dict[str, Any] = {
        "experiment_id": experiment_id,
        "trial_number": best["trial_number"],
        "metric": best["metric"],
        "value": best["value"],
        "hyperparameters": hyperparameters,
        "previous_experiment_id": state.experiment_id,
    }
    current_values = {name: p.value for name, p in state.parameters.items()}
    if (
        state.experiment_id == experiment_id
        and (state.config or {}).get("experiment_id") == experiment_id
        and _typed_or_raw(state.parameters) == hyperparameters
        and set(current_values) == set(hyperparameters)
    ):
        summary.update(
            status="already_in_production",
            versions={n: p.version for n, p in state.parameters.items()},
            config=str(S3Uri(names.config_bucket, PRODUCTION_MODEL_CONFIG_KEY)),
        )
        return _request_retraining(summary, retrain_callback)

    moment = now or dt.datetime.now(dt.timezone.utc)
    stamp, promoted_at = timestamp(moment), moment.astimezone(dt.timezone.utc).isoformat()
    _check_free(s3, names, stamp, archiving=state.config_bytes is not None)
    backup = state.backup_document(stamp, promoted_at, path, names, REASON_PROMOTION, {"experiment_id": experiment_id})
    backup_uri = str(S3Uri(names.config_bucket, backup_key(stamp)))
    previous_version = (state.config or {}).get("version")
    config = {
        "version": (previous_version if isinstance(previous_version, int) else 0) + 1,
        "algorithm": ALGORITHM,
        "experiment_id": experiment_id,
        "trial_number": best["trial_number"],
        # What the winner was measured on: production trains on engineered features only with
        # FRAUD_FEATURE_ENGINEERING=1, so the record says which set the numbers belong to.
        "feature_set": best.get("feature_set", "raw"),
        "validation": best.get("validation") or {"kind": "random"},
        "promoted_at": promoted_at,
        "hyperparameters": hyperparameters,
        "metrics": {"objective": best["metric"], "value": best["value"], "split": "validation", "values": best.get("metrics") or {}},
        "experiment_records": record["uri"],
        "parameter_store": {"path": path, "versions": None},  # filled in after the write
        "backup": backup_uri,
        "previous": {
            "version": previous_version,
            "experiment_id": state.experiment_id,
            "config": backup["production_config"]["archived_as"],
            "hyperparameters": _typed_or_raw(state.parameters),
            **({"config_problem": state.config_problem} if state.config_problem else {}),
        },
    }
    # Validated before deployment: the YAML must read back to the same hyperparameters.
    if yaml.safe_load(_config_yaml(config))["hyperparameters"] != hyperparameters:
        raise PromotionRefused(f"cannot promote {experiment_id!r}: the hyperparameters do not survive a YAML round trip")

    # --- first write ---------------------------------------------------------------------------
    put_json(s3, names.config_bucket, backup_key(stamp), backup)
    versions = _write_parameters_or_restore(ssm, hyperparameters, experiment_id, state, path)
    config["parameter_store"]["versions"] = versions
    archived = _replace_config(s3, names, stamp, state.config_bytes, _config_yaml(config))
    summary.update(
        status="promoted",
        versions=versions,
        removed=sorted(set(current_values) - set(hyperparameters)),
        backup=backup_uri,
        config=str(S3Uri(names.config_bucket, PRODUCTION_MODEL_CONFIG_KEY)),
        config_version=config["version"],
        archived_config=archived,
        promoted_at=promoted_at,
    )
    return _request_retraining(summary, retrain_callback)


def _not_servable(experiment_id: str, best: Mapping[str, Any]) -> str:
    servable = best.get("best_servable")
    hint = (
        f"; its best {', '.join(SERVABLE)} trial is #{servable['trial_number']} ({best['metric']} {servable['value']:.4f}): "
        f"run an experiment with algorithms [{', '.join(SERVABLE)}] to promote one"
        if servable
        else f"; run an experiment with algorithms [{', '.join(SERVABLE)}] to get a winner that can be promoted"
    )
    return (
        f"cannot promote {experiment_id!r}: its best trial #{best['trial_number']} is {best.get('algorithm')!r}, which the serving "
        f"path cannot serve (the endpoint runs SageMaker's built-in XGBoost container); only {', '.join(SERVABLE)} can be served{hint}"
    )


def _config_yaml(config: Mapping[str, Any]) -> bytes:
    header = "# production-model-config.yaml: written by promote_to_production; promote or roll back, do not edit\n"
    return (header + yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)).encode()


def _request_retraining(summary: dict[str, Any], retrain_callback: Callable[[dict[str, Any]], Any] | None) -> dict[str, Any]:
    summary["retrain"] = None
    if retrain_callback is None:
        return summary
    try:
        summary["retrain"] = retrain_callback(dict(summary))
    except Exception as err:
        raise RetrainRequestFailed(
            f"promotion of {summary['experiment_id']} is {summary['status']}, but requesting retraining failed: {err}", summary
        ) from err
    return summary


# --- Backups and rollback --------------------------------------------------------------------


def list_backups(s3, names: PlatformNames) -> list[dict[str, Any]]:
    """Every backup, newest first: id, URI, reason and what triggered it."""
    rows = []
    for key in sorted(_backup_keys(s3, names), reverse=True):
        document = get_json(s3, S3Uri(names.config_bucket, key))
        rows.append(
            {
                "backup_id": document.get("backup_id"),
                "uri": str(S3Uri(names.config_bucket, key)),
                "created_at": document.get("created_at"),
                "reason": document.get("reason"),
                "trigger": document.get("trigger"),
                "production_experiment_id": document.get("production_experiment_id"),
                "parameters": len(document.get("parameters", {})),
            }
        )
    return rows


def _backup_keys(s3, names: PlatformNames) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=names.config_bucket, Prefix=BACKUP_PREFIX + "/"):
        keys.extend(o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".json"))
    return keys


def resolve_backup(s3, names: PlatformNames, backup: str | None) -> str:
    """The key of a backup named by id (`20250101T020304.123456Z`), file name, key or s3:// URI
    in the config bucket. None: the newest backup a promotion made, i.e. undo the last promotion;
    backups made by rollbacks are skipped, so rolling back twice does not flip-flop."""
    if backup is None:
        for key in sorted(_backup_keys(s3, names), reverse=True):
            if get_json(s3, S3Uri(names.config_bucket, key)).get("reason") == REASON_PROMOTION:
                return key
        raise RollbackRefused(f"no promotion backup in s3://{names.config_bucket}/{BACKUP_PREFIX}/: nothing to roll back")
    name = backup
    if name.startswith("s3://"):
        uri = S3Uri.parse(name)
        if uri.bucket != names.config_bucket:
            raise RollbackRefused(f"backup {backup!r} is not in the config bucket {names.config_bucket}")
        name = uri.key
    if name.startswith(BACKUP_PREFIX + "/"):
        name = name[len(BACKUP_PREFIX) + 1 :]
    name = name[: -len(".json")] if name.endswith(".json") else name
    try:
        key = backup_key(name)
    except ValueError as err:
        raise RollbackRefused(f"invalid backup name {backup!r}: {err}") from err
    if not object_exists(s3, names.config_bucket, key):
        raise RollbackRefused(f"no backup s3://{names.config_bucket}/{key}")
    return key


def rollback_hyperparameters(
    backup: str | None,
    *,
    s3,
    ssm,
    names: PlatformNames,
    path: str = HYPERPARAMETER_PATH,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Restore a backup (the newest promotion backup when None): its Parameter Store values, its
    experiment id, and the production-model-config.yaml that was current when it was taken. The
    state being replaced is backed up first (reason "rollback"). Raises RollbackRefused, before
    any write, when the backup is missing, belongs to another path, or holds a value that fails
    validation."""
    key = resolve_backup(s3, names, backup)
    source_uri = str(S3Uri(names.config_bucket, key))
    document = get_json(s3, S3Uri(names.config_bucket, key))
    if document.get("path", path) != path:
        raise RollbackRefused(f"backup {source_uri} is of {document.get('path')!r}, not {path!r}")
    raw = {name: p["value"] for name, p in document.get("parameters", {}).items()}
    try:
        values = validate_hyperparameters(raw)
        restored_experiment = document.get("production_experiment_id")
        if restored_experiment is not None:
            validate_experiment_id(restored_experiment)
    except (HyperparameterError, ValueError) as err:
        raise RollbackRefused(f"cannot restore {source_uri}: {err}") from err
    config_info = document.get("production_config") or {}
    restored_config: bytes | None = None
    if config_info.get("archived_as"):
        archived = S3Uri.parse(config_info["archived_as"])
        if archived.bucket != names.config_bucket or not object_exists(s3, archived.bucket, archived.key):
            raise RollbackRefused(f"cannot restore {source_uri}: its production config {archived} is missing")
        restored_config = get_bytes(s3, archived)

    state = _ProductionState(s3, ssm, names, path)
    moment = now or dt.datetime.now(dt.timezone.utc)
    stamp = timestamp(moment)
    _check_free(s3, names, stamp, archiving=state.config_bytes is not None)
    safety = state.backup_document(
        stamp, moment.astimezone(dt.timezone.utc).isoformat(), path, names, REASON_ROLLBACK, {"restores": source_uri}
    )

    # --- first write ---------------------------------------------------------------------------
    safety_uri = str(put_json(s3, names.config_bucket, backup_key(stamp), safety))
    versions = _write_parameters_or_restore(ssm, values, restored_experiment, state, path)
    archived_config = _replace_config(s3, names, stamp, state.config_bytes, restored_config)
    return {
        "status": "rolled_back",
        "backup": source_uri,
        "restored": values,
        "versions": versions,
        "removed": sorted(set(state.parameters) - set(values)),
        "experiment_id": restored_experiment,
        "replaced_experiment_id": state.experiment_id,
        "config_restored_from": config_info.get("archived_as"),
        "archived_config": archived_config,
        "safety_backup": safety_uri,
    }
