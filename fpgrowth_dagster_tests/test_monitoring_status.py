"""Machine status, the max_concurrent recommendation, cgroup memory and the ``status`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from shutil import which as shutil_which

import pytest

from fpgrowth_dagster.monitoring.processes import classify_cmdline
from fpgrowth_dagster.monitoring.status import (
    cgroup_memory,
    get_system_resource_status,
    recommend_max_concurrent,
)

GIB = 2**30
CLI = [sys.executable, "-m", "fpgrowth_dagster"]


def test_status_reports_usable_cpus_memory_disk_and_recommendation(tmp_path: Path) -> None:
    status = get_system_resource_status(sample_seconds=0.1, staging_dir=str(tmp_path))
    assert status["cpus"]["affinity"] == len(os.sched_getaffinity(0))
    assert 1 <= status["cpus"]["available"] <= status["cpus"]["affinity"] <= status["cpus"]["host"]
    assert 0 < status["memory"]["available_bytes"] <= status["memory"]["total_bytes"]
    assert status["memory"]["effective_available_bytes"] <= status["memory"]["available_bytes"]
    assert status["disk"][0]["path"] == str(tmp_path) and status["disk"][0]["free_bytes"] > 0
    assert set(status["load_average"]) == {"1m", "5m", "15m"}
    assert 0.0 <= status["cpu_percent"] <= 100.0
    assert 1 <= status["recommendation"]["max_concurrent"] <= status["cpus"]["available"]
    json.dumps(status)  # JSON-able as it is


def test_recommendation_is_bounded_by_cpus_then_memory() -> None:
    by_cpu = recommend_max_concurrent(
        cpus=4, available_memory_bytes=64 * GIB, per_step_memory_bytes=GIB, total_memory_bytes=64 * GIB
    )
    assert by_cpu["max_concurrent"] == 4 and by_cpu["limited_by"] == "cpus"
    # 8 GiB total keeps 0.8 GiB in reserve: (3 GiB - 0.8 GiB) / 1 GiB -> 2 steps fit.
    by_memory = recommend_max_concurrent(
        cpus=8, available_memory_bytes=3 * GIB, per_step_memory_bytes=GIB, total_memory_bytes=8 * GIB
    )
    assert by_memory["max_concurrent"] == 2 and by_memory["limited_by"] == "memory"
    starved = recommend_max_concurrent(
        cpus=8, available_memory_bytes=GIB // 2, per_step_memory_bytes=GIB, total_memory_bytes=8 * GIB
    )
    assert starved["max_concurrent"] == 1


def test_recommendation_uses_observed_step_peaks() -> None:
    peaks = [200 * 2**20] * 19 + [3 * GIB]  # the 95th percentile is the big one
    rec = recommend_max_concurrent(
        cpus=16, available_memory_bytes=12 * GIB, total_memory_bytes=16 * GIB, step_peaks=peaks
    )
    assert rec["per_step_memory_bytes"] == 3 * GIB
    assert "95th percentile" in rec["per_step_memory_basis"]
    assert rec["max_concurrent"] == (12 * GIB - int(1.6 * GIB)) // (3 * GIB)


def _fake_cgroup(root: Path, lines: str) -> Path:
    proc = root / "proc_self_cgroup"
    proc.write_text(lines)
    return proc


def test_cgroup_memory_v2_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    leaf = tmp_path / "kubepods" / "pod1"
    leaf.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    (leaf / "memory.max").write_text("max\n")
    (leaf / "memory.current").write_text("1000\n")
    (tmp_path / "kubepods" / "memory.max").write_text(f"{2 * GIB}\n")
    (tmp_path / "kubepods" / "memory.current").write_text(f"{GIB}\n")
    proc = _fake_cgroup(tmp_path, "0::/kubepods/pod1\n")
    assert cgroup_memory(tmp_path, proc) == {"limit_bytes": 2 * GIB, "usage_bytes": GIB}


def test_cgroup_memory_v1_unlimited_and_limited(tmp_path: Path) -> None:
    group = tmp_path / "memory" / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    proc = _fake_cgroup(tmp_path, "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    assert cgroup_memory(tmp_path, proc)["limit_bytes"] is None
    (group / "memory.limit_in_bytes").write_text(f"{GIB}\n")
    (group / "memory.usage_in_bytes").write_text("12345\n")
    assert cgroup_memory(tmp_path, proc) == {"limit_bytes": GIB, "usage_bytes": 12345}


@pytest.mark.parametrize(
    ("cmdline", "role"),
    [
        (["/venv/bin/python", "/venv/bin/dagster-daemon", "run"], "daemon"),
        (["/venv/bin/python", "-m", "dagster_webserver", "-h", "127.0.0.1"], "webserver"),
        (["python", "-m", "dagster", "api", "grpc", "--lazy-load-user-code"], "code server"),
        (["python", "-m", "dagster", "api", "execute_run", "{}"], "run worker"),
        (["python", "-m", "dagster", "api", "execute_step", "{}"], "step worker"),
        (["/venv/bin/python", "/venv/bin/dagster", "dev", "-m", "x"], "dagster dev"),
        (["/venv/bin/python", "/venv/bin/dagster", "job", "launch", "-j", "all_groups_job"], "dagster cli"),
        (["python", "-c", "from multiprocessing.forkserver import main; main(7, 8)"], None),
        (["bash"], None),
        ([], None),
    ],
)
def test_dagster_roles_from_command_lines(cmdline: list[str], role: str | None) -> None:
    assert classify_cmdline(cmdline) == role


def test_status_command_prints_json_and_text(tmp_path: Path) -> None:
    env = {**os.environ, "FPGROWTH_STATE_DIR": str(tmp_path)}
    out = subprocess.run(
        [*CLI, "status", "--json", "--sample-seconds", "0.1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    status = json.loads(out)
    assert status["cpus"]["available"] >= 1
    assert status["diagnostics_path"] == str(tmp_path / "diagnostics.jsonl")
    assert status["recent_terminations"] == []
    text = subprocess.run(
        [*CLI, "status", "--sample-seconds", "0.1"], capture_output=True, text=True, env=env, check=True, timeout=120
    ).stdout
    assert "usable" in text and "Recommended max_concurrent" in text


def test_status_cpu_count_respects_taskset_affinity(tmp_path: Path) -> None:
    env = {**os.environ, "FPGROWTH_STATE_DIR": str(tmp_path)}
    first_cpu = str(min(os.sched_getaffinity(0)))
    assert shutil_which("taskset"), "taskset (util-linux) is needed to restrict the affinity"
    out = subprocess.run(
        ["taskset", "-c", first_cpu, *CLI, "status", "--json", "--sample-seconds", "0.1"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    ).stdout
    status = json.loads(out)
    assert status["cpus"]["affinity"] == 1
    assert status["cpus"]["available"] == 1
    assert status["recommendation"]["max_concurrent"] == 1
