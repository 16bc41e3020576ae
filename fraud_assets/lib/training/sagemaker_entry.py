"""The training entry point of a SageMaker training job: `python -m fraud_assets.lib.training.sagemaker_entry`.

It follows SageMaker's training-container contract, so the same module runs

- on AWS in a custom container or as a script-mode job (the image installs this package and runs
  this module as its entry point), and
- in the local stack, which stages the job's channels into the same directory tree and runs one
  process of this module per host (`fraud_assets_local/training_jobs.py`).

Inputs (SageMaker's names; defaults are the container paths under /opt/ml):

- `SM_INPUT_CONFIG_DIR` (/opt/ml/input/config): `hyperparameters.json` (string values, as
  CreateTrainingJob's HyperParameters), `inputdataconfig.json` (each channel's ContentType),
  `resourceconfig.json` (`current_host`, `hosts`); `SM_HPS`, `SM_HOSTS`, `SM_CURRENT_HOST` win
  when set (script mode sets them).
- `SM_CHANNEL_TRAIN`, `SM_CHANNEL_VALIDATION` (/opt/ml/input/data/<channel>): the built-in XGBoost
  algorithm's data format: CSV without a header, the label in the first column (`text/csv`), or
  parquet with the label as the first column (`application/x-parquet`). Every file under the
  channel directory is read, so a host of a `ShardedByS3Key` channel reads just its shard.
- `SM_CHECKPOINT_DIR` (/opt/ml/checkpoints, CheckpointConfig's default LocalPath): every
  `checkpoint_interval` rounds the booster is saved there (xgboost's TrainingCheckPoint, JSON, host
  0 only); a job restarted after a spot interruption finds the files SageMaker synced back and
  resumes from the newest instead of boosting those rounds again.

Outputs: `SM_MODEL_DIR/xgboost-model` (JSON in the form the built-in container's XGBoost 1.7 reads,
`model.container_model_json`; host 0 only), one metric line per round as the built-in container
prints them (`[N]<TAB>validation-auc:...<TAB>validation-aucpr:...`, and for the round delivered
train-* too; CloudWatch shows the tab as `#011`,
and the built-in algorithm's MetricDefinitions regexes match either), and on any error a one-line
reason in `SM_OUTPUT_DIR/failure` and exit code 1 (SageMaker's FailureReason is that file).

Distributed (more than one host): host 0 (SM_HOSTS sorted) runs xgboost's tracker
(`xgboost.tracker.RabitTracker`) and every host joins through `xgboost.collective.CommunicatorContext`,
the same tracker/worker protocol the built-in container uses across hosts. Each host builds its
DMatrix from its own shard; the collective sums gradient histograms and evaluation metrics over
all hosts, so every host grows the same trees and stops at the same round. The tracker listens on
`FRAUD_TRACKER_PORT` (9099, the port the built-in container uses) at host 0's address
(`FRAUD_TRACKER_HOST`, else host 0's name resolved by DNS, as on SageMaker's network); the local
stack sets `FRAUD_TRACKER_HOST=127.0.0.1` and `FRAUD_TRACKER_PORT_FILE` (host 0 binds port 0 and
writes the port there for the others: no port can be taken in between).
Known gap: the tracker binds 127.0.0.1 locally, but xgboost 3.x binds each worker's own peer and
error listeners to every address (RabitComm::Bootstrap -> TCPSocket::BindHost, no option to pass a
host), on ephemeral ports, for the seconds a distributed job trains; only a network namespace or a
firewall narrows that, and the local stack does neither.

Trained with the project's xgboost (3.x), not 1.7: the artifact is written in the 1.7-readable form
(`container_model_json`), which the container-model tests hold to the same scores, and this entry
point runs in our own image, where 1.7 would be a second training stack to maintain.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Not booster parameters, and not the built-in container's: steer only this entry point.
CHECKPOINT_INTERVAL_PARAMETER = "checkpoint_interval"
DEFAULT_CHECKPOINT_INTERVAL = 10
CHECKPOINT_NAME = "xgboost-checkpoint"
_CHECKPOINT_FILE = re.compile(rf"^{CHECKPOINT_NAME}_(\d+)\.json$")
DEFAULT_TRACKER_PORT = 9099
TRACKER_TIMEOUT_S = 300  # a host that never joins fails the job instead of hanging it
CSV_TYPES = ("text/csv", "text/csv; label_size=1", "csv")
PARQUET_TYPES = ("application/x-parquet", "parquet")


class TrainingError(Exception):
    """A failure worth one line in output/failure (the job's FailureReason)."""


# ------------------------------------------------------------------------------------- environment


def _config_dir() -> Path:
    return Path(os.environ.get("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config"))


def _read_json(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise TrainingError(f"{path.name} is not JSON: {err}") from None


def read_hyperparameters() -> dict[str, str]:
    if "SM_HPS" in os.environ:
        raw = json.loads(os.environ["SM_HPS"])
    else:
        raw = _read_json(_config_dir() / "hyperparameters.json", {})
    if not isinstance(raw, dict):
        raise TrainingError("hyperparameters must be a JSON object")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def hosts() -> tuple[list[str], str]:
    resource = _read_json(_config_dir() / "resourceconfig.json", {})
    all_hosts = json.loads(os.environ["SM_HOSTS"]) if "SM_HOSTS" in os.environ else resource.get("hosts") or ["algo-1"]
    current = os.environ.get("SM_CURRENT_HOST") or resource.get("current_host") or all_hosts[0]
    all_hosts = sorted(all_hosts)
    if current not in all_hosts:
        raise TrainingError(f"current host {current!r} is not among the hosts {all_hosts}")
    return all_hosts, current


def channel_dir(channel: str) -> Path:
    return Path(os.environ.get(f"SM_CHANNEL_{channel.upper()}", f"/opt/ml/input/data/{channel}"))


def channel_content_type(channel: str) -> str:
    config = _read_json(_config_dir() / "inputdataconfig.json", {})
    return str((config.get(channel) or {}).get("ContentType") or "text/csv").strip().lower()


# ------------------------------------------------------------------------------------- data


def read_channel(channel: str) -> tuple[Any, Any]:
    """(features float32, labels) of every file under the channel's directory, label first."""
    import numpy as np
    import pandas as pd

    directory = channel_dir(channel)
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")) if directory.is_dir() else []
    content_type = channel_content_type(channel)
    frames = []
    for path in files:
        if path.stat().st_size == 0:
            continue
        if content_type in PARQUET_TYPES:
            frame = pd.read_parquet(path)
        elif content_type in CSV_TYPES:
            frame = pd.read_csv(path, header=None, dtype=np.float32)
        else:
            raise TrainingError(f"channel {channel!r}: content type {content_type!r} not supported (text/csv or application/x-parquet)")
        frames.append(frame.to_numpy(dtype=np.float32))
    if not frames:
        raise TrainingError(f"channel {channel!r} holds no data ({len(files)} files under {directory.name}/)")
    data = np.concatenate(frames) if len(frames) > 1 else frames[0]
    if data.ndim != 2 or data.shape[1] < 2 or data.shape[0] == 0:
        raise TrainingError(f"channel {channel!r}: expected a label column and at least one feature, got shape {data.shape}")
    labels = data[:, 0]
    if not np.isfinite(labels).all() or not np.isin(labels, (0.0, 1.0)).all():
        raise TrainingError(f"channel {channel!r}: the first column must be the 0/1 label")
    return data[:, 1:], labels


# ------------------------------------------------------------------------------------- training


def training_parameters(raw: dict[str, str]) -> tuple[dict[str, Any], int, int, int]:
    """(booster params, num_round, early_stopping_rounds, checkpoint interval) from the job's
    string hyperparameters; a bad name or value fails naming it (the platform's allowlist)."""
    from fraud_assets.lib.training.hyperparameters import HyperparameterError, validate_hyperparameters
    from fraud_assets.lib.training.model import DEFAULT_EARLY_STOPPING_ROUNDS, DEFAULT_NUM_ROUND, booster_params

    raw = dict(raw)
    interval_text = raw.pop(CHECKPOINT_INTERVAL_PARAMETER, str(DEFAULT_CHECKPOINT_INTERVAL))
    try:
        interval = int(interval_text)
        if interval < 1:
            raise ValueError
    except ValueError:
        raise TrainingError(
            f"hyperparameter {CHECKPOINT_INTERVAL_PARAMETER!r} = {interval_text!r} refused: must be an integer >= 1"
        ) from None
    try:
        values = validate_hyperparameters(raw)
    except HyperparameterError as err:
        raise TrainingError(str(err)) from None
    num_round = int(values.get("num_round", DEFAULT_NUM_ROUND))
    patience = int(values.get("early_stopping_rounds", DEFAULT_EARLY_STOPPING_ROUNDS))
    params = booster_params(values)
    # Report ROC-AUC beside the stopping metric (FinalMetricDataList); xgboost stops on the last.
    stop_metric = params.pop("eval_metric")
    params["eval_metric"] = [m for m in ("auc", "aucpr") if m != stop_metric] + [stop_metric]
    return params, num_round, patience, interval


def checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files, newest first."""
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            match = _CHECKPOINT_FILE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def load_newest_checkpoint(xgb: Any, directory: Path) -> Any:
    """The newest checkpoint that loads: an instance interrupted while writing one leaves it torn,
    and the one before it is still good."""
    for path in checkpoints(directory):
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
        except xgb.core.XGBoostError as err:
            print(f"checkpoint {path.name} unreadable ({str(err).splitlines()[0]}); trying an older one", flush=True)
            continue
        print(f"resuming from checkpoint {path.name}: {booster.num_boosted_rounds()} rounds done", flush=True)
        return booster
    return None


def _callbacks(xgb: Any, metric: str, patience: int, checkpoint_dir: Path, interval: int) -> list[Any]:
    class ResumableEarlyStopping(xgb.callback.EarlyStopping):
        """xgboost's early stopping, continuing the count of a resumed booster: the best score and
        round saved in the checkpoint seed it, so a resumed job stops where an uninterrupted one
        would have."""

        def before_training(self, model: Any) -> Any:
            model = super().before_training(model)
            best_score, best_round = model.attr("best_score"), model.attr("best_iteration")
            if self.starting_round > 0 and best_score is not None and best_round is not None:
                self.stopping_history = {"validation": {metric: [float(best_score)]}}
                self.best_scores = {"validation": {metric: [float(best_score)]}}
                self.current_rounds = self.starting_round - 1 - int(best_round)
            return model

    class MetricLines(xgb.callback.TrainingCallback):
        """One line per round in the built-in container's format, numbered from the first round
        of the model (not of this process), flushed at once so the job's log streams it."""

        def before_training(self, model: Any) -> Any:
            self.start = model.num_boosted_rounds()
            return model

        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            parts = [f"{data}-{name}:{values[-1]:.5f}" for data, metrics in evals_log.items() for name, values in metrics.items()]
            print(f"[{self.start + epoch}]\t" + "\t".join(parts), flush=True)
            return False

    class JsonCheckPoint(xgb.callback.TrainingCheckPoint):
        # JSON, like the artifact (xgboost's default here is UBJSON); at 0-based rounds K, 2K, ...
        default_format = "json"

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return [
        MetricLines(),
        ResumableEarlyStopping(rounds=patience, metric_name=metric, data_name="validation", save_best=False),
        JsonCheckPoint(directory=checkpoint_dir, name=CHECKPOINT_NAME, interval=interval),
    ]


def read_channels() -> tuple[Any, Any, Any, Any]:
    """Read before joining the collective: a host with bad or missing data then fails with its own
    reason, instead of its peers failing with a broken connection."""
    features, labels = read_channel("train")
    valid_features, valid_labels = read_channel("validation")
    if features.shape[1] != valid_features.shape[1]:
        raise TrainingError(f"train has {features.shape[1]} features, validation {valid_features.shape[1]}")
    return features, labels, valid_features, valid_labels


def train(
    data: tuple[Any, Any, Any, Any],
    params: dict[str, Any],
    num_round: int,
    patience: int,
    interval: int,
    checkpoint_dir: Path,
    nthread: int | None = None,
) -> Any:
    """Boost on this host's shard of train, early stopping on validation; returns the booster cut
    at its best round (what fraud_model serves)."""
    import xgboost as xgb

    features, labels, valid_features, valid_labels = data
    dtrain = xgb.DMatrix(features, label=labels, nthread=nthread or -1)
    dvalid = xgb.DMatrix(valid_features, label=valid_labels, nthread=nthread or -1)
    resume = load_newest_checkpoint(xgb, checkpoint_dir)
    done = resume.num_boosted_rounds() if resume is not None else 0
    metric = params["eval_metric"][-1]
    booster = resume
    if done < num_round:
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=num_round - done,
            # Validation only, each round: AUC over the training split too would sort it twice a
            # round, which more than doubled the time of a job; it is reported once, for the model delivered.
            evals=[(dvalid, "validation")],
            callbacks=_callbacks(xgb, metric, patience, checkpoint_dir, interval),
            verbose_eval=False,
            xgb_model=resume,
        )
    best = booster.attr("best_iteration")
    best = int(best) if best is not None else booster.num_boosted_rounds() - 1
    best_score = booster.attr("best_score")
    final = booster[: best + 1]
    # The model delivered is round `best`: its metrics are the job's final metrics (the built-in
    # MetricDefinitions take the last value printed).
    results = final.eval_set([(dtrain, "train"), (dvalid, "validation")], iteration=best)
    print(f"[{best}]\t" + "\t".join(results.split("\t")[1:]), flush=True)
    print(f"best round {best} of {booster.num_boosted_rounds()}, validation-{metric} {best_score}", flush=True)
    return final


def _tracker_address(all_hosts: list[str]) -> str:
    host = os.environ.get("FRAUD_TRACKER_HOST")
    return host if host else socket.gethostbyname(all_hosts[0])


def _tracker_port_for_workers() -> int:
    port_file = os.environ.get("FRAUD_TRACKER_PORT_FILE")
    if not port_file:
        return int(os.environ.get("FRAUD_TRACKER_PORT", DEFAULT_TRACKER_PORT))
    deadline = time.monotonic() + TRACKER_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            text = Path(port_file).read_text().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise TrainingError("host 0's tracker did not publish its port")


def run() -> int:
    from fraud_assets.lib.training.model import MODEL_FILE, container_model_json

    all_hosts, current = hosts()
    params, num_round, patience, interval = training_parameters(read_hyperparameters())
    checkpoint_dir = Path(os.environ.get("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    rank = all_hosts.index(current)
    print(
        f"host {current} ({rank + 1} of {len(all_hosts)}): num_round={num_round} early_stopping_rounds={patience} params={params}",
        flush=True,
    )
    data = read_channels()
    if len(all_hosts) == 1:
        booster = train(data, params, num_round, patience, interval, checkpoint_dir)
    else:
        from xgboost import collective
        from xgboost.tracker import RabitTracker

        address = _tracker_address(all_hosts)
        tracker = None
        if rank == 0:
            port_file = os.environ.get("FRAUD_TRACKER_PORT_FILE")
            port = 0 if port_file else int(os.environ.get("FRAUD_TRACKER_PORT", DEFAULT_TRACKER_PORT))
            # sortby="task": ranks follow SM_HOSTS order (task ids below), so rank 0 is host 0.
            tracker = RabitTracker(n_workers=len(all_hosts), host_ip=address, port=port, sortby="task", timeout=TRACKER_TIMEOUT_S)
            tracker.start()
            worker_args = tracker.worker_args()
            if port_file:
                tmp = Path(f"{port_file}.tmp")
                tmp.write_text(str(worker_args["dmlc_tracker_port"]))
                os.replace(tmp, port_file)
        else:
            worker_args = {"dmlc_tracker_uri": address, "dmlc_tracker_port": _tracker_port_for_workers()}
        with collective.CommunicatorContext(**worker_args, dmlc_task_id=f"{rank:05d}", dmlc_timeout=TRACKER_TIMEOUT_S):
            if collective.get_rank() != rank:
                raise TrainingError(f"collective rank {collective.get_rank()} is not host rank {rank}")
            booster = train(data, params, num_round, patience, interval, checkpoint_dir)
        if tracker is not None:
            tracker.wait_for(TRACKER_TIMEOUT_S)
    if rank == 0:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f".{MODEL_FILE}.tmp"
        tmp.write_bytes(container_model_json(booster))
        os.replace(tmp, model_dir / MODEL_FILE)
        print(f"wrote {MODEL_FILE} ({booster.num_boosted_rounds()} rounds)", flush=True)
    return 0


def write_failure(reason: str) -> None:
    output_dir = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    line = " ".join(reason.split())[:1024]  # one line: it becomes FailureReason
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(line)
    except OSError:
        pass
    print(f"failure: {line}", file=sys.stderr, flush=True)


def main() -> int:
    try:
        return run()
    except TrainingError as err:
        write_failure(f"ClientError: {err}")
    except Exception as err:  # noqa: BLE001 - any error must leave its reason for the job
        traceback.print_exc()
        # xgboost's messages carry a native stack trace: the reason is what comes before it.
        message = str(err).split("Stack trace:")[0]
        write_failure(f"AlgorithmError: {type(err).__name__}: {message}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
