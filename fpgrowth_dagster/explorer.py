"""Read what the assets wrote to S3: which groups and partitions have results, their itemsets and rules.

Itemsets and rules come back in mlxtend's shapes (``support``/``itemsets`` with frozensets;
``antecedents``/``consequents`` frozensets plus mlxtend's 12 metric columns under its names), so
mlxtend's helpers and existing notebook code take them as they are, or with plain lists
(``form="lists"``: the stored columns, ``itemset`` list plus ``count`` and ``length``). Only S3 reads
happen here (boto3 with the standard AWS environment); nothing starts a process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fpgrowth_dagster.s3io import ResultLayout, parquet_to_frame

ITEMSETS_FILE = "frequent_itemsets.parquet"
RULES_FILE = "association_rules.parquet"
FORMS = ("mlxtend", "lists")
RULE_METRICS = ("antecedent support", "consequent support", "support", "confidence", "lift", "representativity",
                "leverage", "conviction", "zhangs_metric", "jaccard", "certainty", "kulczynski")


class ResultsNotFound(LookupError):
    """No results for this group and partition; the message names the S3 object and what exists."""


def _items(value: Any) -> tuple[str, ...]:
    """A rule side or itemset given as 'A', ['A', 'B'] or a frozenset, as a sorted tuple of labels."""
    if isinstance(value, str):
        return (value,)
    return tuple(sorted(str(v) for v in value))


def rule_label(antecedents: Iterable[str], consequents: Iterable[str]) -> str:
    return f"{', '.join(_items(antecedents))} → {', '.join(_items(consequents))}"


@dataclass
class ResultsExplorer:
    """Results of one project config (its ``output`` bucket and prefix) on S3."""

    config: Any  # ProjectConfig
    client: Any = None

    def __post_init__(self) -> None:
        self.layout = ResultLayout(self.config.output)
        if self.client is None:
            import boto3

            self.client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or None)
        self._cache: dict[str, tuple[str, pd.DataFrame]] = {}

    @classmethod
    def from_config(cls, path: str | Path | None = None, client: Any = None) -> ResultsExplorer:
        """For the project config at ``path`` (default: $FPGROWTH_CONFIG, ./fpgrowth.yaml, the packaged demo)."""
        from fpgrowth_dagster.config import load_project_config

        return cls(load_project_config(path), client=client)

    # ------------------------------------------------------------------ what exists

    def available(self) -> pd.DataFrame:
        """One row per (group, partition) with results: ``group``, ``partition``, ``itemsets``, ``rules`` (bool)."""
        prefix = "/".join(p for p in (self.config.output.prefix, "groups") if p) + "/"
        found: dict[tuple[str, str], dict[str, Any]] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.layout.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                parts = obj["Key"][len(prefix):].split("/")
                if len(parts) != 3 or parts[2] not in (ITEMSETS_FILE, RULES_FILE):
                    continue
                row = found.setdefault((parts[0], parts[1]), {"group": parts[0], "partition": parts[1],
                                                               "itemsets": False, "rules": False})
                row["itemsets" if parts[2] == ITEMSETS_FILE else "rules"] = True
        frame = pd.DataFrame(sorted(found.values(), key=lambda r: (r["group"], r["partition"])),
                             columns=["group", "partition", "itemsets", "rules"])
        return frame.reset_index(drop=True)

    def groups(self, partition: str | None = None) -> list[str]:
        """Groups with results (in ``partition`` if given), in the config's order, then any others."""
        table = self.available()
        if partition is not None:
            table = table[table["partition"] == partition]
        names = set(table["group"])
        ordered = [g.name for g in self.config.groups if g.name in names]
        return ordered + sorted(names - set(ordered))

    def partitions(self, group: str | None = None) -> list[str]:
        """Partitions with results (of ``group`` if given), sorted."""
        table = self.available()
        if group is not None:
            table = table[table["group"] == group]
        return sorted(set(table["partition"]))

    # ------------------------------------------------------------------ reading

    def _read(self, key: str, what: str, group: str, partition: str) -> pd.DataFrame:
        from botocore.exceptions import ClientError

        try:
            etag = self.client.head_object(Bucket=self.layout.bucket, Key=key)["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
            have = self.partitions(group)
            hint = f"partitions with results for {group}: {', '.join(have)}" if have else \
                f"no results for group {group!r} at all (groups with results: {', '.join(self.groups()) or 'none'})"
            raise ResultsNotFound(f"no {what} for group {group!r}, partition {partition!r}: "
                                  f"{self.layout.uri(key)} does not exist (skipped, failed or not materialised; "
                                  f"{hint})") from None
        cached = self._cache.get(key)
        if cached is None or cached[0] != etag:
            body = self.client.get_object(Bucket=self.layout.bucket, Key=key)["Body"].read()
            cached = (etag, parquet_to_frame(body))
            self._cache[key] = cached
        return cached[1].copy()

    def itemsets(self, group: str, partition: str, form: str = "mlxtend") -> pd.DataFrame:
        """Frequent itemsets of one group and partition.

        ``form="mlxtend"``: columns ``support``, ``itemsets`` (frozensets), as mlxtend's ``fpgrowth`` returns them.
        ``form="lists"``: the stored table: ``itemset`` (sorted list), ``support``, ``count``, ``length``.
        """
        _check_form(form)
        frame = self._read(self.layout.itemsets_key(group, partition), "itemsets", group, partition)
        if form == "lists":
            return frame
        return pd.DataFrame({"support": frame["support"].astype("float64"),
                             "itemsets": [frozenset(items) for items in frame["itemset"]]})

    def rules(self, group: str, partition: str, form: str = "mlxtend") -> pd.DataFrame:
        """Association rules of one group and partition: ``antecedents``, ``consequents`` and mlxtend's metrics.

        ``form="mlxtend"``: the two sides as frozensets (as mlxtend's ``association_rules`` returns them);
        ``form="lists"``: as sorted lists, as stored.
        """
        _check_form(form)
        frame = self._read(self.layout.rules_key(group, partition), "rules", group, partition)
        if form == "mlxtend":
            frame["antecedents"] = [frozenset(a) for a in frame["antecedents"]]
            frame["consequents"] = [frozenset(c) for c in frame["consequents"]]
        return frame

    def comparison(self, partition: str) -> pd.DataFrame:
        """The ``group_comparison`` table of a partition: one row per rule, in how many groups it holds."""
        key = self.layout.comparison_table_key(partition)
        return self._read(key, "group comparison", "group_comparison", partition)

    # ------------------------------------------------------------------ comparing

    def compare_rule(self, antecedents: Iterable[str] | str, consequents: Iterable[str] | str, *,
                     groups: Sequence[str] | None = None, partitions: Sequence[str] | None = None,
                     metrics: Sequence[str] = ("support", "confidence", "lift")) -> pd.DataFrame:
        """One rule across groups and windows: a row per (group, partition) with rules, ``present`` and ``metrics``.

        Where the group has rules in that partition but not this one, ``present`` is False and the metrics NaN.
        """
        wanted = (_items(antecedents), _items(consequents))
        table = self.available()
        table = table[table["rules"]]
        if groups is not None:
            table = table[table["group"].isin(list(groups))]
        if partitions is not None:
            table = table[table["partition"].isin(list(partitions))]
        rows = []
        for group, partition in zip(table["group"], table["partition"]):
            rules = self.rules(group, partition, form="lists")
            match = [i for i, (a, c) in enumerate(zip(rules["antecedents"], rules["consequents"]))
                     if (tuple(a), tuple(c)) == wanted]
            row: dict[str, Any] = {"group": group, "partition": partition, "present": bool(match)}
            for metric in metrics:
                row[metric] = float(rules[metric].iloc[match[0]]) if match else float("nan")
            rows.append(row)
        return pd.DataFrame(rows, columns=["group", "partition", "present", *metrics])

    def rule_matrix(self, partition: str, metric: str = "lift", *, groups: Sequence[str] | None = None,
                    top: int | None = 20, min_groups: int = 1) -> pd.DataFrame:
        """Group x rule table of ``metric`` in one partition (NaN where the rule does not hold in the group).

        Columns are the ``top`` rules held by the most groups (then highest mean ``metric``), labelled
        ``"A, B → C"``; only rules held by at least ``min_groups`` groups are kept.
        """
        if metric not in RULE_METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of: {', '.join(RULE_METRICS)}")
        names = list(groups) if groups is not None else self.groups(partition)
        series = {}
        for group in names:
            rules = self.rules(group, partition, form="lists")
            labels = [rule_label(a, c) for a, c in zip(rules["antecedents"], rules["consequents"])]
            series[group] = pd.Series(rules[metric].to_numpy(dtype="float64"), index=labels)
        matrix = pd.DataFrame(series).T if series else pd.DataFrame()
        if matrix.empty:
            return matrix
        held = matrix.notna().sum(axis=0)
        order = pd.DataFrame({"held": held, "mean": matrix.mean(axis=0), "label": matrix.columns})
        order = order[order["held"] >= min_groups].sort_values(["held", "mean", "label"],
                                                               ascending=[False, False, True])
        columns = list(order["label"])[: top if top else None]
        matrix = matrix[columns]
        matrix.index.name, matrix.columns.name = "group", "rule"
        return matrix


def filter_rules(rules: pd.DataFrame, *, item: str | None = None, antecedent: str | None = None,
                 consequent: str | None = None, metric: str | None = None, min_value: float | None = None,
                 max_value: float | None = None, top: int | None = None) -> pd.DataFrame:
    """Rules that mention ``item`` (either side), have ``antecedent``/``consequent`` on that side, and whose
    ``metric`` lies in [``min_value``, ``max_value``]; sorted by ``metric`` (descending) and cut to ``top``.

    Works on either form (frozensets or lists).
    """
    import numpy as np

    mask = np.ones(len(rules), dtype=bool)
    if item is not None:
        mask &= np.array([item in a or item in c for a, c in zip(rules["antecedents"], rules["consequents"])],
                         dtype=bool)
    if antecedent is not None:
        mask &= np.array([antecedent in a for a in rules["antecedents"]], dtype=bool)
    if consequent is not None:
        mask &= np.array([consequent in c for c in rules["consequents"]], dtype=bool)
    if (min_value is not None or max_value is not None or top is not None) and metric is None:
        raise ValueError("min_value, max_value and top need a metric (e.g. metric='lift')")
    if metric is not None:
        if metric not in rules.columns:
            raise ValueError(f"unknown metric {metric!r}; the rules have: {', '.join(rules.columns[2:])}")
        if min_value is not None:
            mask &= (rules[metric] >= min_value).to_numpy()
        if max_value is not None:
            mask &= (rules[metric] <= max_value).to_numpy()
    out = rules[mask]
    if metric is not None:
        out = out.sort_values(metric, ascending=False, kind="stable")
    if top is not None:
        out = out.head(top)
    return out.reset_index(drop=True)


def as_lists(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with sorted lists instead of frozensets (JSON-able)."""
    records = frame.to_dict(orient="records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, (frozenset, set, tuple)):
                record[key] = sorted(value)
    return records


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
