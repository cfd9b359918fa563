"""group_comparison's pure logic: rule prevalence across groups, Markdown, and the PNG plot."""

from __future__ import annotations

import base64

import pandas as pd

from fpgrowth_dagster.comparison import markdown_summary, png_markdown, prevalence_plot, rule_prevalence, specific_rules


def _rules(rows: list[tuple[list[str], list[str], float, float]]) -> pd.DataFrame:
    return pd.DataFrame({
        "antecedents": [r[0] for r in rows], "consequents": [r[1] for r in rows],
        "support": [0.1] * len(rows), "confidence": [r[2] for r in rows], "lift": [r[3] for r in rows],
    })


RULES = {
    "fr": _rules([(["a"], ["b"], 0.9, 2.0), (["c"], ["d"], 0.7, 3.0)]),
    "de": _rules([(["a"], ["b"], 0.7, 1.0), (["e"], ["f"], 0.8, 5.0)]),
    "be": _rules([(["a"], ["b"], 0.8, 3.0)]),
    "nl": _rules([]),
}


def test_rule_prevalence_counts_groups_and_averages():
    table = rule_prevalence(RULES)
    assert table["rule"].tolist() == ["a → b", "e → f", "c → d"]  # most groups first, then lift
    top = table.iloc[0]
    assert top["n_groups"] == 3 and top["groups"] == ["be", "de", "fr"]
    assert abs(top["share_of_groups"] - 3 / 4) < 1e-12
    assert abs(top["mean_confidence"] - 0.8) < 1e-12 and top["min_confidence"] == 0.7 and top["max_lift"] == 3.0
    assert table.set_index("rule").loc["c → d", "groups"] == ["fr"]


def test_specific_rules_are_those_of_one_group():
    specific = specific_rules(rule_prevalence(RULES))
    assert specific[["group", "rule"]].values.tolist() == [["de", "e → f"], ["fr", "c → d"]]


def test_empty_comparison():
    table = rule_prevalence({"nl": _rules([])})
    assert table.empty and "n_groups" in table.columns
    assert "0 distinct rules over 1 mined groups" in markdown_summary(table, ["nl"], {})


def test_markdown_and_plot():
    table = rule_prevalence(RULES)
    md = markdown_summary(table, sorted(RULES), {"es": "skipped"})
    assert "| a → b | 3 | 75% | 0.800 | 2.00 |" in md
    assert "| de | e → f | 0.800 | 5.00 |" in md
    assert "Groups without rules (skipped): es" in md
    png = prevalence_plot(table, RULES)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    embedded = png_markdown(png)
    assert embedded.startswith("![rule prevalence](data:image/png;base64,")
    assert base64.b64decode(embedded.split(",", 1)[1].rstrip(")")) == png
