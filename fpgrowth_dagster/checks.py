"""Asset checks on what each group asset wrote to S3.

The checks run inside the group's own step, right after its objects are published, and read the
objects back from S3: an extra step process per check would cost more than the checks themselves.
Each check is declared as an ``AssetCheckSpec`` on the asset, so the UI lists them per group and
partition like any other asset check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from fpgrowth_dagster.s3io import ResultLayout, get_bytes_if_exists, list_keys, parquet_to_frame

OUTPUTS_EXIST = "outputs_exist"
ROW_COUNTS_MATCH = "row_counts_match"
SUPPORTS_IN_RANGE = "supports_in_range"
RULES_MEET_THRESHOLD = "rules_meet_threshold"
GROUP_CHECK_NAMES = (OUTPUTS_EXIST, ROW_COUNTS_MATCH, SUPPORTS_IN_RANGE, RULES_MEET_THRESHOLD)

_DESCRIPTIONS = {
    OUTPUTS_EXIST: "frequent_itemsets and association_rules Parquet objects exist in S3 (none for a skipped group)",
    ROW_COUNTS_MATCH: "the objects' row counts equal the itemsets and rules counts in the materialisation metadata",
    SUPPORTS_IN_RANGE: "every itemset's support is within [min_support, 1] and its count at least min_count",
    RULES_MEET_THRESHOLD: "every rule meets the rule metric's threshold, confidence is within [0, 1], and "
                          "antecedent and consequent are non-empty and disjoint",
}
# Float tolerance for comparing stored supports/metrics with thresholds.
EPS = 1e-9


def group_check_specs(asset_key: AssetKey) -> list[AssetCheckSpec]:
    """The checks every group asset declares."""
    return [AssetCheckSpec(name=name, asset=asset_key, description=_DESCRIPTIONS[name]) for name in GROUP_CHECK_NAMES]


def _result(name: str, passed: bool, description: str, **metadata: Any) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        passed=bool(passed),
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def skipped_group_checks(client: Any, layout: ResultLayout, group: str, partition_key: str,
                         reason: str) -> list[AssetCheckResult]:
    """Checks of a skipped group: it must have left no result objects."""
    leftovers = list_keys(client, layout.bucket, layout.group_prefix(group, partition_key))
    nothing = f"skipped ({reason}): no outputs expected"
    return [
        _result(OUTPUTS_EXIST, not leftovers, nothing if not leftovers else f"unexpected objects: {leftovers}"),
        _result(ROW_COUNTS_MATCH, True, nothing),
        _result(SUPPORTS_IN_RANGE, True, nothing),
        _result(RULES_MEET_THRESHOLD, True, nothing),
    ]


def mined_group_checks(
    client: Any,
    layout: ResultLayout,
    group: str,
    partition_key: str,
    *,
    n_itemsets: int,
    n_rules: int,
    settings: Any,
) -> list[AssetCheckResult]:
    """Read the group's objects back from S3 and check them against the metadata and the settings."""
    itemsets_key = layout.itemsets_key(group, partition_key)
    rules_key = layout.rules_key(group, partition_key)
    stored = {k: get_bytes_if_exists(client, layout.bucket, k) for k in (itemsets_key, rules_key)}
    missing = [layout.uri(k) for k, body in stored.items() if body is None]
    if missing:
        failed = f"cannot check: missing {', '.join(missing)}"
        return [_result(OUTPUTS_EXIST, False, f"missing {', '.join(missing)}")] + [
            _result(name, False, failed) for name in GROUP_CHECK_NAMES[1:]
        ]
    itemsets = parquet_to_frame(stored[itemsets_key])
    rules = parquet_to_frame(stored[rules_key])
    return [
        _result(OUTPUTS_EXIST, True, "both objects exist",
                frequent_itemsets=layout.uri(itemsets_key), association_rules=layout.uri(rules_key)),
        check_row_counts(itemsets, rules, n_itemsets=n_itemsets, n_rules=n_rules),
        check_supports(itemsets, min_support=float(settings.min_support), min_count=int(settings.min_count or 1)),
        check_rules(rules, metric=str(settings.metric), min_threshold=float(settings.min_threshold)),
    ]


def check_row_counts(itemsets: pd.DataFrame, rules: pd.DataFrame, *, n_itemsets: int, n_rules: int) -> AssetCheckResult:
    """Stored rows equal the counts reported in the metadata."""
    ok = len(itemsets) == n_itemsets and len(rules) == n_rules
    return _result(ROW_COUNTS_MATCH, ok,
                   f"itemsets {len(itemsets)} (metadata {n_itemsets}), rules {len(rules)} (metadata {n_rules})",
                   stored_itemsets=len(itemsets), stored_rules=len(rules))


def check_supports(itemsets: pd.DataFrame, *, min_support: float, min_count: int) -> AssetCheckResult:
    """Supports within [min_support, 1], counts at least min_count, lengths equal the itemset sizes."""
    if itemsets.empty:
        return _result(SUPPORTS_IN_RANGE, True, "no itemsets")
    support = itemsets["support"].to_numpy(dtype="float64")
    counts = itemsets["count"].to_numpy(dtype="int64")
    lengths = itemsets["length"].to_numpy(dtype="int64")
    sizes = np.fromiter((len(s) for s in itemsets["itemset"]), dtype="int64", count=len(itemsets))
    problems = []
    low = int(np.sum(support < min_support - EPS))
    high = int(np.sum(support > 1 + EPS))
    if low:
        problems.append(f"{low} itemsets below min_support {min_support} (lowest {support.min():.6g})")
    if high:
        problems.append(f"{high} itemsets with support above 1")
    if int(np.sum(counts < min_count)):
        problems.append(f"{int(np.sum(counts < min_count))} itemsets with count below min_count {min_count}")
    if int(np.sum(lengths != sizes)):
        problems.append(f"{int(np.sum(lengths != sizes))} itemsets whose length differs from their size")
    description = "; ".join(problems) or (
        f"{len(itemsets)} itemsets, support {support.min():.6g}..{support.max():.6g}")
    return _result(SUPPORTS_IN_RANGE, not problems, description,
                   min_support_seen=float(support.min()), max_support_seen=float(support.max()))


def check_rules(rules: pd.DataFrame, *, metric: str, min_threshold: float) -> AssetCheckResult:
    """Every rule meets the threshold of its metric; confidence in [0, 1]; sides non-empty and disjoint."""
    if rules.empty:
        return _result(RULES_MEET_THRESHOLD, True, "no rules")
    problems = []
    if metric in rules.columns:
        below = int(np.sum(rules[metric].to_numpy(dtype="float64") < min_threshold - EPS))
        if below:
            problems.append(f"{below} rules with {metric} below {min_threshold}")
    else:
        problems.append(f"rules table has no column {metric!r}")
    confidence = rules["confidence"].to_numpy(dtype="float64")
    if int(np.sum((confidence < -EPS) | (confidence > 1 + EPS))):
        problems.append("confidence outside [0, 1]")
    bad_sides = sum(
        1 for a, c in zip(rules["antecedents"], rules["consequents"]) if not a or not c or set(a) & set(c)
    )
    if bad_sides:
        problems.append(f"{bad_sides} rules with an empty or overlapping antecedent/consequent")
    description = "; ".join(problems) or f"{len(rules)} rules, all with {metric} >= {min_threshold}"
    return _result(RULES_MEET_THRESHOLD, not problems, description)


def summarize_checks(results: list[AssetCheckResult]) -> Mapping[str, bool]:
    """check name -> passed, for logs."""
    return {r.check_name: r.passed for r in results}
