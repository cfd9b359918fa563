"""Drop-in replacements for mlxtend 0.25.0's ``fpgrowth``, ``fpmax`` and ``association_rules``.

Same signatures, inputs (one-hot DataFrame, dense or pandas-sparse, bool or 0/1), outputs
(frozensets, ``support`` and ``itemsets`` columns; rules in mlxtend's row order) and input
errors (mlxtend's own ``valid_input_check`` runs first), but mining runs on the exact fast
engine and rules on the vectorised generator. Differences: frequent itemsets come in the
engine's deterministic order (by length, descending support, items) rather than FP-tree
order, ``verbose`` prints nothing, and ``null_values=True`` (NaN-aware supports) is passed
through to mlxtend itself.
"""

from __future__ import annotations

from itertools import chain, combinations

import numpy as np
import pandas as pd

from fpgrowth_dagster.mining import rules as _rules
from fpgrowth_dagster.mining.engines import mine_itemsets

_METRICS = list(_rules.METRICS)


def _check(df: pd.DataFrame, min_support: float, null_values: bool) -> None:
    from mlxtend.frequent_patterns import fpcommon

    fpcommon.valid_input_check(df, null_values)
    if min_support <= 0.0 or min_support > 1.0:
        raise ValueError(
            "`min_support` must be a positive number within the interval `(0, 1]`. Got %s." % min_support
        )


def _transactions(df: pd.DataFrame) -> list[list[int]]:
    """Column positions of the true cells of each row."""
    n_rows = len(df.index)
    if df.size == 0:
        return [[] for _ in range(n_rows)]
    if hasattr(df, "sparse"):
        matrix = df.sparse.to_coo().tocsr()
        matrix.eliminate_zeros()
        indptr, indices = matrix.indptr, matrix.indices
    else:
        values = df.to_numpy()
        if values.dtype == object:
            values = values.astype(bool)
        rows, indices = np.nonzero(values)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    flat = indices.tolist()
    bounds = indptr.tolist()
    return [flat[bounds[r] : bounds[r + 1]] for r in range(n_rows)]


def _mine(df: pd.DataFrame, min_support: float, use_colnames: bool, max_len: int | None, target: str) -> pd.DataFrame:
    n = len(df.index)
    if not max_len:
        max_len = None  # mlxtend treats 0 like None
    if n == 0 or (max_len is not None and max_len < 0):
        return pd.DataFrame({"support": pd.Series([], dtype=np.float64), "itemsets": pd.Series([], dtype=object)})
    found = mine_itemsets(_transactions(df), min_support=float(min_support), max_len=max_len, target=target)
    names = list(df.columns) if use_colnames else None
    itemsets = [frozenset(names[i] for i in s) if names else frozenset(s) for s in found.itemsets]
    return pd.DataFrame({"support": np.asarray(found.counts) / float(n), "itemsets": pd.Series(itemsets, dtype=object)})


def fpgrowth(df, min_support=0.5, null_values=False, use_colnames=False, max_len=None, verbose=0):
    """mlxtend.frequent_patterns.fpgrowth on the exact fast engine."""
    if null_values:
        from mlxtend.frequent_patterns import fpgrowth as reference

        return reference(df, min_support, null_values, use_colnames, max_len, verbose)
    _check(df, min_support, null_values)
    return _mine(df, min_support, use_colnames, max_len, "all")


def fpmax(df, min_support=0.5, null_values=False, use_colnames=False, max_len=None, verbose=0):
    """mlxtend.frequent_patterns.fpmax (maximal itemsets) on the exact fast engine."""
    if null_values:
        from mlxtend.frequent_patterns import fpmax as reference

        return reference(df, min_support, null_values, use_colnames, max_len, verbose)
    _check(df, min_support, null_values)
    return _mine(df, min_support, use_colnames, max_len, "maximal")


def association_rules(
    df,
    num_itemsets=1,
    df_orig=None,
    null_values=False,
    metric="confidence",
    min_threshold=0.8,
    support_only=False,
    return_metrics=_METRICS,
):
    """mlxtend.frequent_patterns.association_rules, vectorised; same rows, order and errors."""
    if null_values:
        from mlxtend.frequent_patterns import association_rules as reference

        return reference(df, num_itemsets, df_orig, null_values, metric, min_threshold, support_only, return_metrics)
    from mlxtend.frequent_patterns import fpcommon

    fpcommon.valid_input_check(df_orig, null_values)
    if not df.shape[0]:
        raise ValueError("The input DataFrame `df` containing the frequent itemsets is empty.")
    if not all(col in df.columns for col in ["support", "itemsets"]):
        raise ValueError("Dataframe needs to contain the                         columns 'support' and 'itemsets'")
    if support_only:
        metric = "support"
    elif metric not in _rules.METRICS:
        raise ValueError("Metric must be 'confidence' or 'lift', got '{}'".format(metric))

    supports: dict[frozenset, float] = {}
    for itemset, support in zip(df["itemsets"].values, df["support"].values):
        supports[frozenset(int(i) if isinstance(i, np.generic) else i for i in itemset)] = support
    code_of = {item: c for c, item in enumerate(dict.fromkeys(chain.from_iterable(supports)))}
    ordered = [tuple(s) for s in supports]  # frozenset iteration order, as mlxtend's combinations
    blocks, block_rows = _rules._blocks_of(ordered, np.asarray(list(supports.values()), dtype=np.float64), code_of)
    index = _rules.SupportIndex(len(code_of), blocks)
    items = np.empty(len(code_of), dtype=object)
    items[:] = list(code_of)

    def missing(codes: np.ndarray, mask: int) -> None:
        # Error path only: report the first absent set in mlxtend's own iteration order.
        for itemset in supports:
            for size in range(len(itemset) - 1, 0, -1):
                for chosen in combinations(itemset, r=size):
                    antecedent = frozenset(chosen)
                    for needed in (antecedent, itemset.difference(antecedent)):
                        if needed not in supports:
                            raise KeyError(
                                str(KeyError(needed)) + "You are likely getting this error because the DataFrame "
                                "is missing  antecedent and/or consequent  information. You can try using the "
                                " `support_only=True` option"
                            )

    found = _rules.enumerate_rules(
        blocks, index, num_itemsets, metric, min_threshold, max_rules=None, support_only=support_only, on_missing=missing
    )
    if not len(found.row):
        return pd.DataFrame(columns=["antecedents", "consequents"] + list(return_metrics))
    offsets = np.cumsum([0] + [len(r) for r in block_rows])
    global_rows = np.concatenate(block_rows)[offsets[found.block] + found.row]
    lengths = np.asarray([b[0].shape[1] for b in blocks])[found.block]
    order = _rules.rule_order(global_rows, found.mask, lengths)
    antecedents, consequents = [], []
    for b, row, mask in zip(found.block[order].tolist(), found.row[order].tolist(), found.mask[order].tolist()):
        members = items[blocks[b][0][row]].tolist()
        antecedent = frozenset(m for j, m in enumerate(members) if mask >> j & 1)
        antecedents.append(antecedent)
        consequents.append(frozenset(members).difference(antecedent))
    result = pd.DataFrame(data=list(zip(antecedents, consequents)), columns=["antecedents", "consequents"])
    sAC = found.sAC[order].astype(float)
    if support_only:
        for name in return_metrics:
            result[name] = np.nan
        result["support"] = sAC
        return result
    sA, sC = found.sA[order].astype(float), found.sC[order].astype(float)
    for name in return_metrics:
        if name not in _rules.METRICS:
            raise KeyError(name)
        result[name] = _rules.metric_values(name, sAC, sA, sC, num_itemsets)
    return result
