"""``fpgrowth-dagster mine``: frequent itemsets and association rules of every group of a file, locally.

Writes ``OUT/<group>/frequent_itemsets.parquet``, ``OUT/<group>/association_rules.parquet`` and
``OUT/summary.json``. Exit codes: 0 when every group was mined or skipped, 1 when some group
failed (the others are still written), 2 for usage, settings or input errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ITEMSETS_FILE = "frequent_itemsets.parquet"
RULES_FILE = "association_rules.parquet"
SUMMARY_FILE = "summary.json"
PROG = "fpgrowth-dagster mine"
# Default of the optional flags: argparse then leaves the attribute out, so a flag that was not
# given keeps the project default (and "--max-len none" can still mean "no bound").
UNSET: Any = argparse.SUPPRESS


def _optional_int(text: str) -> int | None:
    """An integer, or ``none`` for no limit."""
    if text.strip().lower() in ("none", "null", "off"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mine",
        help="Mine frequent itemsets and association rules of every group of a local file.",
        description="Mine each group of INPUT (or the whole file, as group 'all') and write "
                    "OUT/<group>/frequent_itemsets.parquet, OUT/<group>/association_rules.parquet and "
                    "OUT/summary.json. Guards whose flags are not given use the project defaults.",
    )
    parser.add_argument("input", type=Path, help="transactions file (long: CSV, CSV.gz or Parquet; basket; FIMI .dat[.gz])")
    parser.add_argument("--format", required=True, choices=("long", "basket", "fimi"), help="input format")
    parser.add_argument("--transaction-column", default="InvoiceNo", help="long format: transaction id column (default %(default)s)")
    parser.add_argument("--item-column", default="StockCode", help="long format: item column (default %(default)s)")
    parser.add_argument("--group-column", help="long format: mine each distinct value of this column separately")
    parser.add_argument("--time-column", help="long format: time column, checked to hold times")
    parser.add_argument("--delimiter", default=UNSET, help="basket format: item delimiter (default ',')")
    parser.add_argument("--filter", action="append", default=[], metavar="'COLUMN OP VALUE'",
                        help="long format: keep rows where the condition holds, e.g. 'Quantity > 0' or "
                             "'InvoiceNo not_startswith C' (repeatable; applied in order)")
    parser.add_argument("--min-support", type=float, required=True, help="minimum support, a fraction in (0, 1]")
    parser.add_argument("--min-count", type=int, default=UNSET, help="minimum absolute count of an itemset")
    parser.add_argument("--max-len", type=_optional_int, default=UNSET, help="maximum itemset length ('none' for no bound)")
    parser.add_argument("--min-transactions", type=int, default=UNSET, help="skip groups with fewer transactions")
    parser.add_argument("--target", choices=("all", "closed", "maximal"), default=UNSET, help="which frequent itemsets to report")
    parser.add_argument("--engine", choices=("auto", "mlxtend", "fim"), default=UNSET, help="mining engine")
    parser.add_argument("--metric", default=UNSET, help="rule metric to filter on (mlxtend's names, e.g. confidence, lift)")
    parser.add_argument("--min-threshold", type=float, default=UNSET, help="minimum value of --metric")
    parser.add_argument("--max-itemsets", type=_optional_int, default=UNSET, help="itemset budget per group ('none' for no budget)")
    parser.add_argument("--max-rules", type=_optional_int, default=UNSET, help="rule budget per group ('none' for no budget)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.set_defaults(func=run_mine)


SETTING_FLAGS = ("min_support", "min_count", "max_len", "min_transactions", "target", "engine", "metric",
                 "min_threshold", "max_itemsets", "max_rules")


def _settings(args: argparse.Namespace):
    """The project defaults, overridden by the setting flags that were given."""
    from fpgrowth_dagster.mining import DEFAULTS

    overrides = {name: getattr(args, name) for name in SETTING_FLAGS if hasattr(args, name)}
    return DEFAULTS.replace(**overrides).validate()


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _read_groups(args: argparse.Namespace) -> tuple[dict[str, list[list[str]]], dict[str, Any]]:
    """Baskets per group, and a description of how the input was read (for the summary)."""
    from fpgrowth_dagster.mining import LongFormat, group_baskets, read_basket, read_fimi, read_long

    described: dict[str, Any] = {"input": str(args.input), "format": args.format}
    if args.format == "long":
        fmt = LongFormat(transaction_column=args.transaction_column, item_column=args.item_column,
                         group_column=args.group_column, time_column=args.time_column, filters=tuple(args.filter))
        frame = read_long(args.input, fmt)
        described.update(fmt.to_dict())
        described["rows"] = int(len(frame))
        return group_baskets(frame), described
    if args.format == "basket":
        delimiter = getattr(args, "delimiter", ",")
        described["delimiter"] = delimiter
        return {"all": read_basket(args.input, delimiter)}, described
    return {"all": read_fimi(args.input)}, described


def _check_usage(args: argparse.Namespace) -> str | None:
    if args.format != "long":
        for flag, value in (("--group-column", args.group_column), ("--time-column", args.time_column),
                            ("--filter", args.filter or None)):
            if value is not None:
                return f"{flag} applies only to --format long (got --format {args.format})"
    if args.format != "basket" and hasattr(args, "delimiter"):
        return f"--delimiter applies only to --format basket (got --format {args.format})"
    if not args.input.exists():
        return f"{args.input}: file not found"
    if args.input.is_dir():
        return f"{args.input}: is a directory, not a file"
    return None


def run_mine(args: argparse.Namespace) -> int:
    from fpgrowth_dagster.mining import InputError, SettingsError, mine_group
    from fpgrowth_dagster.mining.groups import safe_path_component

    problem = _check_usage(args)
    if problem:
        return _fail(problem)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        return _fail(str(exc))
    started = time.perf_counter()
    print(f"{PROG}: reading {args.input} ({args.format})", file=sys.stderr, flush=True)
    try:
        groups, described = _read_groups(args)
    except InputError as exc:
        return _fail(str(exc))
    n_transactions = sum(len(b) for b in groups.values())
    print(f"{PROG}: {n_transactions:,} transactions in {len(groups)} group(s), read in "
          f"{time.perf_counter() - started:.2f} s", file=sys.stderr, flush=True)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return _fail(f"{args.out}: cannot create the output directory: {exc.strerror or exc}")

    taken: set[str] = set()
    entries: list[dict[str, Any]] = []
    for position, (name, baskets) in enumerate(groups.items(), start=1):
        result = mine_group(baskets, settings, group=name)
        entry = result.summary()
        entry["dir"] = safe_path_component(name, taken)
        try:
            _write_group(args.out / entry["dir"], result)
        except OSError as exc:
            entry.update(status="failed", reason=f"writing the results failed: {exc}")
        entries.append(entry)
        print(_progress_line(position, len(groups), entry), file=sys.stderr, flush=True)

    summary = _summary(described, settings, entries, time.perf_counter() - started)
    _write_json_atomic(args.out / SUMMARY_FILE, summary)
    totals = summary["totals"]
    print(f"{PROG}: {totals['mined']} mined, {totals['skipped']} skipped, {totals['failed']} failed in "
          f"{totals['seconds']:.2f} s; summary: {args.out / SUMMARY_FILE}", file=sys.stderr, flush=True)
    return 1 if totals["failed"] else 0


def _write_group(directory: Path, result) -> None:
    """Mined groups get both tables; others get none (stale tables of an earlier run are removed)."""
    from fpgrowth_dagster.mining import write_parquet_atomic

    if result.status == "mined":
        write_parquet_atomic(result.itemsets, directory / ITEMSETS_FILE)
        write_parquet_atomic(result.rules, directory / RULES_FILE)
        return
    for stale in (directory / ITEMSETS_FILE, directory / RULES_FILE):
        stale.unlink(missing_ok=True)


def _progress_line(position: int, total: int, entry: dict[str, Any]) -> str:
    head = f"[{position}/{total}] {entry['group']}: {entry['status']}"
    rss = entry["peak_rss_bytes"]
    tail = f"{entry['seconds']:.2f} s, peak RSS {rss / 2**20:.0f} MB" if rss else f"{entry['seconds']:.2f} s"
    if entry["status"] == "mined":
        return (f"{head}, {entry['n_transactions']:,} transactions, {entry['n_itemsets']:,} itemsets, "
                f"{entry['n_rules']:,} rules ({tail})")
    return f"{head}: {entry['reason']} ({tail})"


def _summary(described: dict[str, Any], settings, entries: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    rss = [e["peak_rss_bytes"] for e in entries if e["peak_rss_bytes"] is not None]
    totals = {
        "groups": len(entries),
        "mined": sum(e["status"] == "mined" for e in entries),
        "skipped": sum(e["status"] == "skipped" for e in entries),
        "failed": sum(e["status"] == "failed" for e in entries),
        "n_transactions": sum(e["n_transactions"] for e in entries),
        "n_itemsets": sum(e["n_itemsets"] for e in entries),
        "n_rules": sum(e["n_rules"] for e in entries),
        "seconds": round(seconds, 6),
        "peak_rss_bytes": max(rss) if rss else None,
    }
    return {"source": described, "settings": settings.to_dict(), "totals": totals, "groups": entries}


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
