"""What this machine can give a run right now: usable CPUs, load, memory, swap, disk, Dagster processes.

:func:`get_system_resource_status` is what ``fpgrowth-dagster status`` prints and what a
termination record embeds; :func:`recommend_max_concurrent` turns the CPUs this process may
actually use (affinity and cgroup quota, not the host count) and the memory that is really
available (cgroup limit included) into the executor's ``max_concurrent``.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fpgrowth_dagster.system import affinity_cpus, available_cpus, cgroup_cpu_limit

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 reports "no limit" as a page-rounded 2**63 - 1; anything this large is unlimited.
UNLIMITED_BYTES = 1 << 60
# Resident memory of one group step process when nothing has been measured yet: the imports
# (dagster, pandas, pyarrow, boto3) take about 250 MB, mining a mid-sized group a few hundred more.
DEFAULT_STEP_MEMORY_BYTES = 1 << 30
# Kept free for the run worker, daemon, webserver and code servers.
MIN_RESERVE_BYTES = 512 << 20
STEP_HISTORY_FILE = "step_resources.jsonl"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= UNLIMITED_BYTES else value


def _memory_cgroup_dirs(cgroup_root: Path, proc_cgroup: Path) -> list[tuple[str, Path]]:
    """(version, directory) of this process's memory cgroup and its ancestors, innermost first."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    found: list[tuple[str, Path]] = []
    for line in lines:
        fields = line.strip().split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        parts = [p for p in path.strip("/").split("/") if p]
        if hierarchy == "0" and controllers == "":
            base, version = cgroup_root, "v2"
            if (cgroup_root / "unified").is_dir() and not (cgroup_root / "cgroup.controllers").exists():
                base = cgroup_root / "unified"
        elif "memory" in controllers.split(","):
            base, version = cgroup_root / "memory", "v1"
        else:
            continue
        found.extend((version, base.joinpath(*parts[:i])) for i in range(len(parts), -1, -1))
    return found


def cgroup_memory(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> dict[str, int | None]:
    """The tightest cgroup memory limit over this process's cgroups and the usage counted against it."""
    best_limit: int | None = None
    usage_at_limit: int | None = None
    for version, directory in _memory_cgroup_dirs(cgroup_root, proc_cgroup):
        if version == "v2":
            limit, usage = _read_int(directory / "memory.max"), _read_int(directory / "memory.current")
        else:
            limit, usage = (
                _read_int(directory / "memory.limit_in_bytes"),
                _read_int(directory / "memory.usage_in_bytes"),
            )
        if limit is not None and (best_limit is None or limit < best_limit):
            best_limit, usage_at_limit = limit, usage
    return {"limit_bytes": best_limit, "usage_bytes": usage_at_limit}


def effective_available_memory() -> int:
    """Bytes a new step can still use: the host's available memory, capped by the cgroup's headroom."""
    import psutil

    available = int(psutil.virtual_memory().available)
    cgroup = cgroup_memory()
    if cgroup["limit_bytes"] is not None:
        headroom = cgroup["limit_bytes"] - (cgroup["usage_bytes"] or 0)
        available = min(available, max(0, headroom))
    return available


def _pressure(resource: str) -> dict[str, float] | None:
    """Linux PSI ``some avg10/avg60`` for cpu or memory (share of time tasks waited), if the kernel has it."""
    try:
        line = Path(f"/proc/pressure/{resource}").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    values = dict(part.split("=", 1) for part in line.split()[1:])
    try:
        return {"some_avg10": float(values["avg10"]), "some_avg60": float(values["avg60"])}
    except (KeyError, ValueError):
        return None


def _disk(path: str, role: str) -> dict[str, Any]:
    import psutil

    try:
        usage = psutil.disk_usage(path)
    except OSError as exc:
        return {"path": path, "role": role, "error": str(exc)}
    return {
        "path": path,
        "role": role,
        "total_bytes": usage.total,
        "free_bytes": usage.free,
        "percent_used": usage.percent,
    }


def step_history_path() -> Path:
    from fpgrowth_dagster.monitoring.processes import state_dir

    return state_dir() / STEP_HISTORY_FILE


def recent_step_peaks(limit: int = 200, path: Path | None = None) -> list[int]:
    """Peak RSS of the most recent measured group steps on this machine (from the step history file)."""
    path = path or step_history_path()
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * 1024))
            lines = handle.read().splitlines()[-limit:]
    except OSError:
        return []
    peaks = []
    for line in lines:
        try:
            peaks.append(int(json.loads(line)["peak_rss_bytes"]))
        except (ValueError, KeyError, TypeError):
            continue
    return peaks


def recommend_max_concurrent(
    cpus: int | None = None,
    available_memory_bytes: int | None = None,
    per_step_memory_bytes: int | None = None,
    total_memory_bytes: int | None = None,
    step_peaks: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The multiprocess executor's ``max_concurrent`` for this machine, and why.

    One step per usable CPU (more only adds contention), and no more steps than fit in the
    available memory at the per-step peak (observed 95th percentile of recent steps, else a
    conservative default), keeping a reserve for the run worker and Dagster's services.
    """
    import psutil

    cpus = available_cpus() if cpus is None else max(1, int(cpus))
    memory = psutil.virtual_memory()
    available = effective_available_memory() if available_memory_bytes is None else int(available_memory_bytes)
    total = int(memory.total) if total_memory_bytes is None else int(total_memory_bytes)
    basis = "given"
    if per_step_memory_bytes is None:
        peaks = sorted(recent_step_peaks() if step_peaks is None else step_peaks)
        if peaks:
            per_step_memory_bytes = peaks[min(len(peaks) - 1, int(0.95 * len(peaks)))]
            basis = f"95th percentile peak RSS of the last {len(peaks)} measured group steps"
        else:
            per_step_memory_bytes = DEFAULT_STEP_MEMORY_BYTES
            basis = "default (no group step measured on this machine yet)"
    per_step = max(64 << 20, int(per_step_memory_bytes))
    reserve = max(MIN_RESERVE_BYTES, total // 10)
    memory_bound = max(1, (available - reserve) // per_step)
    chosen = max(1, min(cpus, memory_bound))
    limited_by = "cpus" if cpus <= memory_bound else "memory"
    return {
        "max_concurrent": int(chosen),
        "limited_by": limited_by,
        "cpu_bound": int(cpus),
        "memory_bound": int(memory_bound),
        "per_step_memory_bytes": int(per_step),
        "per_step_memory_basis": basis,
        "reserve_bytes": int(reserve),
        "available_memory_bytes": int(available),
    }


def get_system_resource_status(
    sample_seconds: float = 0.3, staging_dir: str | None = None, include_processes: bool = True
) -> dict[str, Any]:
    """A JSON-able snapshot of the machine as a group step sees it (CPU counts respect affinity and cgroups)."""
    import psutil

    from fpgrowth_dagster.monitoring.diagnostics import diagnostics_path

    psutil.cpu_percent(None)
    started = time.monotonic()
    processes = dagster_processes_safe(sample_seconds) if include_processes else []
    remaining = sample_seconds - (time.monotonic() - started)
    if remaining > 0:
        time.sleep(remaining)
    cpu_percent = psutil.cpu_percent(None)
    memory = psutil.virtual_memory()
    swap = psutil.swap_memory()
    cgroup = cgroup_memory()
    load1, load5, load15 = os.getloadavg()
    usable = available_cpus()
    disks = [_disk(staging_dir or tempfile.gettempdir(), "staging (temporary files)")]
    if os.environ.get("DAGSTER_HOME"):
        disks.append(_disk(os.environ["DAGSTER_HOME"], "DAGSTER_HOME (run and event storage)"))
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpus": {
            "available": usable,
            "affinity": affinity_cpus(),
            "cgroup_quota": cgroup_cpu_limit(),
            "host": os.cpu_count(),
        },
        "load_average": {"1m": round(load1, 2), "5m": round(load5, 2), "15m": round(load15, 2)},
        "load_per_available_cpu": round(load1 / usable, 2),
        "cpu_percent": cpu_percent,
        "pressure": {"cpu": _pressure("cpu"), "memory": _pressure("memory")},
        "memory": {
            "total_bytes": int(memory.total),
            "available_bytes": int(memory.available),
            "percent_used": memory.percent,
            "cgroup_limit_bytes": cgroup["limit_bytes"],
            "cgroup_usage_bytes": cgroup["usage_bytes"],
            "effective_available_bytes": effective_available_memory(),
        },
        "swap": {"total_bytes": int(swap.total), "used_bytes": int(swap.used), "percent_used": swap.percent},
        "disk": disks,
        "dagster_processes": processes,
        "recommendation": recommend_max_concurrent(cpus=usable),
        "diagnostics_path": str(diagnostics_path()),
    }


def dagster_processes_safe(sample_seconds: float) -> list[dict[str, Any]]:
    """The Dagster process listing; a failure to inspect /proc must never break a status or a record."""
    from fpgrowth_dagster.monitoring.processes import dagster_processes

    try:
        return dagster_processes(sample_seconds)
    except Exception as exc:  # noqa: BLE001 - report, do not fail the caller
        return [{"error": f"could not list processes: {exc}"}]
