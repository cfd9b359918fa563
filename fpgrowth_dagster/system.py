"""CPUs this process may actually use: CPU affinity and the cgroup CPU quota, not the host's count.

``multiprocessing.cpu_count()`` reports the host's CPUs. In a container limited to two CPUs on a
64-CPU host, starting 64 step processes is a known cause of CPU starvation and OOM kills, so the
executor's default ``max_concurrent`` comes from :func:`available_cpus` instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def affinity_cpus() -> int:
    """Number of CPUs in this process's affinity mask (what ``taskset`` restricts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"QUOTA PERIOD"`` or ``"max PERIOD"``); None = unlimited."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    quota = int(parts[0])
    period = int(parts[1]) if len(parts) > 1 else 100_000
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; None = unlimited (quota -1)."""
    quota = int(quota_text.strip())
    period = int(period_text.strip())
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _cgroup_paths(proc_cgroup_text: str) -> tuple[str | None, str | None]:
    """The v2 path (``0::/...``) and the v1 ``cpu`` controller path from ``/proc/self/cgroup``."""
    v2_path: str | None = None
    v1_cpu_path: str | None = None
    for line in proc_cgroup_text.splitlines():
        fields = line.strip().split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_cpu_path = path
    return v2_path, v1_cpu_path


def _ancestors(base: Path, path: str) -> list[Path]:
    """``base/path`` and each of its parents up to ``base``: a parent's quota limits its children too."""
    parts = [p for p in path.strip("/").split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The tightest CPU quota of this process's cgroups (v2 ``cpu.max`` or v1 CFS), in CPUs; None = unlimited."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return None
    v2_path, v1_path = _cgroup_paths(text)
    limits: list[float] = []
    if v2_path is not None:
        for directory in _ancestors(cgroup_root, v2_path):
            try:
                limit = parse_cpu_max((directory / "cpu.max").read_text())
            except (OSError, ValueError):
                continue
            if limit is not None:
                limits.append(limit)
    if v1_path is not None:
        for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            for directory in _ancestors(cgroup_root / mount, v1_path):
                try:
                    limit = parse_cfs(
                        (directory / "cpu.cfs_quota_us").read_text(), (directory / "cpu.cfs_period_us").read_text()
                    )
                except (OSError, ValueError):
                    continue
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def available_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """CPUs this process may actually use: min(affinity, ceil(cgroup quota)), at least 1."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)
