"""The memory guard: refusal from the itemset count, and real stops of real allocations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fpgrowth_dagster.mining import MiningSettings, mine_itemsets, read_basket
from fpgrowth_dagster.monitoring.guard import (
    BYTES_PER_ITEMSET,
    MemoryBudgetExceeded,
    MemoryGuard,
    check_memory_estimate,
    estimate_mining_memory,
    memory_budget_bytes,
)
from fpgrowth_dagster.monitoring.measure import current_rss
from fpgrowth_dagster.stack import reset_signals
from fpgrowth_dagster_tests.monitoring_support import wait_for_ready

MIB = 2**20
CHILD = [sys.executable, "-m", "fpgrowth_dagster_tests.monitoring_support"]


def exploding_baskets() -> list[list[str]]:
    """Four identical 40-item baskets: at min_count 2 every one of the 2**40 - 1 subsets is frequent."""
    shared = [f"item{i:02d}" for i in range(40)]
    return [list(shared) for _ in range(4)] + [["other1"], ["other2"]]


def test_exploding_group_is_refused_before_mining_with_what_to_change() -> None:
    settings = MiningSettings(min_support=0.01, min_count=2, min_transactions=1, max_itemsets=None, max_memory_mb=1024)
    with pytest.raises(MemoryBudgetExceeded) as info:
        check_memory_estimate(
            exploding_baskets(), settings, memory_budget_bytes(settings), group="spain", partition="2011-03-01"
        )
    error = info.value
    assert error.phase == "estimate" and error.group == "spain"
    assert error.expected_itemsets == 2**40 - 1  # few pairs: every length counted at once, exactly
    text = str(error)
    assert "group 'spain' (partition 2011-03-01)" in text
    assert "give 1,099,511,627,775 frequent itemsets" in text
    for advice in (
        "min_support (now 0.01)",
        "min_count (now 2)",
        "max_len (now unset",
        "target 'closed' or 'maximal'",
        "max_memory_mb (now 1024)",
    ):
        assert advice in text


def test_refusal_under_the_default_budget_says_where_the_budget_comes_from() -> None:
    settings = MiningSettings(min_support=0.01, min_count=2, min_transactions=1, max_itemsets=None)
    budget = memory_budget_bytes(settings)
    with pytest.raises(MemoryBudgetExceeded, match="default share of the available memory") as info:
        check_memory_estimate(exploding_baskets(), settings, budget, group="spain")
    assert f"{round(budget / MIB):,} MiB; max_memory_mb sets it" in str(info.value)


def test_estimate_counts_exactly_the_itemsets_mining_gives(data_dir: Path) -> None:
    baskets = read_basket(data_dir / "groceries" / "groceries.csv")
    settings = MiningSettings(min_support=0.005, min_count=1, min_transactions=1, max_itemsets=None)
    estimate = check_memory_estimate(baskets, settings, 64 * 1024 * MIB, group="groceries")
    assert estimate.expected_itemsets == len(mine_itemsets(baskets, min_support=0.005))
    assert estimate.estimated_peak_bytes > estimate.baseline_rss_bytes
    assert estimate.n_transactions == len(baskets)


def test_no_count_when_max_itemsets_keeps_the_worst_case_inside_the_budget() -> None:
    settings = MiningSettings(min_support=0.01, min_count=2, min_transactions=1, max_itemsets=1000)
    estimate = check_memory_estimate(exploding_baskets(), settings, current_rss() + 64 * MIB, group="spain")
    assert estimate.expected_itemsets is None and "bounded by max_itemsets" in estimate.note
    assert estimate.estimated_peak_bytes == estimate.baseline_rss_bytes + 1000 * BYTES_PER_ITEMSET


def test_estimate_leaves_itemset_budget_and_small_groups_to_the_mining_core() -> None:
    over_budget = MiningSettings(min_support=0.01, min_count=2, min_transactions=1, max_itemsets=1000)
    estimate = estimate_mining_memory(exploding_baskets(), over_budget)
    assert "max_itemsets" in estimate.note and estimate.estimated_peak_bytes == estimate.baseline_rss_bytes
    small = MiningSettings(min_support=0.01, min_count=2, min_transactions=100, max_itemsets=None)
    assert estimate_mining_memory(exploding_baskets(), small).expected_itemsets == 0


def test_budget_from_argument_settings_or_available_memory() -> None:
    assert memory_budget_bytes(max_memory_mb=300) == 300 * MIB

    class WithBudget:
        max_memory_mb = 512

    assert memory_budget_bytes(WithBudget()) == 512 * MIB
    assert memory_budget_bytes(MiningSettings()) > current_rss()
    with pytest.raises(ValueError, match="max_memory_mb"):
        memory_budget_bytes(max_memory_mb=0)


def _run_child(scenario: str, out: Path, *extra: str, **env: str) -> dict:
    proc = subprocess.Popen(
        [*CHILD, scenario, str(out), *extra],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=reset_signals,  # SIGINT at its default, as in a terminal, even when pytest runs with it ignored
    )
    try:
        wait_for_ready(out, proc)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, output.decode(errors="replace")
    return json.loads((out / "outcome.json").read_text())


@pytest.mark.parametrize("native", ["1", "0"])
def test_guard_stops_python_code_at_the_budget(tmp_path: Path, native: str) -> None:
    outcome = _run_child("guard_python", tmp_path, FPGROWTH_MONITORING_NATIVE=native)
    assert outcome["phase"] == "mining"
    assert outcome["observed"] > outcome["budget"]
    assert "group 'hoarder' (partition 2011-01-01): stopped by the memory guard" in outcome["error"]
    assert "max_memory_mb" in outcome["error"]
    # The previous SIGINT handler is back and works.
    assert outcome["handler_is_default"] is True and outcome["interrupt_after"] is True


def test_guard_stops_pyfim_while_it_holds_the_gil(tmp_path: Path, data_dir: Path) -> None:
    outcome = _run_child("guard_pyfim", tmp_path, str(data_dir / "mushroom" / "mushroom.dat"))
    assert outcome["stopped"] is True
    assert outcome["observed"] > outcome["budget"]
    assert "group 'mushroom': stopped by the memory guard" in outcome["error"]
    # pyfim leaves its own C handler on SIGINT after an abort; the guard puts Python's back.
    assert outcome["interrupt_after"] is True


def test_guard_passes_other_interrupts_to_the_previous_handler() -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        with MemoryGuard(current_rss() + 4096 * MIB, group="calm") as guard:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # let Python run the handler
                pass
        assert received == [signal.SIGINT]
        assert not guard.tripped and guard.state["peak_rss"] > 0
        assert signal.getsignal(signal.SIGINT) is not guard._on_sigint
    finally:
        signal.signal(signal.SIGINT, previous)
