"""Helpers of the notebook-API tests: a small project config over the demo data, and process bookkeeping."""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from fpgrowth_dagster.stack import REPO_ROOT

DEMO_CONFIG = REPO_ROOT / "fpgrowth_dagster" / "defaults" / "demo.yaml"
# Two groups mined in both months, one with (almost) no rows: skipped.
SMALL_GROUPS = ("germany", "france", "usa")
PARTITIONS = ("2011-03-01", "2011-05-01")


def write_small_config(path: Path, groups: tuple[str, ...] = SMALL_GROUPS) -> Path:
    """The demo config cut to ``groups`` (same source, mining settings and bucket)."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["groups"] = [g for g in data["groups"] if g["name"] in groups]
    assert sorted(g["name"] for g in data["groups"]) == sorted(groups)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def runner_processes(home: Path) -> list:
    """Live local-runner processes (and their children) working for the instance at ``home``."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "fpgrowth_dagster.local_runner" not in cmdline:
            continue
        try:
            if Path(process.environ().get("DAGSTER_HOME", "")).resolve() == home.resolve():
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


class ProcessTracker:
    """Remembers every runner process of an instance and all their descendants seen while polling."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.seen: dict[tuple[int, float], str] = {}

    def poll(self) -> None:
        import psutil

        for runner in runner_processes(self.home):
            try:
                for process in [runner, *runner.children(recursive=True)]:
                    self.seen[(process.pid, process.create_time())] = " ".join(process.cmdline())[:200]
            except psutil.NoSuchProcess:
                continue

    def still_running(self, allow_zombies: bool = False) -> list[str]:
        """The remembered processes that are still there (zombies count unless ``allow_zombies``)."""
        import psutil

        left = []
        for (pid, created), cmdline in self.seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() != created:
                    continue
                if allow_zombies and process.status() == psutil.STATUS_ZOMBIE:
                    continue
                left.append(f"{pid} ({process.status()}): {cmdline}")
            except psutil.NoSuchProcess:
                continue
        return left


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line contains ``text`` (e.g. a run id)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if process.pid == os.getpid():
            continue
        cmdline = " ".join(process.info.get("cmdline") or [])
        if text in cmdline:
            found.append(f"{process.pid} ({process.info.get('status')}): {cmdline[:200]}")
    return found


def wait_until(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
