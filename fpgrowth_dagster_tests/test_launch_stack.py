"""The process plumbing of ``make demo`` / ``make dev``: signals, sessions, stopping whole process groups,
the Dagster home written from the project's dagster.yaml, and the upload of the demo data to real S3 (moto)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fpgrowth_dagster.stack import prepare_dagster_home, start_moto, start_process, stop_process

SHOW_SIGNALS = (
    "import os, signal, sys\n"
    "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_IGN,"
    " os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid(), flush=True)\n"
)


def test_children_get_default_signals_and_their_own_session_even_if_the_parent_ignores_them(tmp_path: Path) -> None:
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        proc = start_process([sys.executable, "-c", SHOW_SIGNALS], env=dict(os.environ), log_path=tmp_path / "log")
        proc.wait(timeout=30)
        # Control: what a plain Popen child of this parent inherits.
        plain = subprocess.run([sys.executable, "-c", SHOW_SIGNALS], capture_output=True, text=True, timeout=30)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    stop_process(proc)
    assert (tmp_path / "log").read_text().split() == ["False", "False", "True", "True"]
    assert plain.stdout.split()[:2] == ["True", "True"]


def test_stop_process_ends_the_whole_group_including_grandchildren(tmp_path: Path) -> None:
    # The child starts a grandchild that ignores nothing and sleeps; both must be gone after stop_process.
    script = (
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(g.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = start_process([sys.executable, "-c", script], env=dict(os.environ), log_path=tmp_path / "log")
    deadline = time.monotonic() + 30
    while not (tmp_path / "log").read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    grandchild = int((tmp_path / "log").read_text().split()[0])
    stop_process(proc, timeout=10)
    assert proc.returncode == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


def test_prepare_dagster_home_keeps_the_project_settings_and_swaps_only_the_coordinator(tmp_path: Path) -> None:
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import DefaultRunCoordinator, QueuedRunCoordinator

    for coordinator, expected in (("queued", QueuedRunCoordinator), ("default", DefaultRunCoordinator)):
        home = prepare_dagster_home(tmp_path / coordinator, coordinator=coordinator)
        with DagsterInstance.from_config(str(home)) as instance:
            assert isinstance(instance.run_coordinator, expected)
            assert instance.run_retries_retry_on_asset_or_op_failure is False
            assert instance.run_monitoring_enabled
            assert instance.get_settings("telemetry") == {"enabled": False}
    with pytest.raises(ValueError, match="coordinator"):
        prepare_dagster_home(tmp_path / "x", coordinator="k8s")


def test_upload_demo_data_puts_the_shipped_file_under_the_source_prefix(tmp_path: Path, data_dir: Path) -> None:
    import boto3

    from fpgrowth_dagster.config import DEMO_CONFIG_PATH, load_project_config
    from fpgrowth_dagster.demo import upload_demo_data

    proc, endpoint = start_moto(tmp_path / "moto.log")
    try:
        uris = upload_demo_data(endpoint, DEMO_CONFIG_PATH)
        config = load_project_config(DEMO_CONFIG_PATH)
        shipped = sorted(p.name for p in (data_dir / "online_retail").iterdir() if p.name.endswith(".csv.gz"))
        assert uris == [f"{config.source.uri}{name}" for name in shipped]
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        body = client.get_object(Bucket=config.source.bucket, Key=f"{config.source.key}{shipped[0]}")["Body"].read()
        assert body == (data_dir / "online_retail" / shipped[0]).read_bytes()
        assert config.output.bucket in {b["Name"] for b in client.list_buckets()["Buckets"]}
    finally:
        stop_process(proc)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)
