"""The mining core: reading transactions, exact FP-Growth itemsets and association rules, per group.

Pure Python (pandas, pyarrow, pyfim, mlxtend); no Dagster import, so notebooks, the CLI and the
Dagster assets all run the same code.
"""

from __future__ import annotations

from fpgrowth_dagster.mining.engines import ENGINES, TARGETS, mine_itemsets
from fpgrowth_dagster.mining.errors import BudgetExceeded, InputError, MiningError, SettingsError
from fpgrowth_dagster.mining.groups import GroupResult, PeakRss, mine_group, mine_groups, write_parquet_atomic
from fpgrowth_dagster.mining.itemsets import FrequentItemsets
from fpgrowth_dagster.mining.rules import METRICS, association_rules
from fpgrowth_dagster.mining.settings import DEFAULTS, MiningSettings
from fpgrowth_dagster.mining.transactions import (
    FILTER_OPS,
    LongFormat,
    RowFilter,
    group_baskets,
    read_basket,
    read_fimi,
    read_long,
    to_baskets,
)

__all__ = [
    "DEFAULTS",
    "ENGINES",
    "FILTER_OPS",
    "METRICS",
    "TARGETS",
    "BudgetExceeded",
    "FrequentItemsets",
    "GroupResult",
    "InputError",
    "LongFormat",
    "MiningError",
    "MiningSettings",
    "PeakRss",
    "RowFilter",
    "SettingsError",
    "association_rules",
    "group_baskets",
    "mine_group",
    "mine_groups",
    "mine_itemsets",
    "read_basket",
    "read_fimi",
    "read_long",
    "to_baskets",
    "write_parquet_atomic",
]
