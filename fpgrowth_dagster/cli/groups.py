"""``fpgrowth-dagster groups discover``: write the project config's group list from the data.

One group per distinct value of a column (e.g. the 36 countries of Online Retail), with a name that
is safe as an asset key, a ``where`` selecting that value, and a size tag from the group's
transaction count (``fpgrowth/size: large`` at or above ``--large-threshold``), so nobody types the
list by hand and the executor can keep large groups from running side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_LARGE_THRESHOLD = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("groups", help="Work with the project config's groups.")
    sub = parser.add_subparsers(dest="groups_command", metavar="SUBCOMMAND")
    discover = sub.add_parser(
        "discover",
        help="Write one group per distinct value of a column, with size tags from transaction counts.",
        description="Read a long-format file (CSV, CSV.gz or Parquet; a local path or s3://bucket/key) and write "
                    "the 'groups:' list of a project config.",
    )
    discover.add_argument("input", help="long-format transactions: a local file or s3://bucket/key")
    discover.add_argument("--group-column", required=True, help="column whose distinct values become groups")
    discover.add_argument("--transaction-column", default="InvoiceNo", help="transaction id column (default %(default)s)")
    discover.add_argument("--item-column", default="StockCode", help="item column (default %(default)s)")
    discover.add_argument("--filter", action="append", default=[], metavar="'COLUMN OP VALUE'",
                          help="row filter applied before counting, e.g. 'Quantity > 0' (repeatable)")
    discover.add_argument("--large-threshold", type=int, default=DEFAULT_LARGE_THRESHOLD, metavar="N",
                          help="groups with at least N transactions are tagged fpgrowth/size: large, the others "
                               "small (default %(default)s)")
    discover.add_argument("--out", type=Path, help="write the YAML here (atomically) instead of standard output")
    discover.set_defaults(func=run_discover)
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])


def safe_group_name(value: str) -> str:
    """A lowercase name of letters, digits and '_' (valid in the asset key ``fpgrowth/<name>``)."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", value).strip("_").lower()
    return name or "group"


def discover_groups(long_df: Any, group_column: str, large_threshold: int) -> list[dict[str, Any]]:
    """Groups from a frame with ``transaction`` and ``group`` columns, largest first, names unique."""
    from fpgrowth_dagster.config import SIZE_TAG

    counts = long_df.groupby("group", sort=False)["transaction"].nunique()
    ordered = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
    taken: set[str] = set()
    groups = []
    for value, n_transactions in ordered:
        base = safe_group_name(str(value))
        name, suffix = base, 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        size = "large" if int(n_transactions) >= large_threshold else "small"
        groups.append({
            "name": name,
            "where": {group_column: str(value)},
            "tags": {SIZE_TAG: size},
            "description": f"{group_column} = {value}: {int(n_transactions)} transactions",
        })
    return groups


def groups_yaml(groups: list[dict[str, Any]], header: str) -> str:
    """The ``groups:`` list as YAML, one compact block per group, under a comment header."""
    import yaml

    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()

    lines = [f"# {line}" for line in header.splitlines()] + ["groups:"]
    for group in groups:
        lines.append(f"  - name: {group['name']}")
        for key in ("where", "mining", "tags", "description"):
            if key in group:
                lines.append(f"    {key}: {flow(group[key])}")
    return "\n".join(lines) + "\n"


def _read_input(path: str) -> tuple[Any, str]:
    """A binary stream of the input and its name (S3 via the standard AWS environment)."""
    import io

    if path.startswith("s3://"):
        from fpgrowth_dagster.resources import SharedS3Resource
        from fpgrowth_dagster.s3io import get_bytes, parse_s3_uri

        bucket, key = parse_s3_uri(path)
        return io.BytesIO(get_bytes(SharedS3Resource().get_client(), bucket, key)), path
    return Path(path), path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_discover(args: argparse.Namespace) -> int:
    from fpgrowth_dagster.mining import InputError, LongFormat, read_long

    try:
        fmt = LongFormat(transaction_column=args.transaction_column, item_column=args.item_column,
                         group_column=args.group_column, filters=tuple(args.filter))
        source, name = _read_input(args.input)
        long_df = read_long(source, fmt, name=name)
    except (InputError, OSError) as exc:
        print(f"fpgrowth-dagster groups discover: {exc}", file=sys.stderr)
        return 1
    if args.large_threshold < 1:
        print("fpgrowth-dagster groups discover: --large-threshold must be at least 1", file=sys.stderr)
        return 2
    groups = discover_groups(long_df, args.group_column, args.large_threshold)
    n_large = sum(1 for g in groups if g["tags"]["fpgrowth/size"] == "large")
    filters = "; ".join(args.filter) or "none"
    header = (f"Groups of {Path(name).name if not name.startswith('s3://') else name} by {args.group_column}: "
              f"{len(groups)} groups ({n_large} large at >= {args.large_threshold} transactions), "
              f"{long_df['transaction'].nunique()} transactions.\n"
              f"Written by: fpgrowth-dagster groups discover (filters: {filters}).")
    text = groups_yaml(groups, header)
    if args.out:
        write_atomically(args.out, text)
        print(f"wrote {len(groups)} groups ({n_large} large) to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
