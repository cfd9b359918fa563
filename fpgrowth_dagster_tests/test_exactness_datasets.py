"""The fast engine against mlxtend 0.25.0 on every shipped dataset: itemsets, counts, rules, metrics."""

from __future__ import annotations

import gzip
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from mlxtend.frequent_patterns import association_rules as mlxtend_rules
from mlxtend.frequent_patterns import fpgrowth as mlxtend_fpgrowth
from mlxtend.frequent_patterns import fpmax as mlxtend_fpmax

from fpgrowth_dagster.mining.engines import mine_itemsets
from fpgrowth_dagster.mining.rules import METRICS, association_rules

DATA = Path(__file__).resolve().parents[1] / "data"


def read_fimi(path: Path) -> list[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return [line.split() for line in handle if line.strip()]


@lru_cache(maxsize=None)
def online_retail() -> pd.DataFrame:
    frame = pd.read_csv(DATA / "online_retail" / "online_retail_2010-12_to_2011-05.csv.gz", dtype={"InvoiceNo": str, "StockCode": str})
    return frame[~frame["InvoiceNo"].str.startswith("C") & (frame["Quantity"] > 0)]


def online_retail_baskets(country: str | None) -> list[list[str]]:
    frame = online_retail()
    if country is not None:
        frame = frame[frame["Country"] == country]
    return [sorted(set(items)) for _, items in frame.groupby("InvoiceNo")["StockCode"]]


@lru_cache(maxsize=None)
def load(name: str) -> tuple[tuple[str, ...], ...]:
    if name == "retail":
        rows = read_fimi(DATA / "retail" / "retail.dat.gz")
    elif name in ("mushroom", "chess"):
        rows = read_fimi(DATA / name / f"{name}.dat")
    elif name == "groceries":
        with open(DATA / "groceries" / "groceries.csv") as handle:
            rows = [line.rstrip("\n").split(",") for line in handle if line.strip()]
    else:
        rows = online_retail_baskets(None if name == "online_retail" else name.split(":", 1)[1])
    return tuple(tuple(r) for r in rows)


def one_hot(transactions) -> pd.DataFrame:
    labels = sorted({i for t in transactions for i in t})
    index = {label: k for k, label in enumerate(labels)}
    rows = [sorted({index[i] for i in t}) for t in transactions]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    cols = np.fromiter((k for r in rows for k in r), np.int64, int(indptr[-1]))
    matrix = sp.csr_matrix((np.ones(len(cols), bool), cols, indptr), shape=(len(rows), len(labels)))
    return pd.DataFrame.sparse.from_spmatrix(matrix, columns=labels)


def as_counts(frame: pd.DataFrame, n: int) -> dict[frozenset, int]:
    return {frozenset(s): int(round(v * n)) for s, v in zip(frame["itemsets"], frame["support"])}


def closed_of(every: dict[frozenset, int]) -> dict[frozenset, int]:
    """Reference: an itemset is closed when no one-item-larger superset has the same count."""
    beaten = set()
    for itemset, count in every.items():
        for item in itemset:
            sub = itemset - {item}
            if sub and every[sub] == count:
                beaten.add(sub)
    return {s: c for s, c in every.items() if s not in beaten}


def maximal_of(every: dict[frozenset, int]) -> dict[frozenset, int]:
    beaten = {itemset - {item} for itemset in every if len(itemset) > 1 for item in itemset}
    return {s: c for s, c in every.items() if s not in beaten}


def ours(result) -> dict[frozenset, int]:
    assert all(list(s) == sorted(s) for s in result.itemsets)
    return {frozenset(s): int(c) for s, c in zip(result.itemsets, result.counts)}


def rules_by_split(frame: pd.DataFrame) -> dict[tuple[frozenset, frozenset], np.ndarray]:
    values = frame[list(METRICS)].to_numpy(dtype=float)
    return {(frozenset(a), frozenset(c)): values[i] for i, (a, c) in enumerate(zip(frame["antecedents"], frame["consequents"]))}


def assert_same_rules(got: pd.DataFrame, want: dict[tuple[frozenset, frozenset], np.ndarray]) -> None:
    mine = rules_by_split(got)
    assert set(mine) == set(want)
    for key, expected in want.items():
        np.testing.assert_allclose(mine[key], expected, rtol=0, atol=1e-9)
        assert np.array_equal(np.isinf(mine[key]), np.isinf(expected))


# (dataset, min_support, max_len, rule threshold on confidence): supports where mlxtend takes seconds.
CASES = [
    pytest.param("retail", 0.01, None, 0.3, marks=pytest.mark.slow, id="retail-0.01"),
    pytest.param("mushroom", 0.3, None, 0.9, id="mushroom-0.3"),
    pytest.param("mushroom", 0.2, 4, 0.95, id="mushroom-0.2-maxlen4"),
    pytest.param("chess", 0.9, None, 0.98, id="chess-0.9"),
    pytest.param("groceries", 0.01, None, 0.0, id="groceries-0.01"),
    pytest.param("groceries", 0.003, 2, 0.2, id="groceries-0.003-maxlen2"),
    pytest.param("online_retail", 0.02, None, 0.0, id="online_retail-0.02"),
    pytest.param("country:Germany", 0.05, None, 0.0, id="germany-0.05"),
    pytest.param("country:France", 0.06, None, 0.5, id="france-0.06"),
    pytest.param("country:EIRE", 0.15, None, 0.9, id="eire-0.15"),
    pytest.param("country:Spain", 0.1, None, 0.0, id="spain-0.1"),
    pytest.param("country:Brazil", 0.5, 2, 0.0, id="brazil-single-invoice-maxlen2"),
]


@pytest.mark.parametrize(("name", "min_support", "max_len", "threshold"), CASES)
def test_fast_engine_equals_mlxtend(name: str, min_support: float, max_len: int | None, threshold: float) -> None:
    transactions = [list(t) for t in load(name)]
    n = len(transactions)
    frame = one_hot(transactions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = mlxtend_fpgrowth(frame, min_support=min_support, use_colnames=True, max_len=max_len)
        want_all = as_counts(reference, n)
        got_all = mine_itemsets(transactions, min_support=min_support, max_len=max_len)
        assert ours(got_all) == want_all

        if max_len is None:
            want_closed = closed_of(want_all)
            if name == "retail":  # fpmax on the whole of retail takes as long again: derive it
                want_maximal = maximal_of(want_all)
            else:
                want_maximal = as_counts(mlxtend_fpmax(frame, min_support=min_support, use_colnames=True), n)
                assert want_maximal == maximal_of(want_all)
        else:  # true closed/maximal itemsets up to max_len, from the itemsets one item longer
            longer = as_counts(mlxtend_fpgrowth(frame, min_support=min_support, use_colnames=True, max_len=max_len + 1), n)
            want_closed = {s: c for s, c in closed_of(longer).items() if len(s) <= max_len}
            want_maximal = {s: c for s, c in maximal_of(longer).items() if len(s) <= max_len}
        got_closed = mine_itemsets(transactions, min_support=min_support, max_len=max_len, target="closed")
        got_maximal = mine_itemsets(transactions, min_support=min_support, max_len=max_len, target="maximal")
        assert ours(got_closed) == want_closed
        assert ours(got_maximal) == want_maximal

        want_rules = rules_by_split(mlxtend_rules(reference, n, metric="confidence", min_threshold=threshold))
    assert_same_rules(association_rules(got_all, metric="confidence", min_threshold=threshold), want_rules)
    for target, kept in (("closed", want_closed), ("maximal", want_maximal)):
        got = association_rules(got_closed if target == "closed" else got_maximal, min_threshold=threshold)
        assert_same_rules(got, {k: v for k, v in want_rules.items() if k[0] | k[1] in kept})


def test_mushroom_keeps_the_item_present_in_every_transaction() -> None:
    transactions = [list(t) for t in load("mushroom")]
    result = ours(mine_itemsets(transactions, min_support=0.2))
    assert result[frozenset({"85"})] == len(transactions)
    assert len(result) == 53_583
    assert ours(mine_itemsets(transactions, min_support=0.2, target="maximal")) == maximal_of(result)


def test_online_retail_countries_are_guarded_by_the_itemset_budget() -> None:
    from fpgrowth_dagster.mining.errors import BudgetExceeded

    spain = [list(t) for t in load("country:Spain")]
    with pytest.raises(BudgetExceeded, match=r"would produce 2[\d,]{26} frequent itemsets.*max_itemsets=1,000,000"):
        mine_itemsets(spain, min_support=2 / len(spain), max_itemsets=1_000_000)
    maximal = mine_itemsets(spain, min_support=2 / len(spain), target="maximal", max_itemsets=1_000_000)
    assert 0 < len(maximal) < 1_000
