"""Errors of the mining core.

Every error says what is wrong and where (file, group, column, row or value), so a
failing group can be fixed without reading a traceback.
"""

from __future__ import annotations


class MiningError(Exception):
    """Base class of every error raised by :mod:`fpgrowth_dagster.mining`."""


class InputError(MiningError, ValueError):
    """The input data is unusable: missing column, empty input, null key, bad value."""


class SettingsError(MiningError, ValueError):
    """A mining parameter is out of range or unknown (min_support, engine, target, metric...)."""


class BudgetExceeded(MiningError):
    """Mining or rule generation would exceed its configured budget (itemsets, rules, memory)."""
