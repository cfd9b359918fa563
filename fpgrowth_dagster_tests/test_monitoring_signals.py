"""Termination records from real signals sent to real processes (plain subprocesses, no Dagster)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fpgrowth_dagster.monitoring.diagnostics import append_record, diagnostics_path, read_records
from fpgrowth_dagster.monitoring.signals import native_available
from fpgrowth_dagster.stack import reset_signals
from fpgrowth_dagster_tests.monitoring_support import wait_for_ready

CHILD = [sys.executable, "-m", "fpgrowth_dagster_tests.monitoring_support"]


def _start(scenario: str, out: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CHILD, scenario, str(out)], env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=reset_signals,  # SIGINT at its default, as in a terminal, even when pytest runs with it ignored
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, output.decode(errors="replace")


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "diagnostics.jsonl").read_text().splitlines()]


def test_native_helpers_are_built() -> None:
    assert native_available(), "fpgrowth_dagster.monitoring._native was not compiled at install time"


def test_sigterm_record_names_the_sender_and_the_step(tmp_path: Path) -> None:
    proc = _start("sigterm", tmp_path)
    pid = wait_for_ready(tmp_path, proc)
    os.kill(pid, signal.SIGTERM)
    code, output = _finish(proc)
    assert code == 3, output
    (record,) = _records(tmp_path)
    assert record["record"] == "fpgrowth.termination"
    assert record["cause"] == "external_signal"
    assert record["signal"] == "SIGTERM" and record["signal_number"] == 15
    sender = record["sender"]
    assert sender["source"] == "siginfo" and sender["code"] == "SI_USER"
    assert sender["pid"] == os.getpid() and sender["uid"] == os.getuid()
    assert sender["relation"] == "parent"
    assert sender["cmdline"] == psutil.Process().cmdline()
    # Dagster's step process has threads that do not block SIGTERM; the kernel may pick any of them.
    assert isinstance(sender["received_by_thread"], int)
    assert record["group"] == "slow_group" and record["partition"] == "2011-01-01"
    assert record["run_id"] == "run-1" and record["step_key"] == "fpgrowth__slow" and record["pid"] == pid
    assert record["step"]["wall_seconds"] > 0 and record["step"]["peak_rss_bytes"] > 0
    assert record["machine"]["cpus"]["available"] >= 1
    assert record["machine"]["memory"]["available_bytes"] > 0
    outcome = json.loads((tmp_path / "outcome.json").read_text())
    assert outcome["terminated"] is True and f"pid {os.getpid()}" in outcome["summary"]


def test_a_short_lived_kill_command_is_still_named(tmp_path: Path) -> None:
    """``kill`` exits at once; until its parent reaps it, the handler still reads its name and parent."""
    proc = _start("sigterm", tmp_path)
    pid = wait_for_ready(tmp_path, proc)
    killer = subprocess.Popen(["/bin/kill", "-TERM", str(pid)])
    try:
        code, output = _finish(proc)
    finally:
        assert killer.wait(timeout=30) == 0
    assert code == 3, output
    (record,) = _records(tmp_path)
    sender = record["sender"]
    assert sender["pid"] == killer.pid and sender["name"] == "kill" and sender["ppid"] == os.getpid()
    # Alive, the whole command line is read; already exited (a zombie), the kernel has dropped it.
    assert sender["cmdline"] in (["/bin/kill", "-TERM", str(pid)], [])
    assert sender["parent_cmdline"] == psutil.Process().cmdline()


def test_a_second_sigterm_during_cleanup_is_recorded_not_raised(tmp_path: Path) -> None:
    proc = _start("sigterm_twice", tmp_path)
    pid = wait_for_ready(tmp_path, proc)
    os.kill(pid, signal.SIGTERM)
    while not (tmp_path / "cleanup").exists():
        assert proc.poll() is None, _finish(proc)[1]
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    code, output = _finish(proc)
    assert code == 3, output
    assert [r["signal"] for r in _records(tmp_path)] == ["SIGTERM", "SIGTERM"]
    assert json.loads((tmp_path / "outcome.json").read_text())["cleanup_finished"] is True


def test_sigint_from_another_process_is_an_interrupt(tmp_path: Path) -> None:
    proc = _start("sigint", tmp_path)
    pid = wait_for_ready(tmp_path, proc)
    os.kill(pid, signal.SIGINT)
    code, output = _finish(proc)
    assert code == 4, output
    (record,) = _records(tmp_path)
    assert record["cause"] == "interrupt" and record["signal"] == "SIGINT"
    assert record["sender"]["pid"] == os.getpid()
    assert record["error"].startswith("KeyboardInterrupt")


def test_sigint_a_step_sends_itself_is_a_run_termination(tmp_path: Path) -> None:
    """Dagster's termination thread interrupts its own step process with SIGINT when a run is terminated."""
    proc = _start("sigint", tmp_path, SELF_INTERRUPT="1")
    pid = wait_for_ready(tmp_path, proc)
    code, output = _finish(proc)
    assert code == 4, output
    (record,) = _records(tmp_path)
    assert record["cause"] == "user_termination"
    assert record["sender"]["pid"] == pid and record["sender"]["relation"] == "self"


def test_records_append_whole_lines_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nested" / "diag.jsonl"
    monkeypatch.setenv("FPGROWTH_DIAGNOSTICS_PATH", str(path))
    assert diagnostics_path() == path
    for index in range(3):
        append_record({"record": "fpgrowth.termination", "index": index, "text": "line\nbreak"})
    assert [r["index"] for r in read_records()] == [0, 1, 2]
    assert [r["index"] for r in read_records(limit=2)] == [1, 2]
    assert len(path.read_text().splitlines()) == 3


def test_default_diagnostics_path_is_under_dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FPGROWTH_DIAGNOSTICS_PATH", raising=False)
    monkeypatch.delenv("FPGROWTH_STATE_DIR", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert diagnostics_path() == tmp_path / "fpgrowth" / "diagnostics.jsonl"
