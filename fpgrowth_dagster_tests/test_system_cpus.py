"""available_cpus(): affinity and cgroup quota (v1 and v2), on real files laid out like /sys/fs/cgroup."""

from __future__ import annotations

import os
from pathlib import Path

from fpgrowth_dagster.system import affinity_cpus, available_cpus, cgroup_cpu_limit, parse_cfs, parse_cpu_max


def test_parse_cpu_max():
    assert parse_cpu_max("max 100000\n") is None
    assert parse_cpu_max("150000 100000\n") == 1.5
    assert parse_cpu_max("50000 100000") == 0.5


def test_parse_cfs():
    assert parse_cfs("-1\n", "100000\n") is None
    assert parse_cfs("200000\n", "100000\n") == 2.0


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_takes_tightest_ancestor(tmp_path: Path):
    root = tmp_path / "cgroup"
    _write(tmp_path / "proc_cgroup", "0::/kubepods/pod1/container\n")
    _write(root / "kubepods" / "cpu.max", "300000 100000\n")
    _write(root / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")
    _write(root / "kubepods" / "pod1" / "container" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, tmp_path / "proc_cgroup") == 1.5
    assert available_cpus(root, tmp_path / "proc_cgroup") == min(affinity_cpus(), 2)


def test_cgroup_v1_cfs_quota(tmp_path: Path):
    root = tmp_path / "cgroup"
    _write(tmp_path / "proc_cgroup", "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "100000\n")
    _write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, tmp_path / "proc_cgroup") == 1.0
    assert available_cpus(root, tmp_path / "proc_cgroup") == 1


def test_no_quota_means_affinity(tmp_path: Path):
    root = tmp_path / "cgroup"
    _write(tmp_path / "proc_cgroup", "0::/user.slice\n")
    _write(root / "user.slice" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, tmp_path / "proc_cgroup") is None
    assert available_cpus(root, tmp_path / "proc_cgroup") == affinity_cpus()


def test_missing_files_mean_no_limit(tmp_path: Path):
    assert cgroup_cpu_limit(tmp_path / "none", tmp_path / "no_proc_cgroup") is None


def test_affinity_restriction_is_seen():
    """A real affinity change (what taskset does) lowers available_cpus()."""
    original = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(original)})
        assert affinity_cpus() == 1
        assert available_cpus() == 1
    finally:
        os.sched_setaffinity(0, original)
