"""The group check ``results_valid``: its facets on frames, and the whole check on objects in a real S3."""

from __future__ import annotations

import boto3
import pandas as pd
import pytest

from fpgrowth_dagster.checks import (
    FACET_NAMES,
    Facet,
    check_row_counts,
    check_rules,
    check_supports,
    mined_group_checks,
    results_check,
    skipped_group_checks,
)
from fpgrowth_dagster.config import OutputConfig
from fpgrowth_dagster.mining import MiningSettings, mine_group
from fpgrowth_dagster.s3io import ResultLayout, frame_to_parquet

BUCKET = "fpgrowth-checks"
PARTITION = "2011-01-01"
BASKETS = [["a", "b"], ["a", "b", "c"], ["a", "c"], ["b", "c"], ["a", "b", "c"]] * 8


def _itemsets(supports: list[float], counts: list[int], sets: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame({"support": supports, "itemset": sets, "count": counts, "length": [len(s) for s in sets]})


def test_supports_facet_names_what_is_out_of_range():
    good = _itemsets([0.5, 0.25], [10, 5], [["a"], ["a", "b"]])
    assert check_supports(good, min_support=0.2, min_count=5).passed
    low = check_supports(_itemsets([0.5, 0.1], [10, 2], [["a"], ["a", "b"]]), min_support=0.2, min_count=5)
    assert not low.passed
    assert "1 itemsets below min_support 0.2" in low.description and "count below min_count 5" in low.description
    wrong_length = _itemsets([0.5], [10], [["a"]]).assign(length=[2])
    assert "length differs" in check_supports(wrong_length, min_support=0.2, min_count=1).description


def test_rules_facet_and_row_counts_facet():
    rules = pd.DataFrame({"antecedents": [["a"], ["b"]], "consequents": [["b"], ["b"]],
                          "confidence": [0.9, 0.4], "lift": [1.2, 1.0]})
    facet = check_rules(rules, metric="confidence", min_threshold=0.5)
    assert not facet.passed
    assert "1 rules with confidence below 0.5" in facet.description and "overlapping" in facet.description
    assert check_rules(rules.head(1), metric="confidence", min_threshold=0.5).passed
    assert "no column 'zhangs_metric'" in check_rules(rules, metric="zhangs_metric", min_threshold=0).description
    empty = pd.DataFrame()
    assert check_row_counts(empty, rules, n_itemsets=0, n_rules=2).passed
    assert not check_row_counts(empty, rules, n_itemsets=1, n_rules=2).passed


def test_results_check_fails_when_any_facet_fails_and_names_it():
    facets = [Facet(name, True, "fine") for name in FACET_NAMES]
    passed = results_check(facets)
    assert passed.passed and passed.check_name == "results_valid"
    assert set(FACET_NAMES) <= set(passed.metadata)
    facets[2] = Facet(FACET_NAMES[2], False, "3 itemsets below min_support 0.1", {"min_support_seen": 0.01})
    failed = results_check(facets)
    assert not failed.passed
    assert failed.description == "supports_in_range: 3 itemsets below min_support 0.1"
    assert failed.metadata["failed_facets"].value == ["supports_in_range"]
    assert failed.metadata["supports_in_range.min_support_seen"].value == 0.01


@pytest.fixture
def s3(aws_env: str):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def _publish(client, layout: ResultLayout, group: str, itemsets: pd.DataFrame, rules: pd.DataFrame) -> None:
    client.put_object(Bucket=BUCKET, Key=layout.itemsets_key(group, PARTITION),
                      Body=frame_to_parquet(itemsets, ["itemset"]))
    client.put_object(Bucket=BUCKET, Key=layout.rules_key(group, PARTITION),
                      Body=frame_to_parquet(rules, ["antecedents", "consequents"]))


def test_check_reads_back_what_was_published_and_catches_a_tampered_object(s3):
    layout = ResultLayout(OutputConfig(bucket=BUCKET, prefix="results"))
    settings = MiningSettings(min_support=0.3, min_count=1, min_transactions=1, metric="confidence",
                              min_threshold=0.5)
    result = mine_group(BASKETS, settings, group="g")
    assert result.status == "mined" and result.n_itemsets > 0
    _publish(s3, layout, "g", result.itemsets, result.rules)
    (ok,) = mined_group_checks(s3, layout, "g", PARTITION, n_itemsets=result.n_itemsets, n_rules=result.n_rules,
                               settings=settings)
    assert ok.passed, ok.description

    tampered = result.itemsets.copy()
    tampered.loc[0, "support"] = 0.01  # below min_support, as a buggy engine or writer would leave it
    _publish(s3, layout, "g", tampered, result.rules.head(1))
    (bad,) = mined_group_checks(s3, layout, "g", PARTITION, n_itemsets=result.n_itemsets, n_rules=result.n_rules,
                                settings=settings)
    assert not bad.passed
    assert bad.metadata["failed_facets"].value == ["row_counts_match", "supports_in_range"]

    s3.delete_object(Bucket=BUCKET, Key=layout.rules_key("g", PARTITION))
    (missing,) = mined_group_checks(s3, layout, "g", PARTITION, n_itemsets=1, n_rules=1, settings=settings)
    assert not missing.passed and "missing s3://fpgrowth-checks/results/" in missing.description


def test_skipped_group_check_fails_on_leftover_objects(s3):
    layout = ResultLayout(OutputConfig(bucket=BUCKET, prefix="results"))
    (clean,) = skipped_group_checks(s3, layout, "tiny", PARTITION, "3 transactions < min_transactions 20")
    assert clean.passed
    s3.put_object(Bucket=BUCKET, Key=layout.itemsets_key("tiny", PARTITION), Body=b"stale")
    (stale,) = skipped_group_checks(s3, layout, "tiny", PARTITION, "3 transactions < min_transactions 20")
    assert not stale.passed and "unexpected objects" in stale.description
