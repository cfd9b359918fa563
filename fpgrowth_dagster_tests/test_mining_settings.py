"""MiningSettings: defaults, validation naming the parameter and value, replace and from_dict."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fpgrowth_dagster.mining import DEFAULTS, MiningSettings, SettingsError


def test_defaults_are_valid_and_json_able() -> None:
    assert DEFAULTS.validate() is DEFAULTS
    data = json.loads(json.dumps(DEFAULTS.to_dict()))
    assert MiningSettings.from_dict(data) == DEFAULTS
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.min_support = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_support": 0.0}, r"min_support must be a number in \(0, 1\], got 0.0"),
        ({"min_support": 1.5}, r"min_support must be a number in \(0, 1\], got 1.5"),
        ({"min_support": -0.1}, r"min_support .* got -0.1"),
        ({"min_support": "0.1"}, r"min_support .* got '0.1'"),
        ({"min_count": 0}, r"min_count must be an integer >= 1, got 0"),
        ({"min_count": -3}, r"min_count must be an integer >= 1, got -3"),
        ({"min_count": 2.5}, r"min_count must be an integer >= 1, got 2.5"),
        ({"min_transactions": -1}, r"min_transactions must be an integer >= 0, got -1"),
        ({"max_len": 0}, r"max_len must be an integer >= 1 or None, got 0"),
        ({"max_itemsets": -1}, r"max_itemsets must be an integer >= 0 or None, got -1"),
        ({"max_rules": -5}, r"max_rules must be an integer >= 0 or None, got -5"),
        ({"target": "frequent"}, r"unknown target 'frequent'; expected one of all, closed, maximal"),
        ({"engine": "spark"}, r"unknown engine 'spark'; expected one of auto, fim, mlxtend"),
        ({"metric": "confidance"}, r"unknown metric 'confidance'; expected one of antecedent support"),
        ({"min_threshold": float("nan")}, r"min_threshold must be a finite number, got nan"),
    ],
)
def test_validate_names_the_parameter_and_value(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        DEFAULTS.replace(**overrides).validate()


def test_replace_and_from_dict_reject_unknown_names() -> None:
    changed = DEFAULTS.replace(min_support=0.05, max_len=None, engine="mlxtend")
    assert (changed.min_support, changed.max_len, changed.engine) == (0.05, None, "mlxtend")
    assert DEFAULTS.min_support == 0.01  # unchanged
    with pytest.raises(SettingsError, match=r"unknown mining setting 'minsupport'; known: min_support, min_count"):
        DEFAULTS.replace(minsupport=0.1)
    with pytest.raises(SettingsError, match=r"unknown mining settings 'colour', 'size'"):
        MiningSettings.from_dict({"colour": 1, "size": 2, "min_support": 0.2})
    with pytest.raises(SettingsError, match="min_support"):
        MiningSettings.from_dict({"min_support": 2})
    assert MiningSettings.from_dict({"min_support": 0.2}).min_support == 0.2


def test_default_guards_are_the_measured_ones() -> None:
    # The values the Online Retail measurement chose (see settings.py); test_mining_groups checks
    # that they keep every Country group mined or skipped.
    assert (DEFAULTS.min_support, DEFAULTS.min_count, DEFAULTS.min_transactions, DEFAULTS.max_len) == (0.01, 5, 20, None)
    assert DEFAULTS.max_itemsets == 1_000_000 and DEFAULTS.max_rules == 1_000_000
