"""Mining one group of transactions with its guards, timing and peak memory, never raising.

A run over many groups (countries, stores) must finish every group it can: a group that is too
small is *skipped* with the reason, one whose mining fails (budget exceeded, bad input) is
*failed* with the error message, and the loop goes on.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fpgrowth_dagster.mining.engines import mine_itemsets
from fpgrowth_dagster.mining.rules import association_rules
from fpgrowth_dagster.mining.settings import MiningSettings

STATUSES = ("mined", "skipped", "failed")
LIST_COLUMNS = ("itemset", "antecedents", "consequents")
_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


@dataclass(frozen=True)
class GroupResult:
    """Outcome of one group: status, reason, sizes, wall seconds, peak RSS and the output tables."""

    group: str
    status: str
    reason: str | None
    n_transactions: int
    n_items: int
    n_itemsets: int
    n_rules: int
    seconds: float
    peak_rss_bytes: int | None
    peak_rss_method: str
    itemsets: pd.DataFrame | None = None
    rules: pd.DataFrame | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON-able facts of this group (no tables)."""
        return {
            "group": self.group,
            "status": self.status,
            "reason": self.reason,
            "n_transactions": int(self.n_transactions),
            "n_items": int(self.n_items),
            "n_itemsets": int(self.n_itemsets),
            "n_rules": int(self.n_rules),
            "seconds": round(float(self.seconds), 6),
            "peak_rss_bytes": None if self.peak_rss_bytes is None else int(self.peak_rss_bytes),
            "peak_rss_method": self.peak_rss_method,
        }


class PeakRss:
    """Peak resident memory of this process while the ``with`` block runs.

    On Linux the kernel's high-water mark (VmHWM) is reset on entry by writing ``5`` to
    ``/proc/self/clear_refs`` and read on exit: exact, free, and it includes the memory the
    process already held (method ``"vmhwm"``). Elsewhere a thread samples psutil's RSS every
    ``interval`` seconds (method ``"sampled"``; peaks shorter than the interval can be missed).
    The measure is process-wide: groups mined concurrently in threads of one process share it.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.method = "vmhwm" if _can_reset_hwm() else "sampled"
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        if self.method == "vmhwm":
            try:
                with open(_CLEAR_REFS, "w") as handle:
                    handle.write("5")
            except OSError:
                self.method = "sampled"
        if self.method == "sampled":
            import psutil

            process = psutil.Process()
            self.peak_bytes = process.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(self.interval):
                    self.peak_bytes = max(self.peak_bytes or 0, process.memory_info().rss)

            self._thread = threading.Thread(target=sample, name="peak-rss-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method == "vmhwm":
            self.peak_bytes = _read_hwm()
            if self.peak_bytes is None:
                self.method = "unavailable"
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        import psutil

        self.peak_bytes = max(self.peak_bytes or 0, psutil.Process().memory_info().rss)


def _can_reset_hwm() -> bool:
    return os.path.exists(_CLEAR_REFS) and os.access(_CLEAR_REFS, os.W_OK) and _read_hwm() is not None


def _read_hwm() -> int | None:
    try:
        with open(_STATUS) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def mine_group(baskets: Sequence[Sequence[str]], settings: MiningSettings, *, group: str = "all") -> GroupResult:
    """Mine one group's itemsets and rules under ``settings``; every error becomes a failed result.

    Groups with fewer than ``settings.min_transactions`` transactions are skipped with the
    reason. ``seconds`` is the wall time of the whole call (mining, rules, output tables).
    """
    started = time.perf_counter()
    n_transactions = len(baskets)
    n_items = 0
    status, reason = "mined", None
    itemsets_frame = rules_frame = None
    n_itemsets = n_rules = 0
    with PeakRss() as rss:
        try:
            settings.validate()
            n_items = len({item for basket in baskets for item in basket})
            if n_transactions < settings.min_transactions:
                status = "skipped"
                noun = "transaction" if n_transactions == 1 else "transactions"
                reason = f"{n_transactions} {noun} < min_transactions {settings.min_transactions}"
            else:
                found = mine_itemsets(
                    baskets,
                    min_support=float(settings.min_support),
                    min_count=int(settings.min_count),
                    max_len=settings.max_len,
                    target=settings.target,
                    engine=settings.engine,
                    max_itemsets=settings.max_itemsets,
                )
                rules_frame = association_rules(
                    found, metric=settings.metric, min_threshold=float(settings.min_threshold),
                    max_rules=settings.max_rules,
                )
                itemsets_frame = found.to_frame()
                n_itemsets, n_rules = len(itemsets_frame), len(rules_frame)
        except Exception as exc:  # noqa: BLE001 - one group's failure must not stop the others
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
            itemsets_frame = rules_frame = None
            n_itemsets = n_rules = 0
    return GroupResult(
        group=str(group),
        status=status,
        reason=reason,
        n_transactions=n_transactions,
        n_items=n_items,
        n_itemsets=n_itemsets,
        n_rules=n_rules,
        seconds=time.perf_counter() - started,
        peak_rss_bytes=rss.peak_bytes,
        peak_rss_method=rss.method,
        itemsets=itemsets_frame,
        rules=rules_frame,
    )


def mine_groups(
    groups: Mapping[str, Sequence[Sequence[str]]] | Iterable[tuple[str, Sequence[Sequence[str]]]],
    settings: MiningSettings,
) -> Iterator[GroupResult]:
    """Mine each (group, baskets) in turn, yielding results as they finish; never raises per group."""
    pairs = groups.items() if isinstance(groups, Mapping) else groups
    for name, baskets in pairs:
        yield mine_group(baskets, settings, group=name)


def safe_path_component(name: str, taken: set[str] | None = None) -> str:
    """A directory name for a group: letters, digits, '.', '-', '_' kept, other runs become '_'.

    Names made equal by the replacement (or by case, for case-insensitive file systems) get a
    numeric suffix when ``taken`` is given; ``taken`` is updated.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "group"
    if taken is None:
        return safe
    candidate, suffix = safe, 2
    while candidate.lower() in taken:
        candidate, suffix = f"{safe}_{suffix}", suffix + 1
    taken.add(candidate.lower())
    return candidate


def write_parquet_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to ``path`` as Parquet via a temporary file in the same directory + os.replace.

    Readers never see a half-written file. Label-list columns (itemset, antecedents,
    consequents) are typed list<string> even when the table is empty.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = [c for c in frame.columns if c not in LIST_COLUMNS]
    table = pa.Table.from_pandas(frame[plain], preserve_index=False)
    for position, name in enumerate(frame.columns):
        if name in LIST_COLUMNS:
            values = pa.array([list(v) for v in frame[name]], type=pa.list_(pa.string()))
            table = table.add_column(position, pa.field(str(name), values.type), values)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
