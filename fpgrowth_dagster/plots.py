"""Plots of the results: a group's rules (support vs confidence, coloured by lift) and a group x rule heat map.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure`` rendered by Agg), never
through pyplot: no GUI backend, no global figure registry that grows with every plot in a long
notebook session, and safe in scripts, the CLI and threads. In a notebook, importing this module
registers a PNG formatter for Figures, so a Figure returned by a cell shows inline;
:func:`save_png` writes the file atomically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def rules_scatter(rules: pd.DataFrame, *, title: str | None = None, max_points: int | None = 20000) -> Any:
    """Support (x) vs confidence (y) of each rule, coloured by lift; returns the Figure.

    With more than ``max_points`` rules, those with the highest lift are drawn (the title says so).
    """
    for column in ("support", "confidence", "lift"):
        if column not in rules.columns:
            raise ValueError(f"rules table has no {column!r} column (columns: {', '.join(map(str, rules.columns))})")
    shown = rules
    note = ""
    if max_points is not None and len(rules) > max_points:
        shown = rules.nlargest(max_points, "lift")
        note = f" (top {max_points} of {len(rules)} by lift)"
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    if len(shown):
        points = ax.scatter(shown["support"].to_numpy(dtype=float), shown["confidence"].to_numpy(dtype=float),
                            c=shown["lift"].to_numpy(dtype=float), cmap="viridis", s=22, alpha=0.85,
                            edgecolors="none")
        fig.colorbar(points, ax=ax, label="lift")
    else:
        ax.text(0.5, 0.5, "no rules", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("support")
    ax.set_ylabel("confidence")
    ax.set_title((title or f"{len(rules)} rules: support vs confidence") + note)
    ax.grid(True, alpha=0.3)
    return fig


def rule_heatmap(matrix: pd.DataFrame, metric: str, *, title: str | None = None) -> Any:
    """A group (rows) x rule (columns) heat map of ``metric``; blank where a rule does not hold in a group."""
    values = matrix.to_numpy(dtype=float) if not matrix.empty else np.zeros((0, 0))
    n_groups, n_rules = values.shape
    fig = _figure(max(6.0, 2.5 + 0.38 * n_rules), max(3.0, 1.8 + 0.35 * n_groups + 0.06 * _longest(matrix.columns)))
    ax = fig.add_subplot()
    if values.size:
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="magma_r", interpolation="nearest")
        fig.colorbar(image, ax=ax, label=metric)
        ax.set_xticks(range(n_rules), [_short(str(c)) for c in matrix.columns], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(n_groups), [str(g) for g in matrix.index], fontsize=8)
    else:
        ax.text(0.5, 0.5, "no rules", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("rule")
    ax.set_ylabel("group")
    ax.set_title(title or f"{metric} of the most shared rules, by group")
    return fig


def _short(label: str, limit: int = 48) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _longest(labels: Sequence[Any]) -> int:
    return max((min(len(str(label)), 48) for label in labels), default=0)


def plot_group_rules(explorer: Any, group: str, partition: str, **kwargs: Any) -> Any:
    """The rules scatter of one group and partition, read through a :class:`~fpgrowth_dagster.explorer.ResultsExplorer`."""
    rules = explorer.rules(group, partition, form="lists")
    return rules_scatter(rules, title=f"{group}, {partition}: {len(rules)} rules", **kwargs)


def plot_rule_heatmap(explorer: Any, partition: str, metric: str = "lift", *, groups: Sequence[str] | None = None,
                      top: int = 20, min_groups: int = 1) -> Any:
    """The group x rule heat map of ``metric`` for one partition."""
    matrix = explorer.rule_matrix(partition, metric, groups=groups, top=top, min_groups=min_groups)
    return rule_heatmap(matrix, metric, title=f"{partition}: {metric} of the {matrix.shape[1]} most shared rules "
                                              f"in {matrix.shape[0]} groups")


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_png(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as PNG to ``path`` atomically (a reader never sees half a file); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = png_bytes(fig, dpi=dpi)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def register_inline_display() -> bool:
    """In a notebook, show every returned Figure as PNG (IPython only does so once pyplot set it up); True if done."""
    from fpgrowth_dagster.run_watch import in_notebook

    if not in_notebook():
        return False
    import IPython
    from matplotlib.figure import Figure

    formatter = IPython.get_ipython().display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: png_bytes(fig, dpi=90))
    return True


register_inline_display()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError if ``data`` is not a PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
