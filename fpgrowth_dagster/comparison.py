"""Which association rules hold in many groups and which are specific to one: a table and a plot.

Pure pandas/matplotlib (no Dagster, no S3) so it is tested on plain frames.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import numpy as np
import pandas as pd

COMPARISON_COLUMNS = [
    "antecedents", "consequents", "rule", "n_groups", "share_of_groups", "groups",
    "mean_confidence", "min_confidence", "max_confidence", "mean_lift", "max_lift",
]


def rule_text(antecedents: list[str], consequents: list[str]) -> str:
    return f"{', '.join(antecedents)} → {', '.join(consequents)}"


def rule_prevalence(rules_by_group: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per distinct rule: in how many (and which) groups it holds, with its confidence and lift there.

    ``rules_by_group`` maps each group that was mined to its rules table (possibly empty). Rows are
    sorted by number of groups (descending), then mean lift (descending), then the rule text.
    """
    n_groups = len(rules_by_group)
    parts = []
    for group, rules in rules_by_group.items():
        if rules is None or rules.empty:
            continue
        parts.append(pd.DataFrame({
            "antecedents": [tuple(a) for a in rules["antecedents"]],
            "consequents": [tuple(c) for c in rules["consequents"]],
            "group": group,
            "confidence": rules["confidence"].to_numpy(dtype="float64"),
            "lift": rules["lift"].to_numpy(dtype="float64"),
        }))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64" if "confidence" in c or "lift" in c else "object")
                             for c in COMPARISON_COLUMNS}).astype({"n_groups": "int64", "share_of_groups": "float64"})
    long = pd.concat(parts, ignore_index=True)
    grouped = long.groupby(["antecedents", "consequents"], sort=False)
    table = grouped.agg(
        n_groups=("group", "nunique"),
        groups=("group", lambda g: sorted(set(g))),
        mean_confidence=("confidence", "mean"),
        min_confidence=("confidence", "min"),
        max_confidence=("confidence", "max"),
        mean_lift=("lift", "mean"),
        max_lift=("lift", "max"),
    ).reset_index()
    table["antecedents"] = [list(a) for a in table["antecedents"]]
    table["consequents"] = [list(c) for c in table["consequents"]]
    table["rule"] = [rule_text(a, c) for a, c in zip(table["antecedents"], table["consequents"])]
    table["share_of_groups"] = table["n_groups"] / float(n_groups or 1)
    table["n_groups"] = table["n_groups"].astype("int64")
    table = table.sort_values(["n_groups", "mean_lift", "rule"], ascending=[False, False, True], kind="stable")
    return table[COMPARISON_COLUMNS].reset_index(drop=True)


def specific_rules(table: pd.DataFrame, per_group: int = 3) -> pd.DataFrame:
    """Rules that hold in exactly one group: the ``per_group`` with the highest lift of each group."""
    single = table[table["n_groups"] == 1].copy()
    if single.empty:
        return single
    single["group"] = [g[0] for g in single["groups"]]
    single = single.sort_values(["group", "max_lift", "rule"], ascending=[True, False, True], kind="stable")
    return single.groupby("group", sort=True).head(per_group).reset_index(drop=True)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_summary(table: pd.DataFrame, groups_mined: list[str], groups_without: Mapping[str, str],
                     top: int = 15) -> str:
    """Markdown for the UI: the most shared rules, then the rules specific to one group."""
    lines = [f"**{len(table)} distinct rules over {len(groups_mined)} mined groups**", ""]
    by_reason: dict[str, list[str]] = {}
    for group, why in sorted(groups_without.items()):
        by_reason.setdefault(why, []).append(group)
    for why, groups in by_reason.items():
        lines += [f"Groups without rules ({why}): {', '.join(groups)}", ""]
    lines += ["### Rules shared by the most groups", "",
              "| rule | groups | share | mean confidence | mean lift |", "|---|---:|---:|---:|---:|"]
    for row in table.head(top).itertuples():
        lines.append(f"| {_md_escape(row.rule)} | {row.n_groups} | {row.share_of_groups:.0%} | "
                     f"{row.mean_confidence:.3f} | {row.mean_lift:.2f} |")
    specific = specific_rules(table)
    lines += ["", "### Rules specific to one group (highest lift per group)", "",
              "| group | rule | confidence | lift |", "|---|---|---:|---:|"]
    for row in specific.head(3 * top).itertuples():
        lines.append(f"| {_md_escape(row.group)} | {_md_escape(row.rule)} | {row.max_confidence:.3f} | "
                     f"{row.max_lift:.2f} |")
    return "\n".join(lines)


def prevalence_plot(table: pd.DataFrame, rules_by_group: Mapping[str, pd.DataFrame], top: int = 20) -> bytes:
    """PNG: left, confidence of the most shared rules in each group; right, shared vs specific rules per group."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    groups = sorted(rules_by_group)
    shown = table.head(top)
    fig, (ax_heat, ax_bar) = plt.subplots(
        1, 2, figsize=(max(10.0, 6 + 0.35 * len(groups) * 2), max(4.0, 1.5 + 0.3 * len(shown))),
        gridspec_kw={"width_ratios": [max(len(groups), 1), max(len(groups), 1)]},
    )
    matrix = np.full((len(shown), len(groups)), np.nan)
    index = {g: i for i, g in enumerate(groups)}
    wanted = {(tuple(a), tuple(c)): r for r, (a, c) in enumerate(zip(shown["antecedents"], shown["consequents"]))}
    for group, rules in rules_by_group.items():
        if rules is None or rules.empty:
            continue
        for a, c, conf in zip(rules["antecedents"], rules["consequents"], rules["confidence"]):
            r = wanted.get((tuple(a), tuple(c)))
            if r is not None:
                matrix[r, index[group]] = float(conf)
    image = ax_heat.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax_heat.set_xticks(range(len(groups)), groups, rotation=90, fontsize=7)
    ax_heat.set_yticks(range(len(shown)), [r[:60] for r in shown["rule"]], fontsize=7)
    ax_heat.set_title(f"Top {len(shown)} most shared rules: confidence in each group", fontsize=9)
    fig.colorbar(image, ax=ax_heat, fraction=0.03)

    shared = {g: 0 for g in groups}
    specific = {g: 0 for g in groups}
    for row in table.itertuples():
        for g in row.groups:
            if g in shared:
                (specific if row.n_groups == 1 else shared)[g] += 1
    x = np.arange(len(groups))
    ax_bar.bar(x, [shared[g] for g in groups], label="held in 2+ groups")
    ax_bar.bar(x, [specific[g] for g in groups], bottom=[shared[g] for g in groups], label="specific to the group")
    ax_bar.set_xticks(x, groups, rotation=90, fontsize=7)
    ax_bar.set_ylabel("rules")
    ax_bar.set_title("Rules per group: shared vs specific", fontsize=9)
    ax_bar.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str = "rule prevalence") -> str:
    """Markdown that shows a PNG inline in the Dagster UI."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
