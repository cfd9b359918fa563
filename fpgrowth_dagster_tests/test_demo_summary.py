"""The run summary that `make demo` prints: groups skipped for the same cause share one line."""

from __future__ import annotations

from fpgrowth_dagster.demo_summary import GroupLine, RunSummary, format_run_summary, reason_kind


def test_reason_kind_drops_the_count_and_its_plural() -> None:
    assert reason_kind("1 transaction < min_transactions 20") == "transactions < min_transactions 20"
    assert reason_kind("14 transactions < min_transactions 20") == "transactions < min_transactions 20"
    assert reason_kind("BudgetExceeded: too many") == "BudgetExceeded: too many"


def test_skipped_groups_with_one_and_many_transactions_share_a_line() -> None:
    groups = {
        "iceland": GroupLine("iceland", "skipped", transactions=1, reason="1 transaction < min_transactions 20"),
        "norway": GroupLine("norway", "skipped", transactions=7, reason="7 transactions < min_transactions 20"),
        "spain": GroupLine("spain", "failed", reason="Failure: bad column"),
    }
    text = format_run_summary(RunSummary("run", "2011-05-01", "FAILURE", groups, []), seconds=1.0)
    assert "  skipped (transactions < min_transactions 20): iceland, norway" in text.splitlines()
    assert "  failed (Failure: bad column): spain" in text.splitlines()
    assert "groups: 0 mined, 2 skipped, 1 failed" in text
