"""Asset checks on what each group asset wrote to S3.

The check runs inside the group's own step, right after its objects are published, and reads the
objects back from S3: an extra step process would cost more than the check itself. Each group
declares one check, ``results_valid``, whose facets (objects exist, row counts match, supports in
range, rules meet the threshold) are its metadata, named: the UI lists it per group and partition
like any other asset check, and a step writes two events for it (four checks cost eight, plus
four planned events per group at the start of every run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey, MetadataValue

from fpgrowth_dagster.s3io import ResultLayout, get_bytes_if_exists, list_keys, parquet_to_frame

RESULTS_VALID = "results_valid"
OUTPUTS_EXIST = "outputs_exist"
ROW_COUNTS_MATCH = "row_counts_match"
SUPPORTS_IN_RANGE = "supports_in_range"
RULES_MEET_THRESHOLD = "rules_meet_threshold"
FACET_NAMES = (OUTPUTS_EXIST, ROW_COUNTS_MATCH, SUPPORTS_IN_RANGE, RULES_MEET_THRESHOLD)

FACET_DESCRIPTIONS = {
    OUTPUTS_EXIST: "frequent_itemsets and association_rules Parquet objects exist in S3 (none for a skipped group)",
    ROW_COUNTS_MATCH: "the objects' row counts equal the itemsets and rules counts in the materialisation metadata",
    SUPPORTS_IN_RANGE: "every itemset's support is within [min_support, 1] and its count at least min_count",
    RULES_MEET_THRESHOLD: "every rule meets the rule metric's threshold, confidence is within [0, 1], and "
                          "antecedent and consequent are non-empty and disjoint",
}
# Float tolerance for comparing stored supports/metrics with thresholds.
EPS = 1e-9


@dataclass(frozen=True)
class Facet:
    """One property of a group's published results, checked on what was read back from S3."""

    name: str
    passed: bool
    description: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


def group_check_specs(asset_key: AssetKey) -> list[AssetCheckSpec]:
    """The check every group asset declares: one, so a step logs two events for it, not eight."""
    facets = "; ".join(f"{name}: {text}" for name, text in FACET_DESCRIPTIONS.items())
    return [AssetCheckSpec(name=RESULTS_VALID, asset=asset_key, description=f"What the group wrote holds: {facets}.")]


def results_check(facets: list[Facet]) -> AssetCheckResult:
    """The group's check: it passes when every facet does; each facet is in the metadata by name."""
    failed = [f for f in facets if not f.passed]
    if failed:
        description = "; ".join(f"{f.name}: {f.description}" for f in failed)
    else:
        description = f"{len(facets)} facets pass ({', '.join(f.name for f in facets)})"
    metadata: dict[str, Any] = {f.name: f"{'pass' if f.passed else 'FAIL'}: {f.description}" for f in facets}
    metadata["failed_facets"] = MetadataValue.json([f.name for f in failed])
    for facet in facets:
        metadata.update({f"{facet.name}.{key}": value for key, value in facet.metadata.items() if value is not None})
    return AssetCheckResult(check_name=RESULTS_VALID, passed=not failed, severity=AssetCheckSeverity.ERROR,
                            description=description, metadata=metadata)


def skipped_group_checks(client: Any, layout: ResultLayout, group: str, partition_key: str,
                         reason: str) -> list[AssetCheckResult]:
    """The check of a skipped group: it must have left no result objects."""
    leftovers = list_keys(client, layout.bucket, layout.group_prefix(group, partition_key))
    nothing = f"skipped ({reason}): no outputs expected"
    facets = [Facet(OUTPUTS_EXIST, not leftovers, nothing if not leftovers else f"unexpected objects: {leftovers}")]
    facets += [Facet(name, True, nothing) for name in FACET_NAMES[1:]]
    return [results_check(facets)]


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
        return [results_check([Facet(OUTPUTS_EXIST, False, f"missing {', '.join(missing)}")]
                              + [Facet(name, False, failed) for name in FACET_NAMES[1:]])]
    itemsets = parquet_to_frame(stored[itemsets_key])
    rules = parquet_to_frame(stored[rules_key])
    return [results_check([
        Facet(OUTPUTS_EXIST, True, "both objects exist",
              {"frequent_itemsets": layout.uri(itemsets_key), "association_rules": layout.uri(rules_key)}),
        check_row_counts(itemsets, rules, n_itemsets=n_itemsets, n_rules=n_rules),
        check_supports(itemsets, min_support=float(settings.min_support), min_count=int(settings.min_count or 1)),
        check_rules(rules, metric=str(settings.metric), min_threshold=float(settings.min_threshold)),
    ])]


def check_row_counts(itemsets: pd.DataFrame, rules: pd.DataFrame, *, n_itemsets: int, n_rules: int) -> Facet:
    """Stored rows equal the counts reported in the metadata."""
    ok = len(itemsets) == n_itemsets and len(rules) == n_rules
    return Facet(ROW_COUNTS_MATCH, ok,
                 f"itemsets {len(itemsets)} (metadata {n_itemsets}), rules {len(rules)} (metadata {n_rules})",
                 {"stored_itemsets": len(itemsets), "stored_rules": len(rules)})


def check_supports(itemsets: pd.DataFrame, *, min_support: float, min_count: int) -> Facet:
    """Supports within [min_support, 1], counts at least min_count, lengths equal the itemset sizes."""
    if itemsets.empty:
        return Facet(SUPPORTS_IN_RANGE, True, "no itemsets")
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
    return Facet(SUPPORTS_IN_RANGE, not problems, description,
                 {"min_support_seen": float(support.min()), "max_support_seen": float(support.max())})


def check_rules(rules: pd.DataFrame, *, metric: str, min_threshold: float) -> Facet:
    """Every rule meets the threshold of its metric; confidence in [0, 1]; sides non-empty and disjoint."""
    if rules.empty:
        return Facet(RULES_MEET_THRESHOLD, True, "no rules")
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
    return Facet(RULES_MEET_THRESHOLD, not problems, description)
