"""``fpgrowth-dagster status``: what this machine can give a run, the Dagster processes on it, recent kills.

Shows the CPUs this process may use (affinity and cgroup quota) next to the host's count, load,
CPU %, memory, swap and disk, every Dagster process with its RSS and CPU, the ``max_concurrent``
recommended for this machine, and the latest termination records. ``--json`` prints it all as one
JSON document for scripts and monitoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="CPUs, memory, Dagster processes and recent terminations on this machine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument(
        "--terminations",
        type=int,
        default=3,
        metavar="N",
        help="show the last N termination records (default 3; 0 for none)",
    )
    parser.add_argument(
        "--sample-seconds",
        type=float,
        default=0.5,
        metavar="S",
        help="interval over which CPU %% is measured (default 0.5)",
    )
    parser.add_argument("--staging-dir", default=None, help="directory whose free space to report (default: temp dir)")
    parser.set_defaults(func=run)


def _size(value: int | None) -> str:
    if value is None:
        return "none"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TiB"


def _text(status: dict[str, Any], terminations: list[dict[str, Any]]) -> str:
    cpus, memory, swap = status["cpus"], status["memory"], status["swap"]
    load = status["load_average"]
    quota = cpus["cgroup_quota"]
    lines = [
        f"CPUs:    {cpus['available']} usable (affinity {cpus['affinity']}, cgroup quota "
        f"{'none' if quota is None else f'{quota:g}'}, host {cpus['host']})",
        f"Load:    {load['1m']} {load['5m']} {load['15m']} ({status['load_per_available_cpu']} per usable CPU); "
        f"CPU {status['cpu_percent']:.0f}% busy",
    ]
    pressure = status.get("pressure") or {}
    if pressure.get("cpu") or pressure.get("memory"):
        parts = [f"{name} {values['some_avg10']:.1f}%" for name, values in pressure.items() if values]
        lines.append(f"Waiting: {', '.join(parts)} of the last 10 s (Linux pressure stall information)")
    lines.append(
        f"Memory:  {_size(memory['effective_available_bytes'])} available of {_size(memory['total_bytes'])} "
        f"(cgroup limit {_size(memory['cgroup_limit_bytes'])}); swap {_size(swap['used_bytes'])} used of "
        f"{_size(swap['total_bytes'])}"
    )
    for disk in status["disk"]:
        if "error" in disk:
            lines.append(f"Disk:    {disk['path']}: {disk['error']}")
        else:
            lines.append(f"Disk:    {_size(disk['free_bytes'])} free at {disk['path']} ({disk['role']})")
    processes = [p for p in status["dagster_processes"] if "pid" in p]
    lines.append(f"Dagster processes: {len(processes) or 'none found'}")
    if processes:
        lines.append(f"  {'PID':>7}  {'ROLE':<13} {'RSS':>10} {'CPU%':>6}  DETAIL")
        for proc in processes:
            detail = (
                " ".join(str(proc[k]) for k in ("group", "partition", "step_key") if proc.get(k))
                or proc["cmdline"][:70]
            )
            cpu = "" if proc["cpu_percent"] is None else f"{proc['cpu_percent']:.0f}"
            lines.append(f"  {proc['pid']:>7}  {proc['role']:<13} {_size(proc['rss_bytes']):>10} {cpu:>6}  {detail}")
    rec = status["recommendation"]
    lines.append(
        f"Recommended max_concurrent: {rec['max_concurrent']} (limited by {rec['limited_by']}: "
        f"{rec['cpu_bound']} usable CPUs; memory allows {rec['memory_bound']} steps at "
        f"{_size(rec['per_step_memory_bytes'])} each, "
        f"{rec['per_step_memory_basis']})"
    )
    if status["load_per_available_cpu"] > 1.5:
        lines.append("Note: the load is well above the usable CPUs: steps compete for CPU time; run fewer at once.")
    lines.append(f"Termination records: {status['diagnostics_path']}")
    for record in terminations:
        lines.append(f"  {record.get('time')}  {record.get('cause')}: {record.get('summary')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fpgrowth_dagster.monitoring.diagnostics import read_records
    from fpgrowth_dagster.monitoring.status import get_system_resource_status

    status = get_system_resource_status(sample_seconds=max(0.0, args.sample_seconds), staging_dir=args.staging_dir)
    terminations = read_records(limit=args.terminations) if args.terminations > 0 else []
    if args.json:
        status["recent_terminations"] = terminations
        json.dump(status, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(_text(status, terminations))
    return 0
