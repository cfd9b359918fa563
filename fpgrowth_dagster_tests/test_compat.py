"""The mlxtend drop-in layer on mlxtend's documented example and its error cases."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import mlxtend.frequent_patterns as mlxtend
from mlxtend.preprocessing import TransactionEncoder

from fpgrowth_dagster.mining import compat

# The dataset of mlxtend's user guide for fpgrowth, fpmax and association_rules.
DATASET = [
    ["Milk", "Onion", "Nutmeg", "Kidney Beans", "Eggs", "Yogurt"],
    ["Dill", "Onion", "Nutmeg", "Kidney Beans", "Eggs", "Yogurt"],
    ["Milk", "Apple", "Kidney Beans", "Eggs"],
    ["Milk", "Unicorn", "Corn", "Kidney Beans", "Yogurt"],
    ["Corn", "Onion", "Onion", "Kidney Beans", "Ice cream", "Eggs"],
]


def encoded(kind: str) -> pd.DataFrame:
    te = TransactionEncoder()
    if kind == "sparse":
        return pd.DataFrame.sparse.from_spmatrix(te.fit(DATASET).transform(DATASET, sparse=True), columns=te.columns_)
    frame = pd.DataFrame(te.fit(DATASET).transform(DATASET), columns=te.columns_)
    return frame.astype(int) if kind == "int" else frame


def as_dict(frame: pd.DataFrame) -> dict:
    return dict(zip(frame["itemsets"], frame["support"]))


@pytest.mark.parametrize("kind", ["bool", "sparse", "int"])
@pytest.mark.parametrize("function", ["fpgrowth", "fpmax"])
@pytest.mark.parametrize("options", [{"min_support": 0.6, "use_colnames": True}, {"min_support": 0.2},
                                     {"min_support": 0.4, "use_colnames": True, "max_len": 2}])
def test_itemsets_equal_mlxtends(kind: str, function: str, options: dict) -> None:
    frame = encoded(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        got = getattr(compat, function)(frame, **options)
        want = getattr(mlxtend, function)(frame, **options)
    assert as_dict(got) == as_dict(want)
    assert got.columns.tolist() == ["support", "itemsets"]
    assert all(isinstance(s, frozenset) for s in got["itemsets"])


def test_documented_fpgrowth_result() -> None:
    got = as_dict(compat.fpgrowth(encoded("bool"), min_support=0.6, use_colnames=True))
    assert len(got) == 11
    assert got[frozenset({"Kidney Beans"})] == 1.0  # in every transaction: the item pyfim alone would drop
    assert got[frozenset({"Eggs", "Kidney Beans", "Onion"})] == 0.6
    assert set(as_dict(compat.fpmax(encoded("bool"), min_support=0.6, use_colnames=True))) == {
        frozenset({"Kidney Beans", "Milk"}), frozenset({"Kidney Beans", "Yogurt"}),
        frozenset({"Eggs", "Kidney Beans", "Onion"}),
    }


@pytest.mark.parametrize(
    "options",
    [
        {"metric": "confidence", "min_threshold": 0.7},
        {"metric": "lift", "min_threshold": 1.2},
        {"metric": "conviction", "min_threshold": 0.0},
        {"metric": "zhangs_metric", "min_threshold": -1.0},
        {"support_only": True, "min_threshold": 0.1},
        {"metric": "leverage", "min_threshold": -1.0, "return_metrics": ["lift", "support"]},
        {"metric": "confidence", "min_threshold": 2.0},
    ],
)
def test_association_rules_frame_equals_mlxtends(options: dict) -> None:
    itemsets = mlxtend.fpgrowth(encoded("bool"), min_support=0.6, use_colnames=True)
    with np.errstate(all="ignore"):
        want = mlxtend.association_rules(itemsets, 5, **options)
    got = compat.association_rules(itemsets, 5, **options)
    pd.testing.assert_frame_equal(got, want)


def test_association_rules_on_our_itemsets_and_integer_columns() -> None:
    itemsets = compat.fpgrowth(encoded("bool"), min_support=0.2)
    with np.errstate(all="ignore"):
        want = mlxtend.association_rules(itemsets, 5, min_threshold=0.5)
    pd.testing.assert_frame_equal(compat.association_rules(itemsets, 5, min_threshold=0.5), want)


def same_error(call_ours, call_theirs) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as theirs:
            call_theirs()
        with pytest.raises(type(theirs.value)) as ours:
            call_ours()
    assert str(ours.value) == str(theirs.value)
    return str(ours.value)


@pytest.mark.parametrize("function", ["fpgrowth", "fpmax"])
def test_invalid_one_hot_input_raises_mlxtends_errors(function: str) -> None:
    ours, theirs = getattr(compat, function), getattr(mlxtend, function)
    bad_value = encoded("int")
    bad_value.iloc[0, 0] = 2
    assert "Found value 2" in same_error(lambda: ours(bad_value), lambda: theirs(bad_value))
    with_nan = encoded("bool").astype(float)
    with_nan.iloc[0, 0] = np.nan
    assert "NaN values are not permitted" in same_error(lambda: ours(with_nan), lambda: theirs(with_nan))
    for support in (0.0, 1.5):
        assert "`min_support` must be a positive" in same_error(
            lambda: ours(encoded("bool"), min_support=support), lambda: theirs(encoded("bool"), min_support=support)
        )
    sparse = encoded("sparse")
    sparse.columns = range(1, len(sparse.columns) + 1)
    assert "integer column names" in same_error(lambda: ours(sparse), lambda: theirs(sparse))


def test_association_rules_errors_are_mlxtends() -> None:
    itemsets = mlxtend.fpgrowth(encoded("bool"), min_support=0.6, use_colnames=True)
    assert "is empty" in same_error(lambda: compat.association_rules(itemsets.iloc[:0], 5),
                                    lambda: mlxtend.association_rules(itemsets.iloc[:0], 5))
    renamed = itemsets.rename(columns={"support": "s"})
    assert "columns 'support' and 'itemsets'" in same_error(lambda: compat.association_rules(renamed, 5),
                                                            lambda: mlxtend.association_rules(renamed, 5))
    assert "got 'score'" in same_error(lambda: compat.association_rules(itemsets, 5, metric="score"),
                                       lambda: mlxtend.association_rules(itemsets, 5, metric="score"))
    maximal = mlxtend.fpmax(encoded("bool"), min_support=0.6, use_colnames=True)
    assert "support_only=True" in same_error(lambda: compat.association_rules(maximal, 5),
                                             lambda: mlxtend.association_rules(maximal, 5))
    assert "df_orig must be provided" in same_error(lambda: compat.association_rules(itemsets, 5, null_values=True),
                                                    lambda: mlxtend.association_rules(itemsets, 5, null_values=True))
