"""Monitoring in real runs of all_groups_job: moto S3, a real instance, the multiprocess executor, real signals.

* SIGTERM sent from outside to a running group step: the run fails, the termination record (signal,
  sender, figures) is in the event log and in the diagnostics file, nothing of the group is in S3,
  and the other groups complete.
* Groups crafted to explode: one refused from its itemset count before mining, one stopped by the
  memory guard while mining; both fail with the clear error, the other groups complete.
* Every materialisation carries the step's resource figures.
"""

from __future__ import annotations

import json
import re
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from dagster import DagsterEventType, DagsterRunStatus

from fpgrowth_dagster.config import CONFIG_ENV_VAR, load_project_config
from fpgrowth_dagster.monitoring.guard import BYTES_PER_ITEMSET
from fpgrowth_dagster.monitoring.processes import registered_steps
from fpgrowth_dagster.s3io import ResultLayout, list_keys
from fpgrowth_dagster_tests.dagster_helpers import (
    BUCKET,
    make_config_data,
    run_all_groups_job,
    step_intervals,
    upload_online_retail,
    write_config,
)

PARTITION = "2011-01-01"
# France in January 2011 at absolute support 2: 41,264 itemsets (the estimate lets them through), but
# every split of every itemset passes min_threshold 0, so the association rules grow by about 100 MB
# a second until stopped: a group that keeps mining, and whose memory is only seen while it runs.
GROWING_GROUP = {
    "where": {"Country": "France"},
    "mining": {
        "min_support": 0.001,
        "min_count": 2,
        "min_transactions": 1,
        "max_itemsets": None,
        "max_len": None,
        "min_threshold": 0.0,
        "max_rules": None,
    },
}
NORMAL_GROUPS = [
    {"name": "germany", "where": {"Country": "Germany"}},
    {"name": "spain", "where": {"Country": "Spain"}},  # 8 invoices: skipped as too small, a success
]


def growing_group(name: str, max_memory_mb: int) -> dict[str, Any]:
    return {
        "name": name,
        "where": GROWING_GROUP["where"],
        "mining": {**GROWING_GROUP["mining"], "max_memory_mb": max_memory_mb},
    }


@pytest.fixture
def project(aws_env: str, dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Online Retail on moto, diagnostics and state files under tmp_path; returns (client, use, diagnostics path)."""
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    diagnostics = tmp_path / "diagnostics.jsonl"
    monkeypatch.setenv("FPGROWTH_DIAGNOSTICS_PATH", str(diagnostics))
    monkeypatch.setenv("FPGROWTH_STATE_DIR", str(tmp_path / "state"))
    client = boto3.client("s3")
    upload_online_retail(client)

    def use(groups: list[dict[str, Any]]):
        path = write_config(tmp_path / "fpgrowth.yaml", make_config_data(groups=groups))
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        return load_project_config(path)

    return client, use, diagnostics


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _step_outcomes(instance: Any, run_id: str) -> dict[str, str]:
    return {step: outcome for step, _, _, outcome in step_intervals(instance, run_id)}


def _failure_metadata(instance: Any, run_id: str, step_key: str) -> tuple[str, dict[str, Any]]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.STEP_FAILURE).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event.step_key == step_key:
            data = event.event_specific_data
            user = data.user_failure_data
            metadata = {k: getattr(v, "value", v) for k, v in (user.metadata if user else {}).items()}
            return (user.description if user else "") or data.error.message, metadata
    raise AssertionError(f"no STEP_FAILURE for {step_key}")


def _observations(instance: Any, run_id: str) -> list[dict[str, Any]]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_OBSERVATION).records
    out = []
    for record in records:
        observation = record.event_log_entry.dagster_event.event_specific_data.asset_observation
        out.append(
            {
                "asset": observation.asset_key.to_user_string(),
                "partition": observation.partition,
                **{k: getattr(v, "value", v) for k, v in observation.metadata.items()},
            }
        )
    return out


def _materialization_metadata(instance: Any, run_id: str) -> dict[str, dict[str, Any]]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    out = {}
    for record in records:
        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


class BackgroundRun(threading.Thread):
    """all_groups_job executed for real while the test watches and signals its steps."""

    def __init__(self, partition: str) -> None:
        super().__init__(daemon=True)
        self.partition = partition
        self.instance: Any = None
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.instance, self.result = run_all_groups_job(
                self.partition, run_config={"execution": {"config": {"max_concurrent": 2}}}
            )
        except BaseException as exc:  # reported by the test
            self.error = exc


def wait_for_registered_step(group: str, *, timeout: float = 300.0, alive: Any = None) -> dict[str, Any]:
    """The registration of the running step of ``group`` (written once its termination watch is on)."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in registered_steps().values():
            if entry.get("group") == group:
                return entry
        assert alive is None or alive(), "the run ended before the step of the group started"
        assert time.monotonic() < deadline, f"no running step of group {group!r} within {timeout:.0f} s"
        time.sleep(0.1)


def wait_until_mining(pid: int, *, grown_bytes: int = 60 * 2**20, timeout: float = 180.0) -> None:
    """Wait until the step process's RSS has grown: mlxtend is enumerating itemsets."""
    process = psutil.Process(pid)
    start = process.memory_info().rss
    deadline = time.monotonic() + timeout
    while process.memory_info().rss < start + grown_bytes:
        assert time.monotonic() < deadline, "the slow group did not start mining"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_to_a_group_step_is_recorded_and_fails_only_that_group(project) -> None:
    client, use, diagnostics = project
    config = use([growing_group("france_rules", 16000), *NORMAL_GROUPS])
    layout = ResultLayout(config.output)
    run = BackgroundRun(PARTITION)
    run.start()
    try:
        entry = wait_for_registered_step("france_rules", alive=run.is_alive)
        pid = int(entry["pid"])
        step = psutil.Process(pid)
        # A step process of the multiprocess executor: a forkserver child below this (run worker) process.
        assert "multiprocessing" in " ".join(step.cmdline())
        assert os.getpid() in {p.pid for p in step.parents()}
        assert entry["step_key"] == "fpgrowth__france_rules" and entry["partition"] == PARTITION
        wait_until_mining(pid)
        os.kill(pid, signal.SIGTERM)
        run.join(timeout=600)
    finally:
        if run.is_alive():
            for entry in registered_steps().values():
                os.kill(int(entry["pid"]), signal.SIGKILL)
            run.join(timeout=60)
    assert run.error is None, run.error
    instance, result = run.instance, run.result
    assert result.status == DagsterRunStatus.FAILURE
    run_id = result.run_id

    outcomes = _step_outcomes(instance, run_id)
    assert outcomes["fpgrowth__france_rules"] == "failure"
    assert outcomes["fpgrowth__germany"] == "success" and outcomes["fpgrowth__spain"] == "success"

    (record,) = _records(diagnostics)
    assert record["cause"] == "external_signal" and record["signal"] == "SIGTERM"
    assert record["sender"]["pid"] == os.getpid() and record["sender"]["code"] == "SI_USER"
    assert record["sender"]["cmdline"] == psutil.Process().cmdline()
    assert record["sender"]["relation"] == "ancestor"
    assert (record["group"], record["partition"], record["run_id"]) == ("france_rules", PARTITION, run_id)
    assert record["step_key"] == "fpgrowth__france_rules" and record["pid"] == pid
    assert record["step"]["peak_rss_bytes"] >= record["step"]["rss_start_bytes"] + 60 * 2**20
    assert record["step"]["cpu_seconds"] > 0
    assert record["machine"]["cpus"]["available"] >= 1 and record["machine"]["memory"]["available_bytes"] > 0

    description, metadata = _failure_metadata(instance, run_id, "fpgrowth__france_rules")
    assert f"SIGTERM from pid {os.getpid()}" in description
    assert metadata["cause"] == "external_signal" and metadata["sender_pid"] == os.getpid()
    assert metadata["record"]["sender"]["cmdline"] == record["sender"]["cmdline"]
    observed = [o for o in _observations(instance, run_id) if o["asset"] == "fpgrowth/france_rules"]
    assert observed and observed[0]["cause"] == "external_signal" and observed[0]["partition"] == PARTITION
    logs = [r.user_message for r in instance.all_logs(run_id) if "fpgrowth termination record" in r.user_message]
    assert logs and json.loads(logs[0].split(": ", 1)[1])["sender"]["pid"] == os.getpid()

    # Nothing of the terminated group in S3, not even staged; the other groups' results are there.
    assert list_keys(client, BUCKET, layout.group_prefix("france_rules", PARTITION)) == []
    assert list_keys(client, BUCKET, layout.staging_prefix()) == []
    assert layout.itemsets_key("germany", PARTITION) in list_keys(
        client, BUCKET, layout.group_prefix("germany", PARTITION)
    )
    assert registered_steps() == {}


@pytest.mark.slow
def test_exploding_groups_stop_with_the_memory_guard_and_others_complete(project) -> None:
    client, use, diagnostics = project
    config = use(
        [
            # Absolute support 2 on Spain's 8 invoices: about 2.1e20 itemsets, refused before mining.
            {
                "name": "spain_refused",
                "where": {"Country": "Spain"},
                "mining": {
                    "min_support": 0.001,
                    "min_count": 2,
                    "min_transactions": 1,
                    "max_itemsets": None,
                    "max_len": None,
                },
            },
            # Passes the estimate, then grows without end while mining: stopped at its budget.
            growing_group("france_rules", 600),
            *NORMAL_GROUPS,
        ]
    )
    layout = ResultLayout(config.output)
    instance, result = run_all_groups_job(PARTITION, run_config={"execution": {"config": {"max_concurrent": 2}}})
    assert result.status == DagsterRunStatus.FAILURE
    run_id = result.run_id
    outcomes = _step_outcomes(instance, run_id)
    assert outcomes["fpgrowth__spain_refused"] == "failure" and outcomes["fpgrowth__france_rules"] == "failure"
    assert outcomes["fpgrowth__germany"] == "success" and outcomes["fpgrowth__spain"] == "success"

    refused, refused_meta = _failure_metadata(instance, run_id, "fpgrowth__spain_refused")
    assert f"group 'spain_refused' (partition {PARTITION}): mining would need about" in refused
    # All 2.1e20 itemsets, or (when its pairs are a fair share of a smaller machine's budget) a lower bound.
    counted = re.search(r"8 transactions and 270 items give (at least )?([\d,]+) frequent itemsets\. Not mined\.", refused)
    budget_mib = re.search(r"over its memory budget of ([\d,]+) MiB", refused)
    assert counted and budget_mib, refused
    number = int(counted.group(2).replace(",", ""))
    assert number * BYTES_PER_ITEMSET > int(budget_mib.group(1).replace(",", "")) * 2**20
    assert number == 211_047_001_025_516_974_132 or (counted.group(1) and number < 211_047_001_025_516_974_132)
    for advice in ("min_support (now 0.001)", "min_count (now 2)", "max_len", "target", "max_memory_mb"):
        assert advice in refused
    assert refused_meta["cause"] == "memory_guard"
    assert refused_meta["record"]["memory_guard"]["phase"] == "estimate"

    growing, growing_meta = _failure_metadata(instance, run_id, "fpgrowth__france_rules")
    assert f"group 'france_rules' (partition {PARTITION}): stopped by the memory guard" in growing
    assert "over its budget of 600 MiB" in growing and "max_memory_mb (now 600)" in growing
    guard = growing_meta["record"]["memory_guard"]
    assert guard["phase"] == "mining" and guard["observed_bytes"] > 600 * 2**20

    causes = sorted((r["group"], r["cause"], r["memory_guard"]["phase"]) for r in _records(diagnostics))
    assert causes == [("france_rules", "memory_guard", "mining"), ("spain_refused", "memory_guard", "estimate")]
    for group in ("spain_refused", "france_rules"):
        assert list_keys(client, BUCKET, layout.group_prefix(group, PARTITION)) == []

    # The groups that completed carry the step's resource figures.
    mats = _materialization_metadata(instance, run_id)
    for group in ("germany", "spain"):
        meta = mats[f"fpgrowth/{group}"]
        assert meta["step_peak_rss_bytes"] >= meta["step_rss_start_bytes"] > 0
        assert meta["step_wall_seconds"] > 0 and meta["step_cpu_seconds"] > 0
        assert meta["step_available_memory_start_bytes"] > 0 and meta["step_available_memory_end_bytes"] > 0
        assert meta["step_memory_estimate"]["estimated_peak_bytes"] > 0  # what the guard checked before mining
    lines = [r.user_message for r in instance.all_logs(run_id) if r.user_message.startswith('{"event": "fpgrowth.step')]
    logged = {json.loads(line)["group"]: json.loads(line) for line in lines}
    assert logged["germany"]["status"] == "succeeded" and logged["france_rules"]["status"] == "Failure"
