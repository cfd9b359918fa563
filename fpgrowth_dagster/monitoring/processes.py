"""The Dagster processes on this machine, recognised by their command lines, with RSS and CPU.

Roles: ``dagster dev``, daemon, webserver, code server, run worker (``dagster api execute_run``),
step worker (``dagster api execute_step``), the multiprocess executor's forkserver and its step
processes (forkserver or spawn children below a run worker), and the CLI commands that execute runs
in-process. Step processes of monitored group steps also register themselves in a small state
directory, so the listing can say which group and partition each one is working on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DAGSTER_ROLES = (
    "dagster dev",
    "daemon",
    "webserver",
    "code server",
    "run worker",
    "step worker",
    "forkserver",
    "step process",
    "dagster cli",
)


def state_dir() -> Path:
    """Where monitoring keeps its files: ``$FPGROWTH_STATE_DIR``, ``$DAGSTER_HOME/fpgrowth`` or ~/.local/state."""
    explicit = os.environ.get("FPGROWTH_STATE_DIR")
    if explicit:
        return Path(explicit)
    home = os.environ.get("DAGSTER_HOME")
    if home:
        return Path(home) / "fpgrowth"
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "fpgrowth-dagster"


def _joined(cmdline: Sequence[str]) -> str:
    return " ".join(cmdline)


def classify_cmdline(cmdline: Sequence[str]) -> str | None:
    """The Dagster role a command line shows on its own (multiprocessing children need their ancestry)."""
    if not cmdline:
        return None
    text = _joined(cmdline)
    words = [os.path.basename(part) for part in cmdline]
    if "dagster-daemon" in words or "dagster._daemon" in text:
        return "daemon"
    if "dagster-webserver" in words or "dagster_webserver" in text or "dagit" in words:
        return "webserver"
    if "api" in words and "grpc" in words or "code-server" in words:
        return "code server"
    if "execute_run" in words or "resume_run" in words:
        return "run worker"
    if "execute_step" in words:
        return "step worker"
    if "dagster" in words:
        index = words.index("dagster")
        rest = words[index + 1 : index + 3]
        if rest[:1] == ["dev"]:
            return "dagster dev"
        if rest[:1] in (["job"], ["asset"]) and any(w in rest for w in ("launch", "execute", "materialize")):
            return "dagster cli"
    return None


def _multiprocessing_kind(cmdline: Sequence[str]) -> str | None:
    text = _joined(cmdline)
    if "multiprocessing.forkserver" in text:
        return "forkserver"
    if "multiprocessing.spawn" in text or "--multiprocessing-fork" in text:
        return "spawn"
    return None


def _depth(pid: int, parents: dict[int, int]) -> int:
    depth, seen = 0, set()
    while pid in parents and pid not in seen:
        seen.add(pid)
        pid = parents[pid]
        depth += 1
    return depth


def _registry_dir() -> Path:
    return state_dir() / "steps"


def register_step(info: dict[str, Any]) -> Path | None:
    """Note that this process runs a group step (for ``fpgrowth-dagster status``); best effort."""
    import psutil

    directory = _registry_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{os.getpid()}.json"
        record = {"pid": os.getpid(), "create_time": psutil.Process().create_time(), "started": time.time(), **info}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, default=str))
        os.replace(tmp, path)
        return path
    except OSError:
        return None


def unregister_step(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def registered_steps() -> dict[int, dict[str, Any]]:
    """Registered step processes that are still alive (stale entries are removed)."""
    import psutil

    found: dict[int, dict[str, Any]] = {}
    directory = _registry_dir()
    if not directory.is_dir():
        return found
    for path in directory.glob("*.json"):
        try:
            record = json.loads(path.read_text())
            alive = psutil.Process(int(record["pid"])).create_time() == record["create_time"]
        except (OSError, ValueError, KeyError, psutil.Error):
            alive = False
            record = None
        if alive and record is not None:
            found[int(record["pid"])] = record
        else:
            try:
                path.unlink()
            except OSError:
                pass
    return found


def _describe(proc: Any, role: str, cpu_percent: float | None) -> dict[str, Any]:
    import psutil

    try:
        with proc.oneshot():
            memory = proc.memory_info()
            times = proc.cpu_times()
            entry = {
                "pid": proc.pid,
                "ppid": proc.ppid(),
                "role": role,
                "rss_bytes": int(memory.rss),
                "cpu_percent": cpu_percent,
                "cpu_seconds": round(times.user + times.system, 3),
                "threads": proc.num_threads(),
                "started": proc.create_time(),
                "cmdline": _joined(proc.cmdline())[:300],
            }
    except psutil.Error:
        return {}
    return entry


def dagster_processes(sample_seconds: float = 0.3) -> list[dict[str, Any]]:
    """Every Dagster process visible on this machine, with RSS, CPU % over ``sample_seconds`` and role."""
    import psutil

    cmdlines: dict[int, list[str]] = {}
    parents: dict[int, int] = {}
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        cmdlines[proc.pid] = proc.info.get("cmdline") or []
        parents[proc.pid] = proc.info.get("ppid") or 0
    roles: dict[int, str] = {}
    for pid, cmdline in cmdlines.items():
        role = classify_cmdline(cmdline)
        if role:
            roles[pid] = role

    def dagster_ancestor(pid: int) -> bool:
        seen = set()
        while pid in parents and pid not in seen:
            seen.add(pid)
            pid = parents[pid]
            if roles.get(pid) in ("run worker", "dagster cli", "step worker", "code server", "dagster dev", "daemon"):
                return True
        return False

    # Parents first, so a child's role can depend on its parent's.
    for pid in sorted(cmdlines, key=lambda p: _depth(p, parents)):
        kind = _multiprocessing_kind(cmdlines[pid])
        if kind is None or pid in roles or not dagster_ancestor(pid):
            continue
        parent = parents.get(pid, -1)
        if roles.get(parent) == "code server":
            roles[pid] = "run worker"  # the code server starts run workers as multiprocessing children
        elif kind == "forkserver" and _multiprocessing_kind(cmdlines.get(parent, [])) != "forkserver":
            roles[pid] = "forkserver"
        else:
            roles[pid] = "step process"
    registry = registered_steps()
    for pid in registry:
        roles.setdefault(pid, "step process")
        # A run executed in-process (execute_job in a script or a test): name the forkserver and run worker too.
        parent = parents.get(pid)
        if parent is not None and _multiprocessing_kind(cmdlines.get(parent, [])) == "forkserver":
            roles.setdefault(parent, "forkserver")
            grandparent = parents.get(parent)
            if grandparent is not None and grandparent > 1:
                roles.setdefault(grandparent, "run worker")
    if not roles:
        return []
    handles = {}
    for pid in roles:
        try:
            handle = psutil.Process(pid)
            handle.cpu_percent(None)
            handles[pid] = handle
        except psutil.Error:
            continue
    if sample_seconds > 0:
        time.sleep(sample_seconds)
    result = []
    for pid, handle in sorted(handles.items()):
        try:
            cpu = handle.cpu_percent(None) if sample_seconds > 0 else None
        except psutil.Error:
            continue
        entry = _describe(handle, roles[pid], cpu)
        if not entry:
            continue
        if pid in registry:
            step = registry[pid]
            entry.update({k: step.get(k) for k in ("run_id", "step_key", "group", "partition") if step.get(k)})
        result.append(entry)
    return result
