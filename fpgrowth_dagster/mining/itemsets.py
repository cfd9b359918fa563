"""The result type shared by every engine: frequent itemsets as sorted label tuples with counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ITEMSET_COLUMNS = ["itemset", "support", "count", "length"]


@dataclass(frozen=True)
class FrequentItemsets:
    """Frequent itemsets of one transaction database.

    ``itemsets[i]`` is a tuple of item labels sorted ascending, ``counts[i]`` the number of
    transactions containing it. Rows are in the deterministic output order: by length,
    then by descending count, then by the itemset itself.
    """

    itemsets: list[tuple[str, ...]]
    counts: np.ndarray
    n_transactions: int
    target: str = "all"
    # Support counts of every frequent itemset (target "all") when the target is closed or
    # maximal: association rules need the supports of antecedents and consequents.
    all_counts: dict[tuple[str, ...], int] | None = field(default=None, repr=False)
    # The transactions and thresholds the itemsets were mined with (referenced, not copied):
    # rules over closed or maximal itemsets count their subsets' supports from them when
    # ``all_counts`` is not given, so mining a maximal target never materialises every itemset.
    source: Sequence[Any] | None = field(default=None, repr=False, compare=False)
    mining_options: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.itemsets)

    @property
    def support(self) -> np.ndarray:
        return self.counts / float(self.n_transactions) if self.n_transactions else self.counts * 0.0

    def to_frame(self) -> pd.DataFrame:
        """The Parquet output table: itemset (list of labels), support, count, length."""
        return pd.DataFrame(
            {
                "itemset": [list(s) for s in self.itemsets],
                "support": self.support.astype("float64"),
                "count": np.asarray(self.counts, dtype="int64"),
                "length": np.fromiter((len(s) for s in self.itemsets), dtype="int64", count=len(self.itemsets)),
            },
            columns=ITEMSET_COLUMNS,
        )
