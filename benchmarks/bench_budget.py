"""What the itemset budget (``max_itemsets``) costs, and how fast it refuses a group that explodes.

Side by side in one process, medians of ``--repeat`` alternating runs:

- retail at 0.0005 (19,242 itemsets): ``mine_itemsets`` + ``association_rules`` without a budget and
  with the settings' default budget of 1,000,000 (its counting passes precede mining);
- Online Retail's United Kingdom group (invoices, cancellations dropped) at absolute supports 20 and
  5: the budget's refusal (lengths counted one at a time while the next could pass the budget)
  against counting every length at once, which is what the refusal would cost without it (the
  latter only for support 20 by default: at 5 it runs for more than 300 s; ``--full-count-5``).

    .venv/bin/python benchmarks/bench_budget.py [--repeat 5] [--results benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fpgrowth_dagster.mining import association_rules, mine_itemsets, read_fimi  # noqa: E402
from fpgrowth_dagster.mining.engines import _Plan, count_itemsets  # noqa: E402
from fpgrowth_dagster.mining.errors import BudgetExceeded  # noqa: E402

DATA = REPO_ROOT / "data"
BUDGET = 1_000_000
START, END = "<!-- bench_budget:start -->", "<!-- bench_budget:end -->"


def seconds(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def uk_baskets() -> list[list[str]]:
    import pandas as pd

    frame = pd.read_csv(DATA / "online_retail" / "online_retail_2010-12_to_2011-05.csv.gz", dtype=str)
    frame = frame[(frame["Country"] == "United Kingdom") & ~frame["InvoiceNo"].str.startswith("C")]
    return [sorted(set(items)) for _, items in frame.groupby("InvoiceNo")["StockCode"]]


def refuse(baskets: list[list[str]], count: int) -> str:
    try:
        mine_itemsets(baskets, min_support=1e-9, min_count=count, max_itemsets=BUDGET)
    except BudgetExceeded as exc:
        return str(exc).split(" would produce ", 1)[1].split(" frequent itemsets", 1)[0]
    raise AssertionError(f"the UK group at count {count} was not refused")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--full-count-5", action="store_true", help="also count every length at support 5 (minutes)")
    parser.add_argument("--results", type=Path, help="update this benchmark's section of this RESULTS.md")
    args = parser.parse_args()

    retail = read_fimi(DATA / "retail" / "retail.dat.gz")
    times: dict[str, list[float]] = {"none": [], "budget": []}
    for _ in range(args.repeat):
        for name, budget in (("none", None), ("budget", BUDGET)):
            times[name].append(seconds(lambda: association_rules(
                mine_itemsets(retail, min_support=0.0005, max_itemsets=budget), metric="confidence",
                min_threshold=0.8)))
    none, budget = statistics.median(times["none"]), statistics.median(times["budget"])

    uk = uk_baskets()
    rows = []
    for count in (20, 5):
        said = refuse(uk, count)
        refusal = statistics.median(seconds(lambda: refuse(uk, count)) for _ in range(max(1, args.repeat // 2)))
        full = "not run (over 300 s)"
        if count == 20 or args.full_count_5:
            plan = _Plan(uk, 1e-9, count)
            full = f"{seconds(lambda: count_itemsets(plan, 'all', None)):.2f}"
        rows.append(f"| {count} | {said} | {refusal:.2f} | {full} |")

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    section = "\n".join([
        "## The itemset budget (`benchmarks/bench_budget.py`)",
        "",
        f"Same machine; 1-minute load averages at the end: {load}; medians of {args.repeat} alternating runs.",
        "",
        f"Retail at 0.0005 (19,242 itemsets), mining + rules: {none:.3f} s without a budget, {budget:.3f} s with "
        f"max_itemsets={BUDGET:,} ({budget / none:.2f}x): the budget's counting passes (up to length 2, then every "
        "length) precede mining.",
        "",
        f"Online Retail's United Kingdom group ({len(uk):,} invoices), max_itemsets={BUDGET:,}:",
        "",
        "| absolute support | the refusal says it would produce | refused in s | counting every length s |",
        "|---:|---|---:|---:|",
        *rows,
    ])
    print(section)
    if args.results:
        text = args.results.read_text()
        block = f"{START}\n{section}\n{END}"
        if START in text:
            head, rest = text.split(START, 1)
            text = head + block + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        args.results.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
