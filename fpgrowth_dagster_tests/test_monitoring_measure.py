"""Per-step figures: wall and CPU time, peak RSS, available memory, the JSON log line and the history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fpgrowth_dagster.monitoring.measure import measure_step
from fpgrowth_dagster.monitoring.status import recent_step_peaks, recommend_max_concurrent

MIB = 2**20


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FPGROWTH_STATE_DIR", str(tmp_path))
    return tmp_path


def test_measure_step_reports_peak_memory_cpu_and_one_json_line(state_dir: Path) -> None:
    lines: list[str] = []
    with measure_step("france", "2011-02-01", log=lines.append) as step:
        block = bytearray(300 * MIB)
        block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
        total = sum(i * i for i in range(300_000))
        during = step.metadata()
        del block
    assert total > 0
    figures = step.snapshot()
    assert figures["peak_rss_bytes"] >= figures["rss_start_bytes"] + 250 * MIB
    assert figures["cpu_seconds"] > 0 and figures["wall_seconds"] > 0
    assert figures["available_memory_start_bytes"] > 0 and figures["available_memory_end_bytes"] > 0
    assert during["peak_rss_mib"] >= 250 and "group" not in during  # metadata: numbers only
    (line,) = lines
    logged = json.loads(line)
    assert logged["event"] == "fpgrowth.step_resources"
    assert logged["group"] == "france" and logged["partition"] == "2011-02-01" and logged["status"] == "succeeded"
    assert logged["peak_rss_bytes"] == figures["peak_rss_bytes"]
    assert recent_step_peaks(path=state_dir / "step_resources.jsonl") == [figures["peak_rss_bytes"]]


def test_failed_step_logs_its_figures_but_is_not_history(state_dir: Path) -> None:
    lines: list[str] = []
    with pytest.raises(ValueError), measure_step("bad", None, log=lines.append):
        raise ValueError("bad data")
    assert json.loads(lines[0])["status"] == "ValueError"
    assert not (state_dir / "step_resources.jsonl").exists()


def test_recommendation_reads_the_measured_history(state_dir: Path) -> None:
    for _ in range(3):
        with measure_step("g", None, log=lambda line: None):
            pass
    rec = recommend_max_concurrent(cpus=2)
    assert "last 3 measured group steps" in rec["per_step_memory_basis"]
