"""What one group materialisation cost: wall and CPU time, peak RSS, available memory before and after.

``with measure_step(group=..., partition=...) as step: ...`` samples the step process's resident
memory from a background thread and, at the end, emits one structured JSON log line and appends
the figures to a small history file (which the ``max_concurrent`` recommendation reads).
``step.metadata()`` gives the figures for Dagster metadata at any point, also inside the block.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("fpgrowth_dagster.monitoring")
SAMPLE_INTERVAL_SECONDS = 0.1
HISTORY_MAX_BYTES = 4 << 20


def current_rss() -> int:
    """Resident set size of this process in bytes (from /proc/self/statm, no psutil object needed)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGESIZE")
    except (OSError, ValueError, IndexError):
        import psutil

        return int(psutil.Process().memory_info().rss)


def max_rss_so_far() -> int:
    """The kernel's high-water mark of this process's RSS (``ru_maxrss``, KiB on Linux), in bytes."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds on a daemon thread and keeps the peak.

    A Python thread cannot sample while C code holds the GIL, so :meth:`peak` also consults the
    kernel's ``ru_maxrss``: if it rose during the step, that is the step's exact peak.
    """

    def __init__(self, interval: float = SAMPLE_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.start_rss = current_rss()
        self.start_max_rss = max_rss_so_far()
        self._peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fpgrowth-rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = current_rss()
            if rss > self._peak:
                self._peak = rss

    def peak(self) -> int:
        rss = current_rss()
        if rss > self._peak:
            self._peak = rss
        kernel_peak = max_rss_so_far()
        # Above the mark at the start, the kernel's figure is a peak reached during the step (it
        # stays so if something resets the mark through /proc/self/clear_refs meanwhile).
        return max(kernel_peak, self._peak) if kernel_peak > self.start_max_rss else self._peak

    def stop(self) -> int:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        return self.peak()


class StepMeasurement:
    """Figures of one running or finished group step (see :func:`measure_step`)."""

    def __init__(self, group: str | None, partition: str | None, sampler: RssSampler) -> None:
        import psutil

        from fpgrowth_dagster.monitoring.status import effective_available_memory

        self.group = group
        self.partition = partition
        self.sampler = sampler
        self.pid = os.getpid()
        self.started_at = datetime.now(timezone.utc)
        self._wall_start = time.perf_counter()
        self._cpu_start = psutil.Process().cpu_times()
        self.available_start = effective_available_memory()
        self.finished: dict[str, Any] | None = None

    def snapshot(self) -> dict[str, Any]:
        """The figures so far (or the final ones once the step has ended)."""
        if self.finished is not None:
            return dict(self.finished)
        import psutil

        from fpgrowth_dagster.monitoring.status import effective_available_memory

        cpu = psutil.Process().cpu_times()
        wall = time.perf_counter() - self._wall_start
        user = cpu.user - self._cpu_start.user
        system = cpu.system - self._cpu_start.system
        return {
            "group": self.group,
            "partition": self.partition,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "wall_seconds": round(wall, 3),
            "cpu_user_seconds": round(user, 3),
            "cpu_system_seconds": round(system, 3),
            "cpu_seconds": round(user + system, 3),
            "cpu_utilisation": round((user + system) / wall, 3) if wall > 0 else 0.0,
            "rss_start_bytes": self.sampler.start_rss,
            "rss_bytes": current_rss(),
            "peak_rss_bytes": self.sampler.peak(),
            "available_memory_start_bytes": self.available_start,
            "available_memory_end_bytes": effective_available_memory(),
        }

    def metadata(self) -> dict[str, Any]:
        """Flat figures for Dagster metadata (numbers stay numbers; sizes also in MiB for reading)."""
        figures = self.snapshot()
        out = {
            key: value for key, value in figures.items() if key not in ("group", "partition", "started_at", "status")
        }
        out["peak_rss_mib"] = round(figures["peak_rss_bytes"] / 2**20, 1)
        out["available_memory_start_mib"] = round(figures["available_memory_start_bytes"] / 2**20, 1)
        out["available_memory_end_mib"] = round(figures["available_memory_end_bytes"] / 2**20, 1)
        return out

    def finish(self, status: str) -> dict[str, Any]:
        self.sampler.stop()
        figures = self.snapshot()
        figures["status"] = status
        self.finished = figures
        return figures


def log_line(figures: dict[str, Any], event: str = "fpgrowth.step_resources") -> str:
    """One structured JSON line (``event`` first) for log aggregation."""
    return json.dumps({"event": event, **figures}, default=str, sort_keys=False)


def append_history(figures: dict[str, Any], path: Path | None = None) -> None:
    """Append the figures to the step history (rotated at a few MiB); best effort."""
    from fpgrowth_dagster.monitoring.status import step_history_path

    path = path or step_history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > HISTORY_MAX_BYTES:
            os.replace(path, path.with_suffix(path.suffix + ".1"))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(figures, default=str) + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


@contextmanager
def measure_step(
    group: str | None = None,
    partition: str | None = None,
    log: Callable[[str], None] | None = None,
    record_history: bool = True,
) -> Iterator[StepMeasurement]:
    """Measure the enclosed block; at the end log one JSON line (via ``log`` or the module logger).

    The status in the line is ``succeeded`` or the exception's class name, so failed and
    terminated steps leave their figures too.
    """
    sampler = RssSampler().start()
    step = StepMeasurement(group, partition, sampler)
    status = "succeeded"
    try:
        yield step
    except BaseException as exc:
        status = type(exc).__name__
        raise
    finally:
        figures = step.finish(status)
        line = log_line(figures)
        try:
            (log or LOGGER.info)(line)
        except Exception:  # noqa: BLE001 - the event log may be unavailable while terminating
            LOGGER.info(line)
        if record_history and status == "succeeded":
            append_history(figures)
