"""mine_group / mine_groups: statuses, reasons, captured failures, timing, peak RSS; atomic Parquet writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from fpgrowth_dagster.mining import (
    DEFAULTS,
    LongFormat,
    PeakRss,
    association_rules,
    group_baskets,
    mine_group,
    mine_groups,
    mine_itemsets,
    read_long,
    write_parquet_atomic,
)
from fpgrowth_dagster.mining.groups import safe_path_component

BASKETS = [["bread", "milk"], ["bread", "butter", "milk"], ["beer", "bread"], ["milk", "butter"], ["bread", "milk"]] * 4


def test_mined_group_has_the_engine_tables_and_facts() -> None:
    settings = DEFAULTS.replace(min_support=0.3, min_count=1, min_transactions=5, min_threshold=0.6)
    result = mine_group(BASKETS, settings, group="shop 1")
    expected = mine_itemsets(BASKETS, min_support=0.3)
    assert result.status == "mined" and result.reason is None
    assert (result.group, result.n_transactions, result.n_items) == ("shop 1", 20, 4)
    pd.testing.assert_frame_equal(result.itemsets, expected.to_frame())
    pd.testing.assert_frame_equal(result.rules, association_rules(expected, min_threshold=0.6))
    assert result.n_itemsets == len(expected) and result.n_rules == len(result.rules) > 0
    assert result.seconds > 0 and result.peak_rss_bytes > 10 * 2**20
    summary = result.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert set(summary) >= {"group", "status", "reason", "n_transactions", "n_items", "n_itemsets", "n_rules",
                            "seconds", "peak_rss_bytes", "peak_rss_method"}


def test_small_group_is_skipped_with_the_reason() -> None:
    result = mine_group(BASKETS[:3], DEFAULTS, group="tiny")
    assert result.status == "skipped"
    assert result.reason == "3 transactions < min_transactions 20"
    assert result.itemsets is None and result.rules is None and result.n_itemsets == 0
    assert mine_group([["a"]], DEFAULTS).reason == "1 transaction < min_transactions 20"


def test_budget_and_settings_errors_are_captured_as_failed() -> None:
    over = mine_group(BASKETS, DEFAULTS.replace(min_support=0.1, min_count=1, min_transactions=1, max_itemsets=2))
    assert over.status == "failed"
    assert over.reason.startswith("BudgetExceeded: ") and "max_itemsets=2" in over.reason
    rules_over = mine_group(BASKETS, DEFAULTS.replace(min_support=0.1, min_count=1, min_transactions=1,
                                                      min_threshold=0.0, max_rules=1))
    assert rules_over.status == "failed" and "max_rules=1" in rules_over.reason
    bad = mine_group(BASKETS, DEFAULTS.replace(engine="spark"), group="g")
    assert bad.status == "failed" and bad.reason.startswith("SettingsError: unknown engine 'spark'")
    assert bad.summary()["status"] == "failed"


def test_group_where_nothing_is_frequent_is_mined_with_empty_tables() -> None:
    result = mine_group(BASKETS, DEFAULTS.replace(min_support=1.0, min_count=1, min_transactions=1))
    assert (result.status, result.reason) == ("mined", None)
    assert (result.n_itemsets, result.n_rules, len(result.itemsets), len(result.rules)) == (0, 0, 0, 0)


def test_mine_groups_goes_on_after_a_failure() -> None:
    groups = {"big": BASKETS, "small": BASKETS[:2], "bad": BASKETS * 2}
    settings = DEFAULTS.replace(min_support=0.3, min_count=1, min_transactions=5, max_itemsets=8)
    results = {r.group: r for r in mine_groups(groups, settings)}
    assert [r for r in results] == ["big", "small", "bad"]
    assert results["big"].status == "mined" and results["small"].status == "skipped"
    assert results["bad"].status == "mined"  # same supports, same 8 itemsets: within budget
    failing = {r.group: r.status for r in mine_groups(groups, settings.replace(max_itemsets=3))}
    assert failing == {"big": "failed", "small": "skipped", "bad": "failed"}


def test_online_retail_countries_are_each_mined_or_skipped_with_default_guards(data_dir: Path) -> None:
    fmt = LongFormat("InvoiceNo", "StockCode", group_column="Country",
                     filters=("InvoiceNo not_startswith C", "Quantity > 0"))
    groups = group_baskets(read_long(data_dir / "online_retail/online_retail_2010-12_to_2011-05.csv.gz", fmt))
    results = list(mine_groups(groups, DEFAULTS))
    assert len(results) == 36
    statuses = {r.group: r.status for r in results}
    assert set(statuses.values()) == {"mined", "skipped"}
    mined = sorted(g for g, s in statuses.items() if s == "mined")
    assert mined == sorted(["United Kingdom", "Germany", "France", "EIRE", "Belgium", "Netherlands", "Spain",
                            "Australia", "Portugal", "Switzerland"])
    for result in results:
        if result.status == "skipped":
            assert result.reason == f"{result.n_transactions} transaction{'s' if result.n_transactions != 1 else ''}" \
                                    f" < min_transactions 20"
        else:
            assert result.n_transactions >= 20 and result.n_itemsets <= DEFAULTS.max_itemsets
            assert (result.itemsets["count"] >= 5).all()


def test_peak_rss_sees_memory_allocated_inside_the_block() -> None:
    with PeakRss() as before:
        pass
    with PeakRss() as during:
        block = bytearray(200 * 2**20)
        block[:: 4096] = b"x" * len(block[:: 4096])
        del block
    assert during.method in ("vmhwm", "sampled")
    assert during.peak_bytes >= before.peak_bytes + 150 * 2**20


def test_write_parquet_atomic_types_label_lists_and_leaves_no_temp_files(tmp_path: Path) -> None:
    result = mine_group(BASKETS, DEFAULTS.replace(min_support=0.3, min_count=1, min_transactions=1, min_threshold=0.6))
    out = tmp_path / "a" / "b"
    write_parquet_atomic(result.itemsets, out / "frequent_itemsets.parquet")
    write_parquet_atomic(result.rules, out / "association_rules.parquet")
    assert sorted(p.name for p in out.iterdir()) == ["association_rules.parquet", "frequent_itemsets.parquet"]
    back = pd.read_parquet(out / "frequent_itemsets.parquet")
    assert [list(v) for v in back["itemset"]] == list(result.itemsets["itemset"])
    assert back["count"].tolist() == result.itemsets["count"].tolist()
    assert str(pq.read_schema(out / "association_rules.parquet").field("antecedents").type) == "list<element: string>"
    empty = mine_itemsets(BASKETS, min_support=1.0).to_frame()
    assert len(empty) == 0
    write_parquet_atomic(empty, tmp_path / "empty.parquet")
    assert str(pq.read_schema(tmp_path / "empty.parquet").field("itemset").type) == "list<element: string>"


def test_write_parquet_atomic_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    write_parquet_atomic(pd.DataFrame({"x": [1, 2]}), target)
    with pytest.raises(Exception):
        write_parquet_atomic(pd.DataFrame({"x": [object()]}), target)
    assert pd.read_parquet(target)["x"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_safe_path_component() -> None:
    taken: set[str] = set()
    assert safe_path_component("United Kingdom", taken) == "United_Kingdom"
    assert safe_path_component("United/Kingdom", taken) == "United_Kingdom_2"
    assert safe_path_component("..", taken) == "group"
    assert safe_path_component("EIRE") == "EIRE"
