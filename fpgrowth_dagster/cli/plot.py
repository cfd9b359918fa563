"""``fpgrowth-dagster plot``: PNG plots of the results in S3.

``plot rules --group G --partition P --out FILE.png``: support vs confidence of the group's rules,
coloured by lift. ``plot heatmap --partition P --metric lift --out FILE.png``: a group x rule heat
map of a metric over the rules shared by the most groups. S3 access uses the standard AWS
environment; the results are those of the project config (``--config`` or ``$FPGROWTH_CONFIG``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

METRIC_CHOICES = ("lift", "confidence", "support", "leverage", "conviction", "zhangs_metric", "jaccard",
                  "certainty", "kulczynski", "representativity", "antecedent support", "consequent support")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="Plot results from S3 as PNG (a group's rules, or a heat map).")
    sub = parser.add_subparsers(dest="plot_command", metavar="PLOT")

    rules = sub.add_parser("rules", help="Support vs confidence of one group's rules, coloured by lift.")
    rules.add_argument("--group", required=True, help="group name from the project config")
    rules.add_argument("--partition", required=True, metavar="KEY", help="partition key, e.g. 2011-05-01")
    _common(rules)
    rules.set_defaults(func=run_rules)

    heatmap = sub.add_parser("heatmap", help="Group x rule heat map of a metric for one partition.")
    heatmap.add_argument("--partition", required=True, metavar="KEY", help="partition key, e.g. 2011-05-01")
    heatmap.add_argument("--metric", default="lift", choices=METRIC_CHOICES, help="rule metric shown (default lift)")
    heatmap.add_argument("--top", type=int, default=20, help="rules shown: those held by the most groups (default 20)")
    heatmap.add_argument("--groups", metavar="G1,G2", help="only these groups (default: every group with results)")
    heatmap.add_argument("--min-groups", type=int, default=1, help="only rules held by at least this many groups")
    _common(heatmap)
    heatmap.set_defaults(func=run_heatmap)
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.png", help="PNG file to write")
    parser.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="project config (default: $FPGROWTH_CONFIG, ./fpgrowth.yaml, the packaged demo)")


def _explorer(args: argparse.Namespace):
    from fpgrowth_dagster.explorer import ResultsExplorer

    return ResultsExplorer.from_config(args.config)


def _run(args: argparse.Namespace, build) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from fpgrowth_dagster.config import ConfigError
    from fpgrowth_dagster.explorer import ResultsNotFound
    from fpgrowth_dagster.plots import png_size, save_png

    if args.out.suffix.lower() != ".png":
        print(f"fpgrowth-dagster plot: error: --out {args.out}: the file name must end in .png", file=sys.stderr)
        return 2
    try:
        figure, what = build(_explorer(args))
        path = save_png(figure, args.out, dpi=args.dpi)
    except (ConfigError, ValueError) as exc:
        print(f"fpgrowth-dagster plot: error: {exc}", file=sys.stderr)
        return 2
    except ResultsNotFound as exc:
        print(f"fpgrowth-dagster plot: error: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:
        print(f"fpgrowth-dagster plot: error: cannot read the results from S3 (AWS_ENDPOINT_URL, AWS_REGION, "
              f"credentials): {exc}", file=sys.stderr)
        return 1
    width, height = png_size(path.read_bytes())
    print(f"wrote {path} ({width}x{height} px): {what}")
    return 0


def run_rules(args: argparse.Namespace) -> int:
    from fpgrowth_dagster.plots import plot_group_rules

    def build(explorer):
        figure = plot_group_rules(explorer, args.group, args.partition)
        return figure, f"rules of {args.group}, {args.partition}"

    return _run(args, build)


def run_heatmap(args: argparse.Namespace) -> int:
    from fpgrowth_dagster.plots import plot_rule_heatmap

    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None

    def build(explorer):
        figure = plot_rule_heatmap(explorer, args.partition, args.metric, groups=groups, top=args.top,
                                   min_groups=args.min_groups)
        return figure, f"{args.metric} heat map, {args.partition}"

    return _run(args, build)
