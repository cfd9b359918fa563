"""association_rules: mlxtend 0.25.0's rules and metrics, filtering, order, budgets, closed/maximal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlxtend.frequent_patterns import association_rules as mlxtend_rules

from fpgrowth_dagster.mining.engines import mine_itemsets
from fpgrowth_dagster.mining.errors import BudgetExceeded, SettingsError
from fpgrowth_dagster.mining.itemsets import FrequentItemsets
from fpgrowth_dagster.mining.rules import METRICS, association_rules

MUSHROOM = Path(__file__).resolve().parents[1] / "data" / "mushroom" / "mushroom.dat"
THRESHOLDS = {
    "antecedent support": 0.6, "consequent support": 0.6, "support": 0.45, "confidence": 0.9, "lift": 1.5,
    "representativity": 1.0, "leverage": 0.05, "conviction": 2.0, "zhangs_metric": 0.6, "jaccard": 0.5,
    "certainty": 0.5, "kulczynski": 0.8,
}


@pytest.fixture(scope="module")
def mushroom_itemsets() -> FrequentItemsets:
    with open(MUSHROOM) as handle:
        transactions = [line.split() for line in handle if line.strip()]
    return mine_itemsets(transactions, min_support=0.4)


def reference(itemsets: FrequentItemsets, **options) -> pd.DataFrame:
    frame = pd.DataFrame({"support": itemsets.support, "itemsets": [frozenset(s) for s in itemsets.itemsets]})
    with np.errstate(all="ignore"):
        return mlxtend_rules(frame, itemsets.n_transactions, **options)


def keyed(frame: pd.DataFrame) -> dict:
    values = frame[list(METRICS)].to_numpy(dtype=float)
    return {(frozenset(a), frozenset(c)): values[i] for i, (a, c) in enumerate(zip(frame["antecedents"], frame["consequents"]))}


def test_metric_names_are_mlxtends() -> None:
    assert METRICS == (
        "antecedent support", "consequent support", "support", "confidence", "lift", "representativity",
        "leverage", "conviction", "zhangs_metric", "jaccard", "certainty", "kulczynski",
    )


@pytest.mark.parametrize("metric", METRICS)
def test_every_metric_filters_like_mlxtend(mushroom_itemsets: FrequentItemsets, metric: str) -> None:
    got = association_rules(mushroom_itemsets, metric=metric, min_threshold=THRESHOLDS[metric])
    want = keyed(reference(mushroom_itemsets, metric=metric, min_threshold=THRESHOLDS[metric]))
    assert len(want) > 0
    mine = keyed(got)
    assert set(mine) == set(want)
    for key, values in want.items():
        np.testing.assert_allclose(mine[key], values, rtol=0, atol=1e-9)
    assert got.columns.tolist() == ["antecedents", "consequents", *METRICS]
    assert all(isinstance(a, list) and a == sorted(a) for a in got["antecedents"])


def test_edge_cases_of_conviction_certainty_and_zhang() -> None:
    # k is in every transaction: confidence 1 (conviction inf), consequent support 1 (certainty 0).
    transactions = [["k", "a"], ["k", "a"], ["k", "b"], ["k"]]
    itemsets = mine_itemsets(transactions, min_support=0.25)
    got = keyed(association_rules(itemsets, metric="confidence", min_threshold=0.0))
    want = keyed(reference(itemsets, metric="confidence", min_threshold=0.0))
    assert set(got) == set(want)
    rule = got[(frozenset({"a"}), frozenset({"k"}))]
    assert np.isinf(rule[METRICS.index("conviction")])
    assert rule[METRICS.index("certainty")] == 0.0
    assert rule[METRICS.index("zhangs_metric")] == 0.0
    assert rule[METRICS.index("representativity")] == 1.0
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-9)


def test_order_is_itemset_order_then_larger_antecedents_first() -> None:
    itemsets = mine_itemsets([list("abc"), list("abc"), list("ab")], min_support=0.5)
    rules = association_rules(itemsets, min_threshold=0.0)
    pairs = list(zip(rules["antecedents"].map(tuple), rules["consequents"].map(tuple)))
    assert pairs[:2] == [(("a",), ("b",)), (("b",), ("a",))]
    assert pairs[-6:] == [(("a", "b"), ("c",)), (("a", "c"), ("b",)), (("b", "c"), ("a",)),
                          (("a",), ("b", "c")), (("b",), ("a", "c")), (("c",), ("a", "b"))]


def test_closed_and_maximal_rules_use_the_supports_of_every_subset() -> None:
    transactions = [list("abcd"), list("abc"), list("abd"), list("bcd"), list("ab"), list("cd"), list("a")]
    every = keyed(association_rules(mine_itemsets(transactions, min_support=0.2), min_threshold=0.0))
    for target in ("closed", "maximal"):
        for engine in ("fim", "mlxtend"):
            kept = mine_itemsets(transactions, min_support=0.2, target=target, engine=engine)
            got = keyed(association_rules(kept, min_threshold=0.0))
            unions = {frozenset(s) for s in kept.itemsets}
            want = {k: v for k, v in every.items() if k[0] | k[1] in unions}
            assert set(got) == set(want) and len(want) > 0
            for key in want:
                np.testing.assert_array_equal(got[key], want[key])
    bare = mine_itemsets(transactions, min_support=0.2, target="maximal")
    orphan = FrequentItemsets(bare.itemsets, bare.counts, bare.n_transactions, "maximal")
    with pytest.raises(SettingsError, match="supports of their subsets"):
        association_rules(orphan)


def test_budgets_and_bad_settings() -> None:
    itemsets = mine_itemsets([list("abcdef")] * 3 + [list("abc")], min_support=0.5)
    everything = association_rules(itemsets, min_threshold=0.0)
    assert len(association_rules(itemsets, min_threshold=0.0, max_rules=len(everything))) == len(everything)
    with pytest.raises(BudgetExceeded, match=r"more than 10 association rules pass confidence >= 0.0.*max_rules=10"):
        association_rules(itemsets, min_threshold=0.0, max_rules=10)
    with pytest.raises(BudgetExceeded, match="antecedent/consequent splits"):
        association_rules(itemsets, max_candidates=100)
    with pytest.raises(SettingsError, match="unknown metric 'score'"):
        association_rules(itemsets, metric="score")


def test_no_itemsets_or_no_rules_give_an_empty_typed_table() -> None:
    for itemsets in (mine_itemsets([["a"], ["b"]], min_support=1.0), mine_itemsets([["a"], ["b"]], min_support=0.5)):
        rules = association_rules(itemsets)
        assert rules.empty and rules.columns.tolist() == ["antecedents", "consequents", *METRICS]
        assert all(rules[m].dtype == np.float64 for m in METRICS)
