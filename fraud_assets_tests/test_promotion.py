"""Promotion of an experiment's best trial to production, refusals, and rollback."""

from __future__ import annotations

import copy
import datetime as dt

import boto3
import numpy as np
import pandas as pd
import pytest
import yaml

from fraud_assets.lib.aws.storage import StageResult, put_bytes, put_json
from fraud_assets.lib.config import HYPERPARAMETER_PATH, LABEL_COLUMN, PRODUCTION_MODEL_CONFIG_KEY, PlatformNames
from fraud_assets.lib.experimentation.experiments import record_experiment, run_experiment
from fraud_assets.lib.experimentation.promotion import (
    PromotionRefused,
    RetrainRequestFailed,
    RollbackRefused,
    list_backups,
    promote_to_production,
    rollback_hyperparameters,
)
from fraud_assets.lib.training.hyperparameters import list_parameters, read_hyperparameters

NAMES = PlatformNames()
T0 = dt.datetime(2025, 3, 2, 10, 0, 0, tzinfo=dt.timezone.utc)


def _split(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = (rng.random(rows) < 0.04).astype(int)
    v = rng.normal(size=(rows, 28))
    v[:, :3] += labels[:, None] * 1.5
    frame = pd.DataFrame(v, columns=[f"V{i}" for i in range(1, 29)])
    frame.insert(0, "Time", rng.uniform(0, 172_800, rows))
    frame["Amount"] = rng.exponential(80.0, rows)
    frame[LABEL_COLUMN] = labels
    return frame


@pytest.fixture(scope="module")
def experiments():
    """Two small real experiments (different winners), computed once; each test records them."""
    train, validation = _split(2500, 11), _split(800, 12)
    results = []
    for suffix, depth in (("aaaaaa", 3), ("bbbbbb", 6)):
        results.append(
            run_experiment(
                train,
                validation,
                strategy="random",
                n_trials=2,
                seed=1,
                nthread=1,
                search_space={
                    "eta": {"type": "float", "low": 0.05, "high": 0.3, "log": True},
                    "subsample": {"type": "float", "low": 0.6, "high": 1.0},
                },
                base_hyperparameters={"num_round": 30, "early_stopping_rounds": 5, "max_depth": depth},
                experiment_id=f"20250301T00000{depth}Z-random-{suffix}",
            )
        )
    return results


@pytest.fixture
def recorded(aws, experiments):
    s3 = boto3.client("s3")
    for result in experiments:
        record_experiment(s3, NAMES.workflow_bucket, result)
    return [r.experiment_id for r in experiments], [r.best_record()["hyperparameters"] for r in experiments]


def _clients():
    return boto3.client("s3"), boto3.client("ssm")


def _ssm_state(ssm) -> dict:
    """Every parameter in the account: name -> (value, version)."""
    names = [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate() for p in page["Parameters"]]
    state = {}
    for i in range(0, len(names), 10):
        for p in ssm.get_parameters(Names=names[i : i + 10])["Parameters"]:
            state[p["Name"]] = (p["Value"], p["Version"])
    return state


def _s3_state(s3) -> dict:
    """Every object in every bucket: (bucket, key) -> (etag, size)."""
    state = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for o in page.get("Contents", []):
                state[(bucket["Name"], o["Key"])] = (o["ETag"], o["Size"])
    return state


def _config_bytes(s3) -> bytes:
    return s3.get_object(Bucket=NAMES.config_bucket, Key=PRODUCTION_MODEL_CONFIG_KEY)["Body"].read()


def _keys(s3, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=NAMES.config_bucket, Prefix=prefix).get("Contents", []))


def test_first_promotion_writes_parameters_backup_and_config(recorded):
    (first, _), (hyper, _) = recorded
    s3, ssm = _clients()
    summary = promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, now=T0)

    assert summary["status"] == "promoted" and summary["hyperparameters"] == hyper
    stored = list_parameters(ssm)
    assert {name: p.value for name, p in stored.items()} == {n: repr(v) if isinstance(v, float) else str(v) for n, v in hyper.items()}
    assert summary["versions"] == {name: 1 for name in hyper}
    production = read_hyperparameters(ssm)
    assert production.values == hyper and production.experiment_id == first and production.source == "ssm"

    assert summary["backup"] == f"s3://{NAMES.config_bucket}/hyperparameter-backups/20250302T100000.000000Z.json"
    backup = yaml.safe_load(s3.get_object(Bucket=NAMES.config_bucket, Key="hyperparameter-backups/20250302T100000.000000Z.json")["Body"])
    assert backup["parameters"] == {} and backup["reason"] == "promotion" and backup["production_experiment_id"] is None
    assert backup["production_config"] == {"key": PRODUCTION_MODEL_CONFIG_KEY, "existed": False, "archived_as": None}

    config = yaml.safe_load(_config_bytes(s3))
    assert config["version"] == 1 and config["algorithm"] == "xgboost" and config["experiment_id"] == first
    assert config["hyperparameters"] == hyper
    assert config["promoted_at"] == T0.isoformat()
    assert config["metrics"]["objective"] == "pr_auc" and config["metrics"]["values"]["pr_auc"] == pytest.approx(config["metrics"]["value"])
    assert config["parameter_store"] == {"path": HYPERPARAMETER_PATH, "versions": summary["versions"]}
    assert config["previous"]["config"] is None and config["previous"]["version"] is None
    assert _keys(s3, "archive/") == [] and summary["archived_config"] is None
    for key in (PRODUCTION_MODEL_CONFIG_KEY, "hyperparameter-backups/20250302T100000.000000Z.json"):
        assert s3.head_object(Bucket=NAMES.config_bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_promotion_backs_up_prunes_and_archives_the_previous_config_exactly(recorded):
    (first, second), (_, hyper) = recorded
    s3, ssm = _clients()
    # Production as it might be found: a hand-set stale parameter and a hand-written config.
    ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/gamma", Value="2.5", Type="String")
    ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/max_depth", Value="4", Type="String")
    ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/max_depth", Value="5", Type="String", Overwrite=True)
    old_config = b"# tuned by hand\nversion: 7\nexperiment_id: legacy\nhyperparameters: {max_depth: 5}\n"
    put_bytes(s3, NAMES.config_bucket, PRODUCTION_MODEL_CONFIG_KEY, old_config, "application/yaml")

    summary = promote_to_production(second, s3=s3, ssm=ssm, names=NAMES, now=T0)

    backup = yaml.safe_load(s3.get_object(Bucket=NAMES.config_bucket, Key="hyperparameter-backups/20250302T100000.000000Z.json")["Body"])
    assert {n: (p["value"], p["version"]) for n, p in backup["parameters"].items()} == {"gamma": ("2.5", 1), "max_depth": ("5", 2)}
    assert {n: p.value for n, p in list_parameters(ssm).items()}.keys() == hyper.keys()  # gamma pruned
    assert summary["removed"] == ["gamma"]
    assert summary["versions"]["max_depth"] == 3
    archive = "archive/production-model-config-20250302T100000.000000Z.yaml"
    assert _keys(s3, "archive/") == [archive]
    assert s3.get_object(Bucket=NAMES.config_bucket, Key=archive)["Body"].read() == old_config
    assert summary["archived_config"] == f"s3://{NAMES.config_bucket}/{archive}"
    config = yaml.safe_load(_config_bytes(s3))
    assert config["version"] == 8 and config["experiment_id"] == second
    assert config["previous"] == {
        "version": 7,
        "experiment_id": None,
        "config": f"s3://{NAMES.config_bucket}/{archive}",
        "hyperparameters": {"gamma": 2.5, "max_depth": 5},
    }


def _tamper_best(s3, experiment_id: str, **changes) -> None:
    """Records written by an older version, or edited by hand: promotion must not trust them."""
    key = f"experiments/{experiment_id}/best.json"
    best = yaml.safe_load(s3.get_object(Bucket=NAMES.workflow_bucket, Key=key)["Body"])
    best["hyperparameters"].update(changes)
    put_json(s3, NAMES.workflow_bucket, key, best)


@pytest.mark.parametrize(
    "change, named", [({"subsample": 1.5}, "'subsample'"), ({"max_dept": 4}, "'max_dept'"), ({"objective": "multi:softmax"}, "'objective'")]
)
def test_a_refused_promotion_changes_nothing(recorded, change, named):
    (first, second), _ = recorded
    s3, ssm = _clients()
    promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, now=T0)
    put_bytes(s3, NAMES.config_bucket, "unrelated/readme.txt", b"x")
    _tamper_best(s3, second, **change)
    ssm_before, s3_before = _ssm_state(ssm), _s3_state(s3)

    with pytest.raises(PromotionRefused) as refused:
        promote_to_production(second, s3=s3, ssm=ssm, names=NAMES, now=T0 + dt.timedelta(hours=1))
    assert named in str(refused.value) and second in str(refused.value)
    assert _ssm_state(ssm) == ssm_before
    assert _s3_state(s3) == s3_before


def test_missing_or_unfinished_experiments_are_refused_without_writes(recorded):
    s3, ssm = _clients()
    put_json(s3, NAMES.workflow_bucket, "experiments/20250301T000000Z-grid-nobest0/config.json", {"status": "no_successful_trials"})
    put_json(s3, NAMES.workflow_bucket, "experiments/20250301T000000Z-grid-nobest0/trials.json", {"trials": []})
    ssm_before, s3_before = _ssm_state(ssm), _s3_state(s3)
    for experiment_id, reason in (
        ("20250301T000000Z-grid-absent", "no experiment"),
        ("20250301T000000Z-grid-nobest0", "no trial completed"),
        ("../../etc", "invalid experiment id"),
    ):
        with pytest.raises(PromotionRefused, match=reason):
            promote_to_production(experiment_id, s3=s3, ssm=ssm, names=NAMES)
    assert _ssm_state(ssm) == ssm_before and _s3_state(s3) == s3_before


def test_rollback_restores_the_previous_promotion_and_can_itself_be_undone(recorded):
    (first, second), (hyper_first, hyper_second) = recorded
    s3, ssm = _clients()
    promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, now=T0)
    first_config = _config_bytes(s3)
    promote_to_production(second, s3=s3, ssm=ssm, names=NAMES, now=T0 + dt.timedelta(minutes=1))
    second_config = _config_bytes(s3)

    result = rollback_hyperparameters(None, s3=s3, ssm=ssm, names=NAMES, now=T0 + dt.timedelta(minutes=2))
    assert result["backup"].endswith("hyperparameter-backups/20250302T100100.000000Z.json")
    production = read_hyperparameters(ssm)
    assert production.values == hyper_first and production.experiment_id == first
    assert _config_bytes(s3) == first_config
    assert result["archived_config"].endswith("archive/production-model-config-20250302T100200.000000Z.yaml")

    # Rolling back again without naming a backup undoes the same promotion: no flip-flop.
    rollback_hyperparameters(None, s3=s3, ssm=ssm, names=NAMES, now=T0 + dt.timedelta(minutes=3))
    assert read_hyperparameters(ssm).experiment_id == first and _config_bytes(s3) == first_config

    # The safety backup of the first rollback undoes it.
    rollback_hyperparameters(result["safety_backup"], s3=s3, ssm=ssm, names=NAMES, now=T0 + dt.timedelta(minutes=4))
    production = read_hyperparameters(ssm)
    assert production.values == hyper_second and production.experiment_id == second
    assert _config_bytes(s3) == second_config

    # The very first backup is the empty state before any promotion: defaults, no config.
    rollback_hyperparameters("20250302T100000.000000Z", s3=s3, ssm=ssm, names=NAMES, now=T0 + dt.timedelta(minutes=5))
    assert list_parameters(ssm) == {} and read_hyperparameters(ssm).source == "defaults"
    assert PRODUCTION_MODEL_CONFIG_KEY not in _keys(s3, "")
    reasons = [b["reason"] for b in list_backups(s3, NAMES)]
    assert reasons == ["rollback", "rollback", "rollback", "rollback", "promotion", "promotion"]


def test_rollback_refusals_change_nothing(recorded):
    (first, _), _ = recorded
    s3, ssm = _clients()
    with pytest.raises(RollbackRefused, match="nothing to roll back"):
        rollback_hyperparameters(None, s3=s3, ssm=ssm, names=NAMES)
    promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, now=T0)
    bad = {
        "backup_id": "x",
        "reason": "promotion",
        "path": HYPERPARAMETER_PATH,
        "production_experiment_id": None,
        "parameters": {"max_depth": {"value": "99", "version": 1}},
        "production_config": {"existed": False, "archived_as": None},
    }
    put_json(s3, NAMES.config_bucket, "hyperparameter-backups/20250101T000000.000000Z.json", bad)
    ssm_before, s3_before = _ssm_state(ssm), _s3_state(s3)
    for name, reason in (
        ("20250101T000000.000000Z", "'max_depth'"),
        ("20240101T000000.000000Z", "no backup"),
        ("../x", "invalid backup name"),
        ("s3://fraud-detection-data/hyperparameter-backups/a.json", "not in the config bucket"),
    ):
        with pytest.raises(RollbackRefused, match=reason):
            rollback_hyperparameters(name, s3=s3, ssm=ssm, names=NAMES)
    assert _ssm_state(ssm) == ssm_before and _s3_state(s3) == s3_before


def test_retraining_is_requested_after_the_promotion(recorded):
    (first, _), _ = recorded
    s3, ssm = _clients()
    seen = []

    def request(summary):
        seen.append(copy.deepcopy(summary))
        assert read_hyperparameters(ssm).experiment_id == first  # the new values are in place first
        return {"run_key": "promotion-1"}

    summary = promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, retrain_callback=request, now=T0)
    assert summary["retrain"] == {"run_key": "promotion-1"} and seen[0]["experiment_id"] == first

    # Promoting what is in production writes nothing, but retraining can still be asked for.
    s3_before = _s3_state(s3)
    again = promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, retrain_callback=request, now=T0 + dt.timedelta(hours=1))
    assert again["status"] == "already_in_production" and len(seen) == 2 and _s3_state(s3) == s3_before

    def broken(summary):
        raise ConnectionError("instance unreachable")

    with pytest.raises(RetrainRequestFailed, match="already_in_production, but requesting retraining failed") as failed:
        promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, retrain_callback=broken)
    assert failed.value.summary["experiment_id"] == first


class _FlakySSM:
    """An SSM client whose `fail_on`-th PutParameter call fails (and only that one)."""

    def __init__(self, client, fail_on: int):
        self._client, self._fail_on, self._calls = client, fail_on, 0

    def put_parameter(self, **kwargs):
        self._calls += 1
        if self._calls == self._fail_on:
            raise ConnectionError("SSM went away")
        return self._client.put_parameter(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_write_failing_half_way_puts_the_old_parameters_back(recorded):
    (first, second), _ = recorded
    s3, ssm = _clients()
    promote_to_production(first, s3=s3, ssm=ssm, names=NAMES, now=T0)
    ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/lambda", Value="2.0", Type="String")  # hand edit after it
    before = {n: p.value for n, p in list_parameters(ssm).items()}
    with pytest.raises(ConnectionError):
        promote_to_production(second, s3=s3, ssm=_FlakySSM(ssm, fail_on=2), names=NAMES, now=T0 + dt.timedelta(hours=1))
    assert {n: p.value for n, p in list_parameters(ssm).items()} == before
    assert read_hyperparameters(ssm).experiment_id == first


# --- Dagster wiring: tuning_experiment asset -> promote_experiment job -> retraining sensor -------


@pytest.mark.e2e
def test_experiment_asset_then_promotion_job_then_retraining_request(aws):
    from dagster import DagsterInstance, Definitions, RunRequest, SkipReason, asset, build_run_status_sensor_context, materialize

    from fraud_assets.definitions import location_defs
    from fraud_assets.defs.experimentation.assets import tuning_experiment
    from fraud_assets.defs.experimentation.jobs import promote_experiment, promotion_retraining_sensor, tuning_experiment_job
    from fraud_assets.defs.training.jobs import training_job
    from fraud_assets.lib.experimentation.experiments import list_experiments, load_experiment

    # Stand-ins for the training group's split assets (same keys, same IO manager), so this test
    # exercises the experimentation wiring and not data preparation.
    @asset(name="train_split", group_name="training")
    def train_split() -> StageResult:
        return StageResult(summary={"split": "train"}, tables={"train": _split(2500, 21)})

    @asset(name="validation_split", group_name="training")
    def validation_split() -> StageResult:
        return StageResult(summary={"split": "validation"}, tables={"validation": _split(800, 22)})

    s3, ssm = _clients()
    sensor = promotion_retraining_sensor
    resources = location_defs().resources
    defs = Definitions(
        assets=[train_split, validation_split, tuning_experiment],
        jobs=[training_job, tuning_experiment_job, promote_experiment],
        sensors=[sensor],
        resources=resources,
    )
    instance = DagsterInstance.ephemeral()
    assert materialize([train_split, validation_split], resources=resources, instance=instance).success

    space = {"max_depth": {"type": "categorical", "choices": [3, 5, 50]}}
    tuning = defs.resolve_job_def("tuning_experiment_job").execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "tuning_experiment": {
                    "config": {
                        "strategy": "grid",
                        "n_trials": 5,
                        "search_space": space,
                        "nthread": 1,
                        "base_hyperparameters": {"num_round": 30, "early_stopping_rounds": 5},
                    }
                }
            }
        },
    )
    assert tuning.success
    (materialization,) = tuning.asset_materializations_for_node("tuning_experiment")
    meta = materialization.metadata
    experiment_id = meta["experiment_id"].value
    assert experiment_id.endswith(tuning.run_id[:8])
    assert meta["trials_run"].value == 3 and meta["trials_failed"].value == 1
    assert 0 < meta["best_pr_auc"].value <= 1 and "| TRIAL |" in meta["top_trials"].value
    assert meta["records"].value == f"s3://{NAMES.workflow_bucket}/experiments/{experiment_id}/"
    assert meta["output_uri"].value == f"s3://{NAMES.workflow_bucket}/executions/{tuning.run_id}/tuning_experiment/output.json"
    record = load_experiment(s3, NAMES.workflow_bucket, experiment_id)
    assert record["config"]["splits"]["train"].startswith(f"s3://{NAMES.workflow_bucket}/executions/")
    assert record["config"]["origin"] == {
        "dagster_run_id": tuning.run_id,
        "base": "production",
        "base_source": "defaults",
        "base_experiment_id": None,
    }
    assert [e["experiment_id"] for e in list_experiments(s3, NAMES.workflow_bucket)] == [experiment_id]

    promote = defs.resolve_job_def("promote_experiment")
    promotion = promote.execute_in_process(
        instance=instance, run_config={"ops": {"promote": {"config": {"experiment_id": experiment_id, "retrain": True}}}}
    )
    assert promotion.success
    assert read_hyperparameters(ssm).experiment_id == experiment_id
    assert read_hyperparameters(ssm).values == record["best"]["hyperparameters"]

    def evaluate(result):
        context = build_run_status_sensor_context(
            sensor_name=sensor.name, dagster_event=result.get_run_success_event(), dagster_instance=instance, dagster_run=result.dagster_run
        )
        return sensor(context)

    request = evaluate(promotion)
    assert isinstance(request, RunRequest) and request.run_key == f"promotion-{promotion.run_id}"
    assert request.tags["fraud/experiment_id"] == experiment_id

    # Without retrain the sensor skips; a refused promotion fails the run and changes nothing.
    quiet = promote.execute_in_process(instance=instance, run_config={"ops": {"promote": {"config": {"experiment_id": experiment_id}}}})
    assert quiet.success and isinstance(evaluate(quiet), SkipReason)
    ssm_before, s3_before = _ssm_state(ssm), _s3_state(s3)
    refused = promote.execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config={"ops": {"promote": {"config": {"experiment_id": "20250101T000000Z-grid-absent", "retrain": True}}}},
    )
    assert not refused.success
    assert _ssm_state(ssm) == ssm_before and _s3_state(s3) == s3_before
