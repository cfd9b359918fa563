"""mine_itemsets: thresholds, the pyfim traps, targets, max_len, budgets and validation."""

from __future__ import annotations

import warnings

import pytest

from fpgrowth_dagster.mining.engines import ENGINES, TARGETS, mine_itemsets, mlxtend_thresholds
from fpgrowth_dagster.mining.errors import BudgetExceeded, SettingsError


def as_dict(result) -> dict[tuple[str, ...], int]:
    return dict(zip(result.itemsets, result.counts.tolist()))


def both(transactions, **options):
    """The fast engine's result, asserted equal (itemsets, counts, order) to the mlxtend engine's."""
    fast = mine_itemsets(transactions, engine="auto", **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = mine_itemsets(transactions, engine="mlxtend", **options)
    assert fast.itemsets == reference.itemsets
    assert fast.counts.tolist() == reference.counts.tolist()
    assert fast.n_transactions == reference.n_transactions == len(transactions)
    return fast


def test_public_names() -> None:
    assert ENGINES == ("auto", "fim", "mlxtend")
    assert TARGETS == ("all", "closed", "maximal")


def test_one_transaction_gives_every_subset() -> None:
    result = both([["b", "a", "c"]], min_support=1.0)
    assert len(result) == 7
    assert set(as_dict(result).values()) == {1}
    assert result.itemsets[-1] == ("a", "b", "c")
    assert as_dict(both([["b", "a", "c"]], min_support=1.0, target="closed")) == {("a", "b", "c"): 1}
    assert as_dict(both([["b", "a", "c"]], min_support=0.5, target="maximal", max_len=2)) == {}


def test_items_in_every_transaction_are_combined_with_the_rest() -> None:
    transactions = [["k", "a", "b"], ["k", "a"], ["k", "b", "c"], ["k", "z", "a"]]
    result = as_dict(both(transactions, min_support=0.5))
    assert result[("k",)] == 4
    assert result[("a", "k")] == 3 and result[("a",)] == 3
    assert result[("a", "b", "k")] == 1 if ("a", "b", "k") in result else True
    closed = as_dict(both(transactions, min_support=0.25, target="closed"))
    assert ("k",) in closed and ("a",) not in closed and ("a", "k") in closed
    maximal = as_dict(both(transactions, min_support=0.25, target="maximal"))
    assert all("k" in s for s in maximal)
    assert as_dict(both([["k", "j"], ["k", "j"]], min_support=0.5, target="maximal")) == {("j", "k"): 2}
    assert as_dict(both([["k", "j"], ["k", "j"]], min_support=0.5, max_len=1)) == {("j",): 2, ("k",): 2}


def test_float_threshold_matches_mlxtend() -> None:
    # 0.07 * 100 = 7.000000000000001: mlxtend keeps single items seen 7 times (7 / 100 >= 0.07)
    # but its conditional trees need ceil(7.000000000000001) = 8 for pairs.
    assert mlxtend_thresholds(0.07, 100) == (7, 8)
    assert mlxtend_thresholds(0.57, 100) == (57, 57)
    transactions = [["a", "b"]] * 7 + [["c", "d"]] * 8 + [["e"]] * 85
    result = as_dict(both(transactions, min_support=0.07))
    assert result[("a",)] == 7 and ("a", "b") not in result and result[("c", "d")] == 8
    closed = as_dict(both(transactions, min_support=0.07, target="closed"))
    assert ("a",) in closed and ("c",) not in closed
    assert ("a",) in as_dict(both(transactions, min_support=0.07, target="maximal"))
    # Nested transactions make mlxtend's FP-tree a single path: then pairs need 7 too.
    chain = [["a", "b"]] * 7 + [["a"]] * 93
    assert as_dict(both(chain, min_support=0.07))[("a", "b")] == 7


def test_min_count_is_an_extra_floor() -> None:
    transactions = [["a", "b"], ["a", "b"], ["a", "c"], ["c"]]
    assert as_dict(both(transactions, min_support=0.25, min_count=2)) == {("a",): 3, ("c",): 2, ("b",): 2, ("a", "b"): 2}
    assert as_dict(both(transactions, min_support=0.25, min_count=5)) == {}


def test_max_len_and_targets_agree_with_the_reference() -> None:
    transactions = [list("abcd"), list("abc"), list("abd"), list("bcd"), list("ab"), list("cd"), list("a")]
    for target in TARGETS:
        for max_len in (None, 1, 2, 3):
            result = both(transactions, min_support=0.2, target=target, max_len=max_len)
            assert all(len(s) <= (max_len or 9) for s in result.itemsets)


def test_order_is_length_then_descending_count_then_items() -> None:
    result = both([list("abc"), list("ab"), list("b"), list("c")], min_support=0.25)
    keys = [(len(s), -c, s) for s, c in zip(result.itemsets, result.counts)]
    assert keys == sorted(keys)
    assert result.to_frame().columns.tolist() == ["itemset", "support", "count", "length"]


def test_empty_inputs_and_empty_results() -> None:
    assert len(mine_itemsets([], min_support=0.5)) == 0
    assert len(both([["a"], ["b"]], min_support=1.0)) == 0
    assert len(both([[], []], min_support=0.5)) == 0


def test_budget_stops_before_materialising() -> None:
    wide = [[f"i{k:02d}" for k in range(60)]] * 2 + [["x"]]  # 2**60 - 1 frequent itemsets
    with pytest.raises(BudgetExceeded) as error:
        mine_itemsets(wide, min_support=0.5, max_itemsets=10_000)
    message = str(error.value)
    # 2**60 - 1 in all; its 1,830 pairs are a fair share of the budget, so lengths are counted one by one,
    # and those up to length 3 (60 + C(60, 2) + C(60, 3)) already exceed it.
    assert "would produce at least 36,050 (counted up to length 3) frequent itemsets" in message
    with pytest.raises(BudgetExceeded) as error:  # few pairs for this budget: every length counted at once
        mine_itemsets(wide, min_support=0.5, max_itemsets=1_000_000)
    assert "would produce 1,152,921,504,606,84" in str(error.value)  # about 2**60 (pyfim counts in doubles)
    assert "max_itemsets=10,000" in message and "min_support" in message and "max_len" in message
    assert len(mine_itemsets(wide, min_support=0.5, target="closed", max_itemsets=10)) == 1
    with pytest.raises(BudgetExceeded):
        mine_itemsets(wide, min_support=0.5, max_len=3, max_itemsets=1000, engine="mlxtend")
    transactions = [list("abc"), list("ab"), list("b")]
    exact = len(mine_itemsets(transactions, min_support=0.3))
    assert len(mine_itemsets(transactions, min_support=0.3, max_itemsets=exact)) == exact
    with pytest.raises(BudgetExceeded):
        mine_itemsets(transactions, min_support=0.3, max_itemsets=exact - 1)
    full = [list("kab"), list("ka"), list("kb")]  # the count includes combinations with item k
    exact = len(mine_itemsets(full, min_support=0.3, max_len=2))
    assert len(mine_itemsets(full, min_support=0.3, max_len=2, max_itemsets=exact)) == exact
    with pytest.raises(BudgetExceeded):
        mine_itemsets(full, min_support=0.3, max_len=2, max_itemsets=exact - 1)


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"min_support": 0.0}, "min_support"),
        ({"min_support": 1.5}, "min_support"),
        ({"min_support": 0.5, "engine": "spark"}, "engine 'spark'"),
        ({"min_support": 0.5, "target": "rare"}, "target 'rare'"),
        ({"min_support": 0.5, "max_len": 0}, "max_len"),
        ({"min_support": 0.5, "min_count": 0}, "min_count"),
    ],
)
def test_bad_settings_are_named(options: dict, text: str) -> None:
    with pytest.raises(SettingsError, match=text):
        mine_itemsets([["a"]], **options)


@pytest.mark.parametrize(("dataset", "min_support", "max_len"),
                         [("mushroom", 0.3, None), ("mushroom", 0.2, 4), ("chess", 0.85, None), ("retail", 0.002, None)])
def test_bounded_count_is_exact_within_the_limit_on_real_data(data_dir, dataset, min_support, max_len) -> None:
    """Counting length by length gives the very count of the mined itemsets when they fit the limit."""
    from fpgrowth_dagster.mining import read_fimi
    from fpgrowth_dagster.mining.engines import expected_itemset_count

    name = "retail.dat.gz" if dataset == "retail" else f"{dataset}.dat"
    baskets = read_fimi(data_dir / dataset / name)
    mined = len(mine_itemsets(baskets, min_support=min_support, max_len=max_len))
    options = {"min_support": min_support, "max_len": max_len}
    assert expected_itemset_count(baskets, **options) == (mined, None)
    assert expected_itemset_count(baskets, **options, limit=mined) == (mined, None)
    below, up_to = expected_itemset_count(baskets, **options, limit=mined - 1)
    assert mined - 1 < below <= mined  # exact, or a lower bound that already proves the excess
    assert up_to is not None or below == mined  # without a stopping length, the count is the exact one
    with pytest.raises(BudgetExceeded):
        mine_itemsets(baskets, min_support=min_support, max_len=max_len, max_itemsets=mined - 1)


def test_exploding_group_is_refused_without_counting_every_length(data_dir) -> None:
    """Online Retail's UK at an absolute support of 20: all lengths take 9.5 s to count; up to length 4 suffices."""
    import pandas as pd

    frame = pd.read_csv(data_dir / "online_retail" / "online_retail_2010-12_to_2011-05.csv.gz", dtype=str)
    frame = frame[(frame["Country"] == "United Kingdom") & ~frame["InvoiceNo"].str.startswith("C")]
    baskets = [sorted(set(items)) for _, items in frame.groupby("InvoiceNo")["StockCode"]]
    with pytest.raises(BudgetExceeded) as error:
        mine_itemsets(baskets, min_support=1e-6, min_count=20, max_itemsets=1_000_000)
    assert "would produce at least 3,9" in str(error.value) and "(counted up to length 4)" in str(error.value)
