"""Helpers for the SQS tests: a tiny synthetic project on moto, a real daemon, fault injection, run counting."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterRunStatus, RunsFilter
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator

REPO_ROOT = Path(__file__).resolve().parents[1]
BUCKET = "fpgrowth-sqs-test"
RAW_KEY = "raw/synthetic.csv"
MONTHS = ["2011-01-01", "2011-02-01", "2011-03-01", "2011-04-01", "2011-05-01"]
ITEMS = ["bread", "milk", "eggs", "jam", "tea"]


def synthetic_csv(countries: Sequence[str], months: Sequence[str] = MONTHS, per_month: int = 6) -> bytes:
    """Long-format rows: ``per_month`` small baskets per country and month, deterministic."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["InvoiceNo", "StockCode", "InvoiceDate", "Country"])
    invoice = 0
    for month in months:
        for c_index, country in enumerate(countries):
            for t in range(per_month):
                invoice += 1
                basket = [ITEMS[(c_index + t + k) % len(ITEMS)] for k in range(1 + t % 3)]
                for item in dict.fromkeys(basket):
                    writer.writerow([f"I{invoice}", item, f"{month[:8]}{1 + t:02d} 10:00:00", country])
    return out.getvalue().encode()


def write_project(directory: Path, s3_client: Any, *, groups: int = 10, sqs: Mapping[str, Any] | None = None,
                  extra_groups: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Upload synthetic data to moto and write a project config with ``groups`` tiny groups ``g0..``."""
    countries = [f"C{i}" for i in range(groups)]
    s3_client.create_bucket(Bucket=BUCKET)
    s3_client.put_object(Bucket=BUCKET, Key=RAW_KEY, Body=synthetic_csv(countries))
    data = {
        "source": {"uri": f"s3://{BUCKET}/{RAW_KEY}", "transaction_column": "InvoiceNo",
                   "item_column": "StockCode", "time_column": "InvoiceDate"},
        "partitions": {"type": "monthly", "start": MONTHS[0], "end": "2011-06-01"},
        "mining": {"min_support": 0.3, "min_count": 2, "max_len": 2, "min_transactions": 2,
                   "metric": "confidence", "min_threshold": 0.5},
        "output": {"bucket": BUCKET, "prefix": "results"},
        "groups": [{"name": f"g{i}", "where": {"Country": country}} for i, country in enumerate(countries)]
                  + [dict(g) for g in extra_groups],
        "sqs": dict(sqs or {}),
    }
    path = directory / "fpgrowth.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# Fast settings for tests: ticks as often as the daemon allows, short waits and timeouts.
FAST_SQS = {"minimum_interval_seconds": 1, "wait_time_seconds": 1, "tick_budget_seconds": 10,
            "visibility_timeout_seconds": 40, "invalid_message_retry_seconds": 1, "max_receive_count": 3,
            "running": True}


# Dagster's launcher that executes each run inside the process that dequeues it (here: the daemon).
IN_DAEMON_LAUNCHER = {"module": "dagster._core.launcher.sync_in_memory_run_launcher",
                      "class": "SyncInMemoryRunLauncher"}


def write_instance(home: Path, *, max_concurrent_runs: int = 4, faulty: bool = False,
                   runs_in_daemon: bool = False) -> Path:
    """dagster.yaml with the queued run coordinator (optionally the fault-injecting one) and a run queue.

    ``runs_in_daemon``: the daemon's run queue executes each run in its own process (one import of the code
    location for all runs) instead of starting a run worker per run (3-20 s each on a busy 2-CPU machine).
    """
    home.mkdir(parents=True, exist_ok=True)
    coordinator = {
        "module": __name__ if faulty else "dagster.core.run_coordinator",
        "class": "FaultInjectingRunCoordinator" if faulty else "QueuedRunCoordinator",
        "config": {"max_concurrent_runs": max_concurrent_runs, "dequeue_interval_seconds": 1},
    }
    settings: dict[str, Any] = {"run_coordinator": coordinator, "telemetry": {"enabled": False},
                                "code_servers": {"local_startup_timeout": 180}}
    if runs_in_daemon:
        settings["run_launcher"] = IN_DAEMON_LAUNCHER
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return home


class FaultInjectingRunCoordinator(QueuedRunCoordinator):
    """The queued run coordinator, plus armed faults that SIGKILL the daemon around a run's submission.

    ``before_submit``: the run exists (NOT_STARTED), later run requests of the same tick do not.
    ``after_submit``: the run is queued, the tick has not finished. Run workers (children of the
    code server) are left running, as they would be when only the daemon host dies.
    """

    def submit_run(self, context: Any) -> Any:
        _daemon_fault("before_submit")
        run = super().submit_run(context)
        _daemon_fault("after_submit")
        return run


def _daemon_fault(name: str) -> None:
    from fpgrowth_dagster.sensors import consume_fault

    if not consume_fault(name):
        return
    import psutil

    for child in psutil.Process().children():
        try:
            child.kill()  # the code server; its own children (run workers) live on
        except psutil.NoSuchProcess:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- the daemon


class Daemons:
    """Starts ``dagster-daemon run`` (each in its own session) and stops every process group it started."""

    def __init__(self, work: Path, env: Mapping[str, str]) -> None:
        from fpgrowth_dagster.cli.sqs import write_workspace

        self.work = work
        self.env = dict(env)
        self.workspace = write_workspace(work)
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        from fpgrowth_dagster.cli.sqs import dagster_bin
        from fpgrowth_dagster.stack import start_process

        log = self.work / f"daemon-{len(self.procs)}.log"
        proc = start_process([dagster_bin("dagster-daemon"), "run", "-w", str(self.workspace)], env=self.env,
                             log_path=log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        from fpgrowth_dagster.stack import stop_process

        for proc in self.procs:
            stop_process(proc, timeout=15)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.work.glob("daemon-*.log")))


def daemon_env(config_path: Path, home: Path, **extra: str) -> dict[str, str]:
    """The test's AWS environment plus the project and instance; gRPC timeouts sized for a busy 2-CPU machine
    (Dagster fails a run whose worker takes over 60 s to start, which happens when tests share the CPUs)."""
    env = {**os.environ, "FPGROWTH_CONFIG": str(config_path), "DAGSTER_HOME": str(home),
           "DAGSTER_GRPC_TIMEOUT_SECONDS": "300", "DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS": "300", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, daemon: subprocess.Popen | None = None,
               interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if daemon is not None and daemon.poll() is not None:
            raise AssertionError(f"the daemon exited (code {daemon.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- observing runs and queues


def sqs_runs(instance: Any) -> list[Any]:
    from fpgrowth_dagster.sqs import SOURCE_SQS, SOURCE_TAG

    return list(instance.get_runs(filters=RunsFilter(tags={SOURCE_TAG: SOURCE_SQS})))


def runs_by_job(instance: Any) -> dict[str, list[Any]]:
    from fpgrowth_dagster.sqs import JOB_ID_TAG

    out: dict[str, list[Any]] = {}
    for run in sqs_runs(instance):
        out.setdefault(run.tags[JOB_ID_TAG], []).append(run)
    return out


class ActiveRunWatcher:
    """Polls the instance for the sensor's runs that are queued or in progress; keeps the maximum seen."""

    def __init__(self, instance: Any, queue: str, interval: float = 0.3) -> None:
        self.instance = instance
        self.queue = queue
        self.interval = interval
        self.maximum = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from fpgrowth_dagster.sensors import active_sqs_runs

        while not self._stop.is_set():
            self.maximum = max(self.maximum, len(active_sqs_runs(self.instance, self.queue)))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> ActiveRunWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def sensor_log(instance: Any) -> list[tuple[str, str]]:
    """(level, message) of every line the sqs_jobs sensor logged, from the tick logs the instance keeps (the UI's)."""
    from dagster._core.definitions.instigation_logger import get_instigation_log_records
    from dagster._core.scheduler.instigation import InstigatorType

    from fpgrowth_dagster.sensors import SENSOR_NAME

    lines = []
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name != SENSOR_NAME:
            continue
        for tick in reversed(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=10_000)):
            for record in get_instigation_log_records(instance, tick.log_key) if tick.log_key else []:
                lines.append((record.get("levelname", ""), str(record.get("msg", ""))))
    return lines


def all_finished(instance: Any, job_ids: Sequence[str]) -> bool:
    by_job = runs_by_job(instance)
    return all(job_id in by_job and all(r.is_finished for r in by_job[job_id]) for job_id in job_ids)


def total_depth(client: Any, url: str) -> int:
    from fpgrowth_dagster.sqs import queue_depth

    return sum(queue_depth(client, url).values())


def succeeded(run: Any) -> bool:
    return run.status == DagsterRunStatus.SUCCESS


def run_cli(*args: str, env: Mapping[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fpgrowth_dagster", *args], env=dict(env), capture_output=True,
                          text=True, timeout=timeout)
