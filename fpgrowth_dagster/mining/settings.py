"""Mining parameters of one group, with defaults that keep grouped real data safe.

The defaults were chosen by mining every Country group of the shipped UCI Online Retail part
(cancellations and Quantity <= 0 dropped; 36 groups from 1 to 7,726 invoices). Measured there:

- absolute support 2 explodes (Spain, 31 invoices: about 2.1e20 itemsets; Germany, Netherlands,
  Australia, Switzerland, Japan and Norway did not finish within 15 s); at count 3 the largest small
  group has 24,016 itemsets (Netherlands); at count 5 at most 1,512 (France), each in
  milliseconds. Hence ``min_count = 5``.
- United Kingdom (7,726 invoices): 2,142 itemsets at support 0.01, 23,972 at 0.005, over
  5.6 million at 0.003. Hence ``min_support = 0.01``.
- 26 countries have fewer than 20 invoices (seven a single one, of up to 45 items): with a
  count floor of 5 their itemsets say little, so groups under ``min_transactions = 20`` are
  skipped with the reason (10 groups are mined).
- at these floors the length bound does not matter (count 5: 1,512 itemsets unbounded vs
  1,470 at length <= 4 for France), so ``max_len`` stays unbounded like mlxtend's default.
- the budgets stop anything else before memory runs out: the itemset count is known before
  any itemset is built, and rules stop as soon as the budget is passed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fpgrowth_dagster.mining.engines import ENGINES, TARGETS
from fpgrowth_dagster.mining.errors import SettingsError
from fpgrowth_dagster.mining.rules import METRICS


@dataclass(frozen=True)
class MiningSettings:
    """Thresholds, target, engine, rule metric and budgets for mining one group."""

    min_support: float = 0.01
    min_count: int = 5
    max_len: int | None = None
    min_transactions: int = 20
    target: str = "all"
    engine: str = "auto"
    metric: str = "confidence"
    min_threshold: float = 0.8
    max_itemsets: int | None = 1_000_000
    max_rules: int | None = 1_000_000
    # Resident memory (MiB) a group's step process may use; None: a share of the available memory.
    # Enforced by fpgrowth_dagster.monitoring's memory guard around mining, not by the mining core.
    max_memory_mb: int | None = None

    def validate(self) -> MiningSettings:
        """Raise SettingsError naming the first bad parameter and its value; return self if valid."""
        support = self.min_support
        if _not_number(support) or not 0.0 < float(support) <= 1.0:
            raise SettingsError(f"min_support must be a number in (0, 1], got {support!r}")
        _integer("min_count", self.min_count, minimum=1)
        _integer("min_transactions", self.min_transactions, minimum=0)
        _integer("max_len", self.max_len, minimum=1, optional=True)
        _integer("max_itemsets", self.max_itemsets, minimum=0, optional=True)
        _integer("max_rules", self.max_rules, minimum=0, optional=True)
        _integer("max_memory_mb", self.max_memory_mb, minimum=1, optional=True)
        if self.target not in TARGETS:
            raise SettingsError(f"unknown target {self.target!r}; expected one of {', '.join(TARGETS)}")
        if self.engine not in ENGINES:
            raise SettingsError(f"unknown engine {self.engine!r}; expected one of {', '.join(ENGINES)}")
        if self.metric not in METRICS:
            raise SettingsError(f"unknown metric {self.metric!r}; expected one of {', '.join(METRICS)}")
        if _not_number(self.min_threshold) or not math.isfinite(float(self.min_threshold)):
            raise SettingsError(f"min_threshold must be a finite number, got {self.min_threshold!r}")
        return self

    def replace(self, **overrides: Any) -> MiningSettings:
        """A copy with ``overrides`` applied; unknown parameter names are rejected by name."""
        _reject_unknown(overrides)
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MiningSettings:
        """Defaults overridden by ``data`` (e.g. from YAML or JSON), validated."""
        _reject_unknown(data)
        return cls(**dict(data)).validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters (for summaries and metadata)."""
        return dataclasses.asdict(self)


DEFAULTS = MiningSettings()
SETTING_NAMES = tuple(f.name for f in dataclasses.fields(MiningSettings))


def _reject_unknown(data: Mapping[str, Any]) -> None:
    unknown = [k for k in data if k not in SETTING_NAMES]
    if unknown:
        raise SettingsError(
            f"unknown mining setting{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(SETTING_NAMES)}"
        )


def _not_number(value: Any) -> bool:
    return isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))


def _integer(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise SettingsError(f"{name} must be {allowed}, got {value!r}")
