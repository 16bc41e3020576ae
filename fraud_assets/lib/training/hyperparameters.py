"""Hyperparameters in Parameter Store: `/fraud-detection/hyperparameters/<name>`, one String
parameter per xgboost parameter, written by promotion and read by the training pipeline.

Every name and value that enters or leaves Parameter Store through this module passes
`validate_hyperparameters`: a maintained allowlist of xgboost parameter names with their types and
ranges. A typo (`max_dept`) or an out-of-range value (`subsample=1.5`) is refused with a message
naming it, instead of being silently ignored by xgboost or failing an hour into training.

The id of the experiment whose values are in production lives next to (not under) the
hyperparameter path, at `<path>-meta/experiment_id` (`/fraud-detection/hyperparameters-meta/
experiment_id` by default), so listing the hyperparameter path never returns it as a parameter.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Mapping

from fraud_assets.lib.aws.storage import InvalidKeyError
from fraud_assets.lib.config import HYPERPARAMETER_PATH
from fraud_assets.lib.metadata_keys import summary_keys
from fraud_assets.lib.training.model import DEFAULT_HYPERPARAMETERS

SOURCE_SSM = "ssm"
SOURCE_DEFAULTS = "defaults"
EXPERIMENT_ID_PARAMETER = "experiment_id"

# Same alphabet as storage.validate_key_part: experiment ids become S3 keys and SSM values.
_EXPERIMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")
_INT = re.compile(r"^[+-]?\d+$")


class HyperparameterError(ValueError):
    """A hyperparameter name or value the platform refuses; `.parameter` names it."""

    def __init__(self, parameter: str, value: Any, reason: str):
        self.parameter = parameter
        self.value = value
        self.reason = reason
        super().__init__(f"hyperparameter {parameter!r} = {value!r} refused: {reason}")


@dataclasses.dataclass(frozen=True)
class ParameterRule:
    kind: type  # int, float or str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: value must be > low (not >=)
    high_open: bool = False  # True: value must be < high (not <=)
    choices: frozenset[str] | None = None
    doc: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            return f"one of {sorted(self.choices)}"
        lo = "" if self.low is None else f"{self.low:g} {'<' if self.low_open else '<='} "
        hi = "" if self.high is None else f" {'<' if self.high_open else '<='} {self.high:g}"
        return f"{'an integer' if self.kind is int else 'a number'} with {lo}value{hi}"


def _unit(doc: str) -> ParameterRule:
    return ParameterRule(float, 0.0, 1.0, low_open=True, doc=doc)


def _non_negative(doc: str) -> ParameterRule:
    return ParameterRule(float, 0.0, None, doc=doc)


# The allowlist. Names are xgboost's canonical booster names (plus the two loop parameters the
# SageMaker container and training.train_model read); ALIASES maps xgboost's aliases onto them.
# Ranges are xgboost's own limits, narrowed where a wider value is legal but never sensible here
# (max_depth > 20, num_round > 5000). Objectives are restricted to those that output a probability,
# because scoring, alert thresholds and PR-AUC all read the model's output as one.
RULES: dict[str, ParameterRule] = {
    "eta": _unit("learning rate (shrinkage per boosting round)"),
    "max_depth": ParameterRule(int, 1, 20, doc="maximum tree depth"),
    "min_child_weight": _non_negative("minimum hessian sum in a leaf"),
    "subsample": _unit("row fraction sampled per tree"),
    "colsample_bytree": _unit("column fraction sampled per tree"),
    "colsample_bylevel": _unit("column fraction sampled per depth level"),
    "colsample_bynode": _unit("column fraction sampled per split"),
    "gamma": _non_negative("minimum loss reduction to split"),
    "lambda": _non_negative("L2 regularisation on leaf weights"),
    "alpha": _non_negative("L1 regularisation on leaf weights"),
    "scale_pos_weight": ParameterRule(float, 0.0, None, low_open=True, doc="weight of the fraud class"),
    "max_delta_step": _non_negative("cap on each leaf's weight step (0: none)"),
    "max_bin": ParameterRule(int, 2, 4096, doc="histogram bins per feature (hist/approx)"),
    "max_leaves": ParameterRule(int, 0, 65536, doc="maximum leaves per tree (0: no limit)"),
    "num_parallel_tree": ParameterRule(int, 1, 100, doc="trees per round (boosted random forest)"),
    "base_score": ParameterRule(float, 0.0, 1.0, low_open=True, high_open=True, doc="initial prediction (a probability)"),
    "seed": ParameterRule(int, 0, 2**31 - 1, doc="random seed"),
    "objective": ParameterRule(str, choices=frozenset({"binary:logistic", "reg:logistic"}), doc="learning objective"),
    "eval_metric": ParameterRule(str, choices=frozenset({"aucpr", "auc", "logloss", "error", "map"}), doc="early-stopping metric"),
    "tree_method": ParameterRule(str, choices=frozenset({"auto", "exact", "approx", "hist"}), doc="tree construction"),
    "grow_policy": ParameterRule(str, choices=frozenset({"depthwise", "lossguide"}), doc="how trees grow"),
    "num_round": ParameterRule(int, 1, 5000, doc="maximum boosting rounds"),
    "early_stopping_rounds": ParameterRule(int, 1, 1000, doc="rounds without validation improvement before stopping"),
}
ALIASES: dict[str, str] = {
    "learning_rate": "eta",
    "min_split_loss": "gamma",
    "reg_lambda": "lambda",
    "reg_alpha": "alpha",
    "random_state": "seed",
}


def canonical_name(name: str, value: Any = None) -> str:
    """xgboost's canonical name for `name`; HyperparameterError for a name not on the allowlist."""
    if not isinstance(name, str):
        raise HyperparameterError(str(name), value, "parameter names are strings")
    canonical = ALIASES.get(name, name)
    if canonical not in RULES:
        raise HyperparameterError(
            name, value, f"unknown parameter; known: {', '.join(sorted(RULES))} (aliases: {', '.join(sorted(ALIASES))})"
        )
    return canonical


def normalise_value(name: str, value: Any) -> int | float | str:
    """One value converted to its rule's type and range-checked. Strings (what Parameter Store
    holds) are parsed; an integral float is accepted for an int parameter, 6.5 is not; booleans
    are refused because Python would quietly treat True as 1."""
    rule = RULES[canonical_name(name, value)]
    if isinstance(value, bool) or value is None:
        raise HyperparameterError(name, value, f"must be {rule.describe()}")
    if rule.kind is str:
        text = value.strip() if isinstance(value, str) else value
        if text not in rule.choices:
            raise HyperparameterError(name, value, f"must be {rule.describe()}")
        return text
    number = _parse_number(name, value, rule)
    if rule.low is not None and (number < rule.low or (rule.low_open and number == rule.low)):
        raise HyperparameterError(name, value, f"must be {rule.describe()}")
    if rule.high is not None and (number > rule.high or (rule.high_open and number == rule.high)):
        raise HyperparameterError(name, value, f"must be {rule.describe()}")
    return number


def _parse_number(name: str, value: Any, rule: ParameterRule) -> int | float:
    try:
        if isinstance(value, str):
            text = value.strip()
            number = int(text) if _INT.match(text) else float(text)
        else:
            number = value.item() if hasattr(value, "item") else value  # numpy scalars
            if not isinstance(number, (int, float)) or isinstance(number, bool):
                raise TypeError
    except (TypeError, ValueError):
        raise HyperparameterError(name, value, f"must be {rule.describe()}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise HyperparameterError(name, value, "must be finite")
    if rule.kind is int:
        if isinstance(number, float):
            if not number.is_integer():
                raise HyperparameterError(name, value, f"must be {rule.describe()}")
            number = int(number)
        return number
    return float(number)


def validate_hyperparameters(values: Mapping[str, Any]) -> dict[str, int | float | str]:
    """Names checked against the allowlist and mapped to canonical names, values typed and
    range-checked, plus the one cross-parameter rule that matters (early stopping must be able to
    happen within num_round). Returns a new dict in name order; raises HyperparameterError naming
    the first bad parameter."""
    if not isinstance(values, Mapping):
        raise HyperparameterError("<all>", values, "hyperparameters must be a mapping of name to value")
    normalised: dict[str, int | float | str] = {}
    given_as: dict[str, str] = {}
    for name in sorted(values, key=str):
        canonical = canonical_name(name, values[name])
        if canonical in normalised:
            raise HyperparameterError(name, values[name], f"given twice, also as {given_as[canonical]!r}")
        normalised[canonical] = normalise_value(name, values[name])
        given_as[canonical] = name
    rounds, patience = normalised.get("num_round"), normalised.get("early_stopping_rounds")
    if rounds is not None and patience is not None and patience > rounds:
        raise HyperparameterError("early_stopping_rounds", patience, f"must not exceed num_round ({rounds})")
    return dict(sorted(normalised.items()))


def format_value(value: int | float | str) -> str:
    """Parameter Store holds strings; repr round-trips a float exactly (0.1 -> "0.1")."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def validate_experiment_id(experiment_id: str) -> str:
    if not isinstance(experiment_id, str) or not _EXPERIMENT_ID.match(experiment_id) or ".." in experiment_id:
        raise InvalidKeyError(f"invalid experiment id {experiment_id!r}: use letters, digits and . _ = + - (no '..', no '/')")
    return experiment_id


def meta_path(path: str = HYPERPARAMETER_PATH) -> str:
    return path.rstrip("/") + "-meta"


@dataclasses.dataclass
class HyperparameterSet:
    """What training uses: `values` are the defaults overlaid with Parameter Store's values
    (training.booster_params would apply the same defaults anyway, so this is the effective set);
    `versions` holds the Parameter Store version of every value that came from there."""

    values: dict[str, Any]
    versions: dict[str, int]
    source: str  # SOURCE_SSM | SOURCE_DEFAULTS
    experiment_id: str | None

    # model_hyperparameters' summary keys (fraud_model reads them back with from_summary).
    SUMMARY_KEYS = ("hyperparameters", "versions", "source", "experiment_id")

    def to_summary(self) -> dict[str, Any]:
        return {"hyperparameters": self.values, "versions": self.versions, "source": self.source, "experiment_id": self.experiment_id}

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> HyperparameterSet:
        """The set model_hyperparameters recorded; MissingSummaryKey names a key it lacks."""
        found = summary_keys(summary, cls.SUMMARY_KEYS, "model_hyperparameters")
        return cls(
            values=found["hyperparameters"], versions=found["versions"], source=found["source"], experiment_id=found["experiment_id"]
        )


@dataclasses.dataclass(frozen=True)
class StoredParameter:
    """One raw parameter as Parameter Store holds it (what backups record)."""

    name: str
    value: str
    version: int
    type: str
    last_modified: str | None


def list_parameters(ssm, path: str = HYPERPARAMETER_PATH) -> dict[str, StoredParameter]:
    """Every parameter under `path` (recursively, all pages), keyed by the name relative to it.
    Recursive so a stray nested parameter shows up (and fails validation) instead of hiding."""
    prefix = path.rstrip("/") + "/"
    found: dict[str, StoredParameter] = {}
    paginator = ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=path.rstrip("/"), Recursive=True, WithDecryption=True):
        for p in page.get("Parameters", []):
            if not p["Name"].startswith(prefix):
                continue
            name = p["Name"][len(prefix) :]
            modified = p.get("LastModifiedDate")
            found[name] = StoredParameter(
                name=name,
                value=p["Value"],
                version=int(p["Version"]),
                type=p.get("Type", "String"),
                last_modified=modified.isoformat() if hasattr(modified, "isoformat") else modified,
            )
    return dict(sorted(found.items()))


def read_experiment_id(ssm, path: str = HYPERPARAMETER_PATH) -> str | None:
    try:
        return ssm.get_parameter(Name=f"{meta_path(path)}/{EXPERIMENT_ID_PARAMETER}")["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return None


def read_hyperparameters(ssm, path: str = HYPERPARAMETER_PATH) -> HyperparameterSet:
    """The production hyperparameters. A bad value in Parameter Store (someone edited it by hand)
    raises HyperparameterError here, naming it, rather than training on something unvalidated."""
    stored = list_parameters(ssm, path)
    if not stored:
        return HyperparameterSet(
            values=validate_hyperparameters(DEFAULT_HYPERPARAMETERS), versions={}, source=SOURCE_DEFAULTS, experiment_id=None
        )
    typed = validate_hyperparameters({name: p.value for name, p in stored.items()})
    versions = {canonical_name(name): p.version for name, p in stored.items()}
    values = validate_hyperparameters({**DEFAULT_HYPERPARAMETERS, **typed})
    return HyperparameterSet(
        values=values, versions=dict(sorted(versions.items())), source=SOURCE_SSM, experiment_id=read_experiment_id(ssm, path)
    )


def write_hyperparameters(
    ssm,
    values: Mapping[str, Any],
    experiment_id: str | None,
    path: str = HYPERPARAMETER_PATH,
    *,
    prune: bool = True,
) -> dict[str, int]:
    """Make Parameter Store hold exactly `values` (validated first; nothing is written when any
    value is refused) and record `experiment_id` beside them. With `prune` (the default), names no
    longer in `values` are deleted: a stale parameter left over from an older promotion would
    otherwise combine with the new winner into a configuration nobody measured. Returns the new
    version of every written parameter."""
    normalised = validate_hyperparameters(values)
    if experiment_id is not None:
        validate_experiment_id(experiment_id)
    base = path.rstrip("/")
    current = list_parameters(ssm, base)
    versions: dict[str, int] = {}
    for name, value in normalised.items():
        text = format_value(value)
        existing = current.get(name)
        if existing is not None and existing.value == text:
            versions[name] = existing.version  # unchanged: keep the version, no needless history entry
            continue
        response = ssm.put_parameter(Name=f"{base}/{name}", Value=text, Type="String", Overwrite=True)
        versions[name] = int(response["Version"])
    if prune:
        stale = [f"{base}/{name}" for name in current if name not in normalised]
        for chunk in _chunks(stale, 10):  # DeleteParameters takes at most 10 names
            ssm.delete_parameters(Names=chunk)
    write_experiment_id(ssm, experiment_id, base)
    return versions


def write_experiment_id(ssm, experiment_id: str | None, path: str = HYPERPARAMETER_PATH) -> None:
    """Record which experiment the values came from (None: they came from no experiment)."""
    meta = f"{meta_path(path.rstrip('/'))}/{EXPERIMENT_ID_PARAMETER}"
    if experiment_id is None:
        try:
            ssm.delete_parameter(Name=meta)
        except ssm.exceptions.ParameterNotFound:
            pass
    else:
        ssm.put_parameter(Name=meta, Value=experiment_id, Type="String", Overwrite=True)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
