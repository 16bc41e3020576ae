"""The Glue scripts' copies of the library's constants, held equal to the one source.

glue_scripts/*.py are uploaded to Glue as single files, so they import nothing from fraud_assets and
copy the constants they share with it (column names, split ratios and hash buckets, id prefix,
feature names and windows...). Every module-level constant of a script is either such a copy,
compared here with the library's value of the same name, or listed in SCRIPT_ONLY with the reason:
a constant added to a script, or changed in the library, fails this test until the two agree.
No Spark needed.
"""

from __future__ import annotations

import importlib.metadata
from types import ModuleType

import pytest

from fraud_assets.defs import engines
from fraud_assets.lib import config
from fraud_assets.lib.features import history
from fraud_assets.lib.training import extraction, features, prep_engines, raw_data, splits

DATA_PREP = prep_engines.load_glue_script(prep_engines.DATA_PREP_SCRIPT)
FEATURE_ENG = prep_engines.load_glue_script(prep_engines.FEATURE_ENG_SCRIPT)
SCRIPTS = {"fraud_data_prep": DATA_PREP, "fraud_feature_eng": FEATURE_ENG}

# Where the one source of each shared name lives (the first module that defines it).
LIBRARY: tuple[ModuleType, ...] = (config, splits, extraction, raw_data, features, history)

# Constants with no library counterpart, per script: what they are instead.
SCRIPT_ONLY: dict[str, dict[str, str]] = {
    "fraud_data_prep": {
        "NUMBER_PATTERN": "the decimal text pyarrow's CSV reader accepts; test_spark_parity's bad-file cases hold the two alike",
        "SPLIT_COLUMN": "the output's Hive partition column; fraud_feature_eng's copy is compared below",
        "PIPES_CONTEXT_ARG": "Glue's argv names of the Pipes bootstrap (dagster-aws's)",
        "PIPES_MESSAGES_ARG": "Glue's argv names of the Pipes bootstrap (dagster-aws's)",
        "SUMMARY_MESSAGE_KIND": "compared with defs/engines.py GLUE_SUMMARY_MESSAGE below",
    },
    "fraud_feature_eng": {
        "SPLIT_COLUMN": "fraud_data_prep's output layout; compared below",
        "STATS_FILE": "the job's own output file name",
    },
}


def script_constants(module: ModuleType) -> dict[str, object]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, (str, int, float, tuple, list, dict, frozenset))
    }


def library_value(name: str) -> object:
    for module in LIBRARY:
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(name)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_copied_constant_equals_the_librarys(script):
    constants = script_constants(SCRIPTS[script])
    only = SCRIPT_ONLY[script]
    assert set(only) <= set(constants), "SCRIPT_ONLY names a constant the script no longer has"
    unclassified, differing = [], {}
    for name, value in sorted(constants.items()):
        if name in only:
            continue
        try:
            expected = library_value(name)
        except LookupError:
            unclassified.append(name)
            continue
        if value != expected:
            differing[name] = (value, expected)
    assert not unclassified, f"{script}: {unclassified} have no library counterpart; give them one or list them in SCRIPT_ONLY"
    assert not differing, f"{script} disagrees with fraud_assets.lib (script, library): {differing}"


def test_the_comparison_has_teeth(monkeypatch):
    monkeypatch.setattr(splits, "HASH_BUCKETS", splits.HASH_BUCKETS + 1)
    with pytest.raises(AssertionError, match="HASH_BUCKETS"):
        test_every_copied_constant_equals_the_librarys("fraud_data_prep")
    monkeypatch.undo()
    monkeypatch.setattr(history, "TERMINAL_WINDOW_DAYS", (1, 7, 28))
    with pytest.raises(AssertionError, match="TERMINAL_WINDOW_DAYS"):
        test_every_copied_constant_equals_the_librarys("fraud_feature_eng")
    monkeypatch.undo()
    monkeypatch.setattr(DATA_PREP, "NEW_THING", 3, raising=False)
    with pytest.raises(AssertionError, match="NEW_THING"):
        test_every_copied_constant_equals_the_librarys("fraud_data_prep")


def test_the_scripts_agree_with_each_other_and_with_the_engine():
    for name in ("FEATURE_COLUMNS", "LABEL_COLUMN", "SPLITS", "SPLIT_COLUMN"):
        assert getattr(FEATURE_ENG, name) == getattr(DATA_PREP, name), name
    assert DATA_PREP.SUMMARY_MESSAGE_KIND == engines.GLUE_SUMMARY_MESSAGE
    # Spark's xxhash64 is seeded with 42, not settable: the library's hash must keep that seed.
    assert splits.XXHASH_SEED == 42


def test_derived_values_match():
    for ratios in [(0.7, 0.15, 0.15), (0.5, 0.25, 0.25), (0.34, 0.33, 0.33), (0.8, 0.1, 0.1)]:
        assert DATA_PREP.split_cuts(ratios) == (round(ratios[0] * 10_000), round((ratios[0] + ratios[1]) * 10_000))
    assert FEATURE_ENG.engineered_feature_names(True) == features.engineered_feature_names(True)
    assert FEATURE_ENG.engineered_feature_names(False) == features.engineered_feature_names(False)
    for legit, cap in [(100, None), (100, 100), (1000, 7), (284_315, 10_000)]:
        assert DATA_PREP.sampling_threshold(legit, cap) == extraction.sampling_threshold(legit, cap)


def test_the_jobs_dagster_pipes_is_the_locked_one():
    """The Glue job installs dagster-pipes itself (--additional-python-modules in the template): the
    version the code location runs, so the two ends of Pipes speak the same protocol."""
    from fraud_assets_local.bootstrap import load_template

    job = load_template()["Resources"]["GlueDataPrepJob"]["Properties"]
    assert job["DefaultArguments"]["--additional-python-modules"] == f"dagster-pipes=={importlib.metadata.version('dagster-pipes')}"
