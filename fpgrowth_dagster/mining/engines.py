"""Exact frequent-itemset mining: pyfim's C FP-growth, corrected to mlxtend 0.25.0's results.

Engines: ``"fim"`` (Christian Borgelt's FP-growth from PyPI ``pyfim``), ``"mlxtend"``
(mlxtend 0.25.0 ``fpgrowth``/``fpmax`` on a sparse one-hot frame, the reference) and
``"auto"`` (= ``"fim"``). Both give the same itemsets and counts.

Threshold rule (mlxtend 0.25.0, ``fpcommon.setup_fptree`` + ``fpgrowth``): with ``N``
transactions and ``s = min_support``, an item is kept when ``count / N >= s`` (float
division); conditional FP-trees keep items with ``count >= ceil(s * N)`` (float product, so
``0.07 * 100 = 7.000000000000001`` needs 8); the final filter keeps ``count / N >= s``.
Hence single items need ``t1 = min{c : c / N >= s}`` and longer itemsets
``t2 = max(t1, ceil(s * N))`` -- except when the whole FP-tree is a single path (the
transactions, restricted to kept items, form a chain under inclusion), where mlxtend
enumerates every combination with ``t1`` only. ``min_count`` is an extra absolute floor:
``count >= max(min_count, t)``.

pyfim traps handled here: it omits every itemset whose count equals ``N`` (items present in
every transaction are removed before calling it and their combinations added back), its
``supp`` is a percentage when positive (we always pass ``-count``), and ``zmax`` keeps the
true closed/maximal itemsets whose length is at most ``zmax`` (the semantics used for
``max_len`` with closed/maximal targets by every engine here).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import combinations
from math import comb

import numpy as np

from fpgrowth_dagster.mining.errors import BudgetExceeded, SettingsError
from fpgrowth_dagster.mining.itemsets import FrequentItemsets

ENGINES = ("auto", "fim", "mlxtend")
TARGETS = ("all", "closed", "maximal")
_FIM_TARGET = {"all": "s", "closed": "c", "maximal": "m"}


def validate_options(min_support: float, min_count: int, max_len: int | None, target: str, engine: str) -> None:
    """Raise SettingsError naming the bad value (shared by every entry point)."""
    if isinstance(min_support, bool) or not isinstance(min_support, (int, float)) or not 0.0 < min_support <= 1.0:
        raise SettingsError(f"min_support must be a number in (0, 1], got {min_support!r}")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise SettingsError(f"min_count must be an integer >= 1, got {min_count!r}")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1):
        raise SettingsError(f"max_len must be an integer >= 1 or None, got {max_len!r}")
    if target not in TARGETS:
        raise SettingsError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if engine not in ENGINES:
        raise SettingsError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")


def mlxtend_thresholds(min_support: float, n_transactions: int) -> tuple[int, int]:
    """(t1, t2): mlxtend's minimum count for single items and for longer itemsets."""
    n = n_transactions
    t1 = max(1, math.ceil(min_support * n) - 2)
    while t1 / float(n) < min_support:
        t1 += 1
    while t1 > 1 and (t1 - 1) / float(n) >= min_support:
        t1 -= 1
    return t1, max(t1, math.ceil(min_support * n))


def _is_chain(transactions: Sequence[Iterable[str]], kept: set[str]) -> bool:
    """True when the transactions restricted to ``kept`` are nested (mlxtend's FP-tree is a path)."""
    distinct = {frozenset(i for i in t if i in kept) for t in transactions}
    ordered = sorted((s for s in distinct if s), key=len)
    return all(a <= b for a, b in zip(ordered, ordered[1:]))


class _Plan:
    """Everything derived from the transactions before calling pyfim."""

    def __init__(self, transactions: Sequence[Iterable[str]], min_support: float, min_count: int) -> None:
        txs = transactions
        if not isinstance(txs, list) or any(not isinstance(t, (list, tuple, set, frozenset)) for t in txs):
            txs = [list(t) for t in txs]
        self.n = n = len(txs)
        self.txs = txs
        t1, t2 = mlxtend_thresholds(min_support, n) if n else (1, 1)
        self.item_counts: Counter[str] | None = None
        if t1 < t2:  # the float corner: single items need fewer transactions than pairs
            self.item_counts = Counter(i for t in txs for i in set(t))
            if _is_chain(txs, {i for i, c in self.item_counts.items() if c >= t1}):
                t2 = t1
        self.ts, self.tl = max(t1, min_count), max(t2, min_count)
        full: set[str] = set(txs[0]) if n else set()
        for t in txs:
            if not full:
                break
            full.intersection_update(t)
        if n < self.ts:
            full = set()
        self.full = sorted(full)
        self.reduced = [[i for i in t if i not in full] for t in txs] if full else txs
        self.extras: list[tuple[str, int]] = []  # single items with ts <= count < tl
        if self.ts < self.tl:
            if self.item_counts is None:
                self.item_counts = Counter(i for t in txs for i in set(t))
            self.extras = sorted((i, c) for i, c in self.item_counts.items() if self.ts <= c < self.tl and i not in full)

    def singles_only(self) -> bool:
        return self.n < self.tl


def _fim(db: Sequence[Iterable[str]], target: str, supp: int, zmax: int | None, report: str = "a"):
    import fim

    if zmax is not None and zmax < 1:
        return {} if report == "#" else []
    extra = {} if zmax is None else {"zmax": int(zmax)}
    return fim.fpgrowth(db, target=_FIM_TARGET[target], supp=-supp, zmin=1, report=report, **extra)


def _all_by_size(plan: _Plan, max_len: int | None) -> Counter[int]:
    """Frequent itemsets of the reduced transactions (without the items in all of them) by length, with the empty one."""
    spectrum = _fim(plan.reduced, "all", plan.tl, max_len, report="#") or {}  # pyfim returns [] when nothing is frequent
    by_size: Counter[int] = Counter({0: 1})
    for (size, _support), number in spectrum.items():
        by_size[size] += int(number)
    return by_size


def _count_all(plan: _Plan, by_size: Counter[int], max_len: int | None) -> int:
    """Every itemset: each reduced one with each subset of the items in all transactions, plus the extras."""
    f = len(plan.full)
    cap = max_len if max_len is not None else 10**9
    full_ways = [sum(comb(f, j) for j in range(max(0, 1 - k), min(f, cap - k) + 1)) for k in range(max(by_size) + 1)]
    return sum(number * full_ways[k] for k, number in by_size.items()) + len(plan.extras)


def count_itemsets(plan: _Plan, target: str, max_len: int | None) -> int:
    """Exact number of itemsets the target will have, without materialising them.

    pyfim's pattern spectrum (``report='#'``) counts combinations of perfect extensions
    arithmetically, so even 1e20 itemsets are counted in milliseconds.
    """
    if plan.n == 0:
        return 0
    if plan.singles_only():
        return sum(1 for c in _item_counts(plan).values() if c >= plan.ts) if max_len is None or max_len >= 1 else 0
    if target == "all":
        return _count_all(plan, _all_by_size(plan, max_len), max_len)
    f = len(plan.full)
    cap = max_len if max_len is not None else 10**9
    rest = None if max_len is None else max_len - f
    extras = len(plan.extras)
    spectrum = _fim(plan.reduced, target, plan.tl, rest, report="#") or {}
    total = int(sum(spectrum.values())) + extras
    if f and f <= cap:
        if target == "closed" or not _has_frequent_item(plan):
            total += 1
    return total


def count_itemsets_up_to(plan: _Plan, target: str, max_len: int | None, limit: int | None) -> tuple[int, int | None]:
    """``(count, None)`` with the exact count, or ``(count, k)``: ``count`` itemsets up to length ``k`` already exceed ``limit``.

    Counting every length at once costs time in proportion to the itemsets enumerated: on Online
    Retail's UK group (7,726 invoices) it takes 9.5 s at an absolute support of 20 and over 300 s
    at 5, where the itemsets up to length 4 (resp. 3) prove the excess in 1.3 s (resp. 9 s). So
    lengths are counted one more at a time while the next one, projected from the growth of the
    last, could take the count past the limit; then every length at once. Only for target 'all':
    few closed or maximal itemsets up to length k say nothing of the longer ones.
    """
    if limit is None or target != "all" or plan.n == 0 or plan.singles_only():
        return count_itemsets(plan, target, max_len), None
    k = 2 if max_len is None else min(2, max_len)
    while True:
        by_size = _all_by_size(plan, k)
        partial = _count_all(plan, by_size, k)
        if partial > limit:
            return partial, k
        if max_len is not None and k >= max_len:
            return partial, None
        last, before = by_size.get(k, 0), by_size.get(k - 1, 0)
        if last == 0 or partial + last * max(1.0, last / max(before, 1)) <= limit:
            return count_itemsets(plan, "all", max_len), None
        k += 1


def expected_itemset_count(
    transactions: Sequence[Iterable[str]],
    *,
    min_support: float,
    min_count: int = 1,
    max_len: int | None = None,
    target: str = "all",
    limit: int | None = None,
) -> tuple[int, int | None]:
    """How many itemsets mining would give, without materialising them (see :func:`count_itemsets_up_to`)."""
    validate_options(min_support, min_count, max_len, target, "auto")
    return count_itemsets_up_to(_Plan(transactions, float(min_support), int(min_count)), target, max_len, limit)


def _item_counts(plan: _Plan) -> Counter[str]:
    if plan.item_counts is None:
        plan.item_counts = Counter(i for t in plan.txs for i in set(t))
    return plan.item_counts


def _has_frequent_item(plan: _Plan) -> bool:
    return any(c >= plan.tl for i, c in _item_counts(plan).items() if i not in plan.full)


def _mine_fim(plan: _Plan, target: str, max_len: int | None) -> list[tuple[tuple[str, ...], int]]:
    """Itemsets (unsorted labels) and counts, exactly as mlxtend would report them."""
    n, full, f = plan.n, tuple(plan.full), len(plan.full)
    if n == 0 or (max_len is not None and max_len < 1):
        return []
    if plan.singles_only():
        return [((i,), c) for i, c in _item_counts(plan).items() if c >= plan.ts]
    extras = [((i,), c) for i, c in plan.extras]
    cap = max_len if max_len is not None else n + f + 1
    if target == "all":
        found = _fim(plan.reduced, "all", plan.tl, max_len)
        if not f:
            return found + extras
        out = list(extras)
        for j in range(1, min(f, cap) + 1):
            out.extend((s, n) for s in combinations(full, j))
        for items, count in found:
            room = min(f, cap - len(items))
            for j in range(room + 1):
                out.extend((items + s, count) for s in combinations(full, j))
        return out
    rest = None if max_len is None else max_len - f
    found = _fim(plan.reduced, target, plan.tl, rest)
    out = [(items + full, count) for items, count in found] + extras
    if f and f <= cap and (target == "closed" or not _has_frequent_item(plan)):
        out.append((full, n))
    return out


def derive_target(counts: dict[tuple[str, ...], int], target: str, max_len: int | None) -> dict[tuple[str, ...], int]:
    """Closed or maximal itemsets of length <= max_len from every frequent itemset up to max_len + 1."""
    if target == "all":
        return {s: c for s, c in counts.items() if max_len is None or len(s) <= max_len}
    beaten: set[tuple[str, ...]] = set()
    for itemset, count in counts.items():
        if len(itemset) < 2:
            continue
        for drop in range(len(itemset)):
            sub = itemset[:drop] + itemset[drop + 1 :]
            if target == "maximal" or counts[sub] == count:
                beaten.add(sub)
    return {s: c for s, c in counts.items() if s not in beaten and (max_len is None or len(s) <= max_len)}


def one_hot_frame(transactions: Sequence[Iterable[str]]):
    """Sparse bool one-hot DataFrame (columns = sorted labels): mlxtend's fast input form."""
    import pandas as pd
    import scipy.sparse as sp

    labels = sorted({i for t in transactions for i in t})
    index = {label: k for k, label in enumerate(labels)}
    rows = [sorted({index[i] for i in t}) for t in transactions]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    cols = np.fromiter((k for r in rows for k in r), dtype=np.int64, count=int(indptr[-1]))
    matrix = sp.csr_matrix((np.ones(len(cols), dtype=bool), cols, indptr), shape=(len(rows), len(labels)))
    return pd.DataFrame.sparse.from_spmatrix(matrix, columns=labels)


def _mine_mlxtend(
    plan: _Plan, min_support: float, target: str, max_len: int | None, frame=None
) -> tuple[dict[tuple[str, ...], int], dict[tuple[str, ...], int]]:
    """The reference: mlxtend 0.25.0 on a sparse bool one-hot frame, floored at min_count.

    Returns (target itemsets, every frequent itemset up to max_len). Closed itemsets, and
    maximal ones under max_len or a binding min_count, are derived from fpgrowth's output.
    """
    from mlxtend.frequent_patterns import fpgrowth, fpmax

    frame = one_hot_frame(plan.txs) if frame is None else frame
    if plan.n == 0 or frame.shape[1] == 0:
        return {}, {}
    if plan.n < plan.ts:
        return {}, {}
    t1, t2 = mlxtend_thresholds(min_support, plan.n)
    floor_binds = plan.ts > t1 or plan.tl > t2
    # When min_count binds, let mlxtend mine at that floor (count >= ts) instead of its own, far
    # lower, count: a small group at count 1-2 explodes. (ts - 0.5) / n keeps float error away.
    mine_support = max(min_support, (plan.ts - 0.5) / plan.n) if plan.ts > t1 else min_support
    mine_len = None if max_len is None or target == "all" else max_len + 1
    result = fpgrowth(frame, min_support=mine_support, use_colnames=True, max_len=mine_len)
    counts = {}
    for itemset, support in zip(result["itemsets"], result["support"]):
        count = int(round(support * plan.n))
        if count >= (plan.ts if len(itemset) == 1 else plan.tl):
            counts[tuple(sorted(itemset))] = count
    every = derive_target(counts, "all", max_len)
    if target == "maximal" and max_len is None and not floor_binds:
        result = fpmax(frame, min_support=mine_support, use_colnames=True)
        found = {tuple(sorted(s)): int(round(v * plan.n)) for s, v in zip(result["itemsets"], result["support"])}
        return found, every
    return derive_target(counts, target, max_len), every


def order_itemsets(pairs: Iterable[tuple[Sequence[str], int]]) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Sort labels inside each itemset and rows by (length, -count, itemset)."""
    rows = sorted(((len(s), -c, tuple(sorted(s))) for s, c in pairs))
    return [r[2] for r in rows], np.fromiter((-r[1] for r in rows), dtype=np.int64, count=len(rows))


def mine_itemsets(
    transactions: Sequence[Iterable[str]],
    *,
    min_support: float,
    min_count: int = 1,
    max_len: int | None = None,
    target: str = "all",
    engine: str = "auto",
    max_itemsets: int | None = None,
) -> FrequentItemsets:
    """Frequent itemsets of ``transactions`` with mlxtend 0.25.0's exact results.

    ``target`` is ``"all"``, ``"closed"`` or ``"maximal"``; with ``max_len`` closed/maximal
    mean the true closed/maximal itemsets of length <= max_len. ``max_itemsets`` is checked
    before anything is materialised: BudgetExceeded says how many itemsets there would be.
    """
    validate_options(min_support, min_count, max_len, target, engine)
    if max_itemsets is not None and max_itemsets < 0:
        raise SettingsError(f"max_itemsets must be >= 0 or None, got {max_itemsets!r}")
    plan = _Plan(transactions, float(min_support), int(min_count))
    if max_itemsets is not None:
        expected, up_to = count_itemsets_up_to(plan, target, max_len, max_itemsets)
        if expected > max_itemsets:
            how_many = f"{expected:,}" if up_to is None else f"at least {expected:,} (counted up to length {up_to})"
            raise BudgetExceeded(
                f"mining {plan.n:,} transactions at min_support={min_support}, min_count={min_count}, "
                f"max_len={max_len}, target={target!r} would produce {how_many} frequent itemsets, "
                f"over the budget max_itemsets={max_itemsets:,}; raise min_support or min_count, "
                f"set a smaller max_len, use target 'closed' or 'maximal', or raise max_itemsets"
            )
    options = {"min_support": float(min_support), "min_count": int(min_count), "max_len": max_len}
    if engine == "mlxtend":
        counts, every = _mine_mlxtend(plan, float(min_support), target, max_len)
        all_counts = every if target != "all" else None
        itemsets, count_array = order_itemsets(counts.items())
        source = plan.txs if target != "all" else None
        return FrequentItemsets(itemsets, count_array, plan.n, target, all_counts, source, options)
    itemsets, count_array = order_itemsets(_mine_fim(plan, target, max_len))
    return FrequentItemsets(itemsets, count_array, plan.n, target, None, plan.txs if target != "all" else None, options)
