"""Hyperparameter validation (properties over the allowlist) and Parameter Store access."""

from __future__ import annotations

import math

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraud_assets.lib.config import HYPERPARAMETER_PATH
from fraud_assets.lib.training.hyperparameters import (
    ALIASES,
    RULES,
    SOURCE_DEFAULTS,
    SOURCE_SSM,
    HyperparameterError,
    format_value,
    list_parameters,
    meta_path,
    read_hyperparameters,
    validate_hyperparameters,
    write_hyperparameters,
)
from fraud_assets.lib.training.model import DEFAULT_HYPERPARAMETERS

NUMERIC = sorted(n for n, r in RULES.items() if r.kind is not str)
CHOICES = sorted(n for n, r in RULES.items() if r.kind is str)
# Names only whose value the strategy below can draw without tripping the one cross-parameter
# rule (early_stopping_rounds <= num_round), which has its own test.
INDEPENDENT = sorted(set(RULES) - {"early_stopping_rounds"})


def _valid_number(name: str) -> st.SearchStrategy:
    rule = RULES[name]
    low = rule.low if rule.low is not None else 0.0
    high = rule.high if rule.high is not None else 1e6
    if rule.kind is int:
        return st.integers(int(low), int(high))
    return st.floats(low, high, exclude_min=rule.low_open, exclude_max=rule.high_open, allow_nan=False, allow_infinity=False)


@st.composite
def valid_value(draw, name: str):
    """(given, expected): a valid value in one of the forms callers use (native, string from
    Parameter Store, integral float for an int) and its normalised form."""
    rule = RULES[name]
    if rule.kind is str:
        choice = draw(st.sampled_from(sorted(rule.choices)))
        return choice, choice
    number = draw(_valid_number(name))
    expected = int(number) if rule.kind is int else float(number)
    form = draw(st.sampled_from(["native", "string", "float"]))
    if form == "string":
        return format_value(expected), expected
    if form == "float":
        return float(number), expected
    return number, expected


@st.composite
def valid_set(draw):
    names = draw(st.lists(st.sampled_from(INDEPENDENT), unique=True, max_size=len(INDEPENDENT)))
    given_values, expected = {}, {}
    for name in names:
        value, normalised = draw(valid_value(name))
        aliases = [a for a, c in ALIASES.items() if c == name]
        spelled = draw(st.sampled_from([name, *aliases]))
        given_values[spelled] = value
        expected[name] = normalised
    return given_values, expected


@settings(max_examples=200, deadline=None)
@given(valid_set())
def test_valid_values_are_accepted_and_normalised(case):
    given_values, expected = case
    result = validate_hyperparameters(given_values)
    assert result == expected
    assert list(result) == sorted(result)
    for name, value in result.items():
        assert type(value) is RULES[name].kind
    # What Parameter Store holds reads back as the same value.
    assert validate_hyperparameters({k: format_value(v) for k, v in result.items()}) == result


@st.composite
def out_of_range(draw):
    name = draw(st.sampled_from(NUMERIC))
    rule = RULES[name]
    sides = []
    if rule.low is not None:
        below = st.floats(max_value=rule.low, exclude_max=not rule.low_open, allow_nan=False, allow_infinity=False, min_value=-1e9)
        sides.append(below.map(lambda v: math.floor(v) if rule.kind is int and v < rule.low else v))
    if rule.high is not None:
        above = st.floats(min_value=rule.high, exclude_min=not rule.high_open, max_value=rule.high * 10 + 10, allow_nan=False)
        sides.append(above.map(lambda v: math.ceil(v) if rule.kind is int else v))
    value = draw(st.one_of(*sides))
    if rule.kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    return name, value


@settings(max_examples=200, deadline=None)
@given(out_of_range(), st.booleans())
def test_out_of_range_values_are_refused_naming_the_parameter(case, as_string):
    name, value = case
    given_value = format_value(value) if as_string else value
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters({"max_depth": 5, name: given_value} if name != "max_depth" else {name: given_value})
    assert refused.value.parameter == name
    assert repr(name) in str(refused.value)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([n for n in NUMERIC if RULES[n].kind is int]), st.floats(0.01, 0.99))
def test_fractional_value_for_an_integer_parameter_is_refused(name, fraction):
    rule = RULES[name]
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters({name: rule.low + fraction})
    assert refused.value.parameter == name


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(NUMERIC), st.sampled_from([math.nan, math.inf, -math.inf, "nan", "inf", "abc", "", True, None, [1]]))
def test_non_numbers_are_refused(name, value):
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters({name: value})
    assert refused.value.parameter == name


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CHOICES), st.text(max_size=20))
def test_values_outside_a_choice_set_are_refused(name, value):
    if value.strip() in RULES[name].choices:
        return
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters({name: value})
    assert refused.value.parameter == name


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30).filter(lambda n: n not in RULES and n not in ALIASES), st.integers(0, 10))
def test_unknown_names_are_refused_naming_them(name, value):
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters({"eta": 0.1, name: value})
    assert refused.value.parameter == name
    assert "unknown parameter" in str(refused.value)


def test_alias_and_canonical_name_together_are_refused():
    with pytest.raises(HyperparameterError, match="given twice"):
        validate_hyperparameters({"eta": 0.1, "learning_rate": 0.2})


def test_early_stopping_cannot_exceed_num_round():
    assert validate_hyperparameters({"num_round": 50, "early_stopping_rounds": 50})["early_stopping_rounds"] == 50
    with pytest.raises(HyperparameterError) as refused:
        validate_hyperparameters({"num_round": 50, "early_stopping_rounds": 51})
    assert refused.value.parameter == "early_stopping_rounds"


def test_the_original_designs_defaults_are_valid():
    assert validate_hyperparameters(DEFAULT_HYPERPARAMETERS) == {"eta": 0.1, "max_depth": 5, "objective": "binary:logistic"}


# --- Parameter Store ---------------------------------------------------------------------------


def test_empty_parameter_store_reads_as_the_defaults(aws):
    found = read_hyperparameters(boto3.client("ssm"))
    assert found.source == SOURCE_DEFAULTS
    assert found.values == DEFAULT_HYPERPARAMETERS
    assert found.versions == {} and found.experiment_id is None


def test_written_values_read_back_typed_across_pages(aws):
    ssm = boto3.client("ssm")
    # 13 names: more than one 10-parameter page of GetParametersByPath.
    values = {
        "eta": 0.05,
        "max_depth": 7,
        "min_child_weight": 2.5,
        "subsample": 0.8,
        "colsample_bytree": 0.9,
        "gamma": 0.0,
        "lambda": 1.0,
        "alpha": 0.5,
        "scale_pos_weight": 20.0,
        "max_delta_step": 1.0,
        "num_round": 300,
        "early_stopping_rounds": 30,
        "eval_metric": "aucpr",
    }
    versions = write_hyperparameters(ssm, values, "20250101T000000Z-random-abc123")
    assert versions == {name: 1 for name in values}
    found = read_hyperparameters(ssm)
    assert found.source == SOURCE_SSM
    assert found.values == {**values, "objective": "binary:logistic"}  # defaults fill the rest
    assert found.versions == versions
    assert found.experiment_id == "20250101T000000Z-random-abc123"
    # The experiment id sits beside the path, never inside it.
    assert "experiment_id" not in list_parameters(ssm)
    assert ssm.get_parameter(Name=f"{meta_path()}/experiment_id")["Parameter"]["Value"] == "20250101T000000Z-random-abc123"


def test_rewrite_prunes_stale_names_and_bumps_only_changed_versions(aws):
    ssm = boto3.client("ssm")
    write_hyperparameters(ssm, {"eta": 0.1, "max_depth": 5, "gamma": 1.0}, "exp-a")
    versions = write_hyperparameters(ssm, {"eta": 0.2, "max_depth": 5}, None)
    assert versions == {"eta": 2, "max_depth": 1}
    assert sorted(list_parameters(ssm)) == ["eta", "max_depth"]
    assert read_hyperparameters(ssm).experiment_id is None


def test_refused_write_changes_nothing(aws):
    ssm = boto3.client("ssm")
    write_hyperparameters(ssm, {"eta": 0.1}, "exp-a")
    before = list_parameters(ssm)
    with pytest.raises(HyperparameterError, match="subsample"):
        write_hyperparameters(ssm, {"eta": 0.3, "subsample": 2}, "exp-b")
    assert list_parameters(ssm) == before
    assert read_hyperparameters(ssm).experiment_id == "exp-a"


def test_a_bad_value_put_in_by_hand_fails_the_read_naming_it(aws):
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/max_depth", Value="deep", Type="String")
    with pytest.raises(HyperparameterError) as refused:
        read_hyperparameters(ssm)
    assert refused.value.parameter == "max_depth"
    ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/max_depth", Value="6", Type="String", Overwrite=True)
    ssm.put_parameter(Name=f"{HYPERPARAMETER_PATH}/nested/eta", Value="0.1", Type="String")
    with pytest.raises(HyperparameterError) as refused:
        read_hyperparameters(ssm)
    assert refused.value.parameter == "nested/eta"
