"""The per-group summary of an ``all_groups_job`` run, read back from the Dagster instance's event log.

Used by ``make demo`` after each run: which groups were mined, skipped or failed (with the reason),
their itemset and rule counts, the top rules of the largest mined groups and where the results are.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

GROUP_PREFIX = "fpgrowth"


@dataclass
class GroupLine:
    """One group of one run, as the summary shows it."""

    group: str
    status: str
    transactions: int | None = None
    items: int | None = None
    itemsets: int | None = None
    rules: int | None = None
    seconds: float | None = None
    reason: str = ""
    uris: list[str] = field(default_factory=list)
    top_rules: str = ""


@dataclass
class RunSummary:
    """Every group of the run, plus the comparison asset's outputs."""

    run_id: str
    partition: str
    status: str
    groups: dict[str, GroupLine]
    comparison_uris: list[str]

    def count(self, status: str) -> int:
        return sum(1 for line in self.groups.values() if line.status == status)


def reason_kind(reason: str) -> str:
    """A reason without its leading count, so that groups skipped for the same cause share a summary line."""
    without_count = re.sub(r"^\d+ ", "", reason)
    return re.sub(r"^transaction\b", "transactions", without_count)  # "1 transaction < ..." as "4 transactions < ..."


def _value(metadata: dict[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def collect_run_summary(instance: Any, run_id: str, partition: str, status: str) -> RunSummary:
    """Group lines from the run's materialisations and step failures; groups of the plan that never ran show as such."""
    from dagster import DagsterEventType

    groups: dict[str, GroupLine] = {}
    comparison: list[str] = []
    planned: list[str] = []
    records = instance.all_logs(run_id)
    for record in records:
        event = record.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            path = event.event_specific_data.asset_key.path
            if len(path) == 2 and path[0] == GROUP_PREFIX:
                planned.append(path[1])
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            path = materialization.asset_key.path
            metadata = dict(materialization.metadata)
            if len(path) == 2 and path[0] == GROUP_PREFIX:
                line = GroupLine(
                    group=path[1],
                    status=str(_value(metadata, "status") or "mined"),
                    transactions=_value(metadata, "transactions"),
                    items=_value(metadata, "items"),
                    itemsets=_value(metadata, "itemsets"),
                    rules=_value(metadata, "rules"),
                    seconds=_value(metadata, "seconds"),
                    reason=str(_value(metadata, "reason") or ""),
                    uris=[str(_value(metadata, k)) for k in ("frequent_itemsets", "association_rules") if k in metadata],
                    top_rules=str(_value(metadata, "top_rules") or ""),
                )
                groups[line.group] = line
            elif path == ["group_comparison"]:
                comparison = [str(_value(metadata, k)) for k in ("table", "plot_uri") if k in metadata]
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            step = event.step_key or ""
            if step.startswith(f"{GROUP_PREFIX}__"):
                name = step[len(GROUP_PREFIX) + 2 :]
                error = event.event_specific_data.error
                reason = (error.message if error else "") or "step failed"
                groups[name] = GroupLine(group=name, status="failed", reason=reason.strip().splitlines()[0])
    for name in planned:
        groups.setdefault(name, GroupLine(group=name, status="not run", reason="an upstream step failed"))
    ordered = {name: groups[name] for name in planned if name in groups}
    ordered.update({name: line for name, line in groups.items() if name not in ordered})
    return RunSummary(run_id=run_id, partition=partition, status=status, groups=ordered, comparison_uris=comparison)


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_run_summary(summary: RunSummary, seconds: float, top: int = 5) -> str:
    """Text for the terminal: a table per group, totals, top rules of the largest mined groups, result URIs."""
    lines = [
        f"{'=' * 78}",
        f"all_groups_job, window {summary.partition}: run {summary.run_id} {summary.status} in {seconds:.1f} s",
        f"{'group':<22} {'status':<8} {'transactions':>12} {'items':>6} {'itemsets':>9} {'rules':>7} {'seconds':>8}",
    ]
    for line in summary.groups.values():
        lines.append(f"{line.group:<22} {line.status:<8} {_num(line.transactions):>12} {_num(line.items):>6} "
                     f"{_num(line.itemsets):>9} {_num(line.rules):>7} {_num(line.seconds):>8}")
    lines.append(f"groups: {summary.count('mined')} mined, {summary.count('skipped')} skipped, "
                 f"{summary.count('failed')} failed" + (f", {summary.count('not run')} not run"
                                                         if summary.count("not run") else ""))
    for status in ("failed", "not run", "skipped"):
        by_reason: dict[str, list[str]] = {}
        for g in summary.groups.values():
            if g.status == status and g.reason:
                by_reason.setdefault(reason_kind(g.reason), []).append(g.group)
        for reason, names in by_reason.items():
            lines.extend(textwrap.wrap(f"{status} ({reason}): {', '.join(names)}", width=110, initial_indent="  ",
                                       subsequent_indent="    ", break_on_hyphens=False))
    mined = sorted((g for g in summary.groups.values() if g.status == "mined" and g.rules),
                   key=lambda g: -(g.transactions or 0))
    for line in mined[:2]:
        table = [row for row in line.top_rules.splitlines() if row.startswith("|")]
        lines.append(f"top rules of {line.group} (by lift):")
        lines.extend(f"  {row}" for row in table[: 2 + top])
    results = [uri for g in summary.groups.values() for uri in g.uris] + summary.comparison_uris
    if results:
        prefix = _common_prefix(results)
        lines.append(f"results ({len(results)} objects) under {prefix}, e.g.:")
        examples = [*(mined[0].uris if mined else results[:2]), *summary.comparison_uris]
        lines.extend(f"  {uri}" for uri in (examples if len(results) > 4 else results))
    return "\n".join(lines)


def _common_prefix(uris: list[str]) -> str:
    import os.path

    prefix = os.path.commonprefix(uris)
    return prefix[: prefix.rfind("/") + 1] if "/" in prefix else prefix


def print_run_summary(run_id: str, partition: str, status: str, seconds: float, top: int = 5) -> RunSummary:
    """Read the run from the instance of ``DAGSTER_HOME`` and print its summary."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        summary = collect_run_summary(instance, run_id, partition, status)
    print(format_run_summary(summary, seconds, top=top), flush=True)
    return summary
