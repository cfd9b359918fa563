"""The launch paths, with real processes: a UI backfill under ``dagster dev``, ``dagster job launch`` from a
shell, and ``make demo`` (``python -m fpgrowth_dagster.demo``).

Everything runs against moto's real S3 server and a real instance in a temporary DAGSTER_HOME
built from the project's dagster.yaml. The first two use a config with three of the demo's groups
(one large, one small, one too small to mine) to keep the runs short on a 2-CPU machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from fpgrowth_dagster.stack import (
    REPO_ROOT,
    child_env,
    graphql,
    log_tail,
    prepare_dagster_home,
    reset_signals,
    start_dagster_dev,
    stop_process,
)

DEMO_CONFIG = REPO_ROOT / "fpgrowth_dagster" / "defaults" / "demo.yaml"
SMALL_GROUPS = ("united_kingdom", "germany", "usa")
BACKFILL_PARTITIONS = ["2011-01-01", "2011-02-01"]
# A partition the backfill does not touch, launched from a shell while the backfill runs.
SHELL_PARTITION = "2011-04-01"

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs { runId status tags { key value } } error { message } }
    ... on Error { message }
  }
}
"""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
IN_PROGRESS = ("STARTING", "STARTED")


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    """The demo config with three groups."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["groups"] = [g for g in data["groups"] if g["name"] in SMALL_GROUPS]
    assert [g["name"] for g in data["groups"]] == list(SMALL_GROUPS)
    path = tmp_path / "fpgrowth.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def stack_env(aws_env: str, dagster_home: Path, small_config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Demo data in the moto bucket; the environment a user's shell would have (AWS, DAGSTER_HOME, FPGROWTH_CONFIG)."""
    from fpgrowth_dagster.demo import upload_demo_data

    upload_demo_data(aws_env, small_config)
    monkeypatch.setenv("FPGROWTH_CONFIG", str(small_config))
    return child_env({"DAGSTER_HOME": str(dagster_home), "FPGROWTH_CONFIG": str(small_config)})


def group_assets() -> list[list[str]]:
    return [["transactions"], *(["fpgrowth", g] for g in SMALL_GROUPS), ["group_comparison"]]


def shell_launch(partition: str, env: dict[str, str], run_id: str) -> subprocess.CompletedProcess:
    """``dagster job launch`` typed into a shell, as the README shows it."""
    tags = json.dumps({"dagster/partition": partition})
    command = (f"{Path(sys.executable).with_name('dagster')} job launch -m fpgrowth_dagster.definitions "
               f"-j all_groups_job --tags '{tags}' --run-id {run_id}")
    return subprocess.run(["bash", "-c", command], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, start_new_session=True)


class RunConcurrencyMonitor(threading.Thread):
    """Polls the instance's runs while a backfill runs; records the most runs in progress at once."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.max_in_progress = 0
        self.max_backfill_in_progress = 0
        self.samples = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

        try:
            with DagsterInstance.get() as instance:
                statuses = [DagsterRunStatus(s) for s in IN_PROGRESS]
                while not self.stop_event.is_set():
                    runs = instance.get_runs(filters=RunsFilter(statuses=statuses))
                    self.max_in_progress = max(self.max_in_progress, len(runs))
                    backfill = [r for r in runs if "dagster/backfill" in r.tags]
                    self.max_backfill_in_progress = max(self.max_backfill_in_progress, len(backfill))
                    self.samples += 1
                    self.stop_event.wait(0.2)
        except BaseException as exc:  # reported by the test
            self.error = exc


def max_overlap_from_event_log(run_ids: list[str]) -> int:
    """The most runs between their RUN_STARTING and their end at once, from the event log timestamps."""
    from dagster import DagsterEventType, DagsterInstance

    edges: list[tuple[float, int]] = []
    ends = {DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED}
    with DagsterInstance.get() as instance:
        for run_id in run_ids:
            start = end = None
            for record in instance.all_logs(run_id):
                event = record.dagster_event
                if event is None:
                    continue
                if event.event_type == DagsterEventType.RUN_STARTING and start is None:
                    start = record.timestamp
                elif event.event_type in ends:
                    end = record.timestamp
            assert start is not None and end is not None, f"run {run_id} has no start/end in its event log"
            edges += [(start, 1), (end, -1)]
    current = peak = 0
    for _, delta in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        current += delta
        peak = max(peak, current)
    return peak


@pytest.mark.slow
def test_ui_backfill_respects_the_run_queue(stack_env: dict[str, str], dagster_home: Path, tmp_path: Path) -> None:
    from dagster import AssetKey, DagsterInstance

    prepare_dagster_home(dagster_home, coordinator="queued")
    with DagsterInstance.get() as instance:
        queue = instance.get_concurrency_config().run_queue_config
        max_runs = queue.max_concurrent_runs
        backfill_limit = next(limit["limit"] for limit in queue.tag_concurrency_limits
                              if limit["key"] == "dagster/backfill")
    proc, url = start_dagster_dev(env=stack_env, log_path=tmp_path / "dagster-dev.log", cwd=REPO_ROOT)
    monitor = RunConcurrencyMonitor()
    try:
        monitor.start()
        data = graphql(url, LAUNCH_BACKFILL, {"params": {
            "partitionNames": BACKFILL_PARTITIONS,
            "assetSelection": [{"path": path} for path in group_assets()],
            "title": "test backfill",
            "tags": [{"key": "fpgrowth/test", "value": "backfill"}],
        }})["launchPartitionBackfill"]
        assert data["__typename"] == "LaunchBackfillSuccess", data
        backfill_id = data["backfillId"]

        # A run launched from a shell meanwhile goes through the same queue (the daemon of dagster dev starts it).
        shell_run_id = str(uuid.uuid4())
        launched = shell_launch(SHELL_PARTITION, stack_env, shell_run_id)
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]

        deadline = time.monotonic() + 600
        while True:
            backfill = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            if backfill["status"] in BACKFILL_DONE:
                break
            assert time.monotonic() < deadline, f"backfill still {backfill['status']}:\n{log_tail(proc)}"
            time.sleep(2)
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 300
            while (shell_run := instance.get_run_by_id(shell_run_id)) is None or not shell_run.is_finished:
                assert time.monotonic() < deadline, f"shell-launched run not finished:\n{log_tail(proc)}"
                time.sleep(1)
    finally:
        monitor.stop_event.set()
        monitor.join(timeout=10)
        stop_process(proc)
    assert monitor.error is None, monitor.error

    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
    runs = backfill["runs"]
    assert runs and all(run["status"] == "SUCCESS" for run in runs), runs
    assert shell_run.status.value == "SUCCESS"
    with DagsterInstance.get() as instance:
        for path in group_assets():
            done = instance.get_materialized_partitions(AssetKey(path))
            assert set(BACKFILL_PARTITIONS) | {SHELL_PARTITION} <= done, (path, sorted(done))
    overlap = max_overlap_from_event_log([run["runId"] for run in runs] + [shell_run_id])
    print(f"\nrun queue: max_concurrent_runs={max_runs}, dagster/backfill limit={backfill_limit}; observed "
          f"at most {monitor.max_in_progress} runs in progress ({monitor.max_backfill_in_progress} of the backfill) "
          f"over {monitor.samples} polls, {overlap} from the event log; {len(runs)} backfill runs + 1 shell run")
    assert monitor.samples > 10
    assert monitor.max_in_progress >= 1
    assert monitor.max_in_progress <= max_runs
    assert overlap <= max_runs
    assert monitor.max_backfill_in_progress <= backfill_limit


@pytest.mark.slow
def test_dagster_job_launch_from_a_shell_completes_a_run(stack_env: dict[str, str], dagster_home: Path) -> None:
    """With the demo's instance (DefaultRunCoordinator), a run launched from a shell starts without a daemon."""
    from dagster import AssetKey, DagsterInstance

    prepare_dagster_home(dagster_home, coordinator="default")
    run_id = str(uuid.uuid4())
    launched = shell_launch("2011-02-01", stack_env, run_id)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    with DagsterInstance.get() as instance:
        deadline = time.monotonic() + 300
        while (run := instance.get_run_by_id(run_id)) is None or not run.is_finished:
            assert time.monotonic() < deadline, f"run {run_id} did not finish: {run and run.status}"
            time.sleep(1)
        assert run.status.value == "SUCCESS"
        assert run.tags["dagster/partition"] == "2011-02-01"
        for path in group_assets():
            assert "2011-02-01" in instance.get_materialized_partitions(AssetKey(path)), path


@pytest.mark.slow
def test_demo_prints_a_summary_of_every_group(tmp_path: Path) -> None:
    """``make demo`` in one window: exit 0, a status for every group of the demo config, S3 URIs, everything stopped."""
    groups = [g["name"] for g in yaml.safe_load(DEMO_CONFIG.read_text())["groups"]]
    marker = uuid.uuid4().hex  # inherited by every process the demo starts
    env = child_env({"DAGSTER_HOME": str(tmp_path / "must_not_be_used"), "FPGROWTH_DEMO_TEST_MARKER": marker})
    env.pop("FPGROWTH_CONFIG", None)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "fpgrowth_dagster.demo", "--partitions", "2011-05-01"],
                            env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                            start_new_session=True)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "all_groups_job, window 2011-05-01" in out and " SUCCESS in " in out
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()
             if line.split() and line.split()[0] in groups and len(line.split()) > 1}
    assert set(lines) == set(groups), sorted(set(groups) - set(lines))
    assert set(lines.values()) <= {"mined", "skipped"}
    assert lines["united_kingdom"] == "mined"
    assert "top rules of united_kingdom" in out
    assert "s3://fpgrowth-demo/results/groups/united_kingdom/2011-05-01/association_rules.parquet" in out
    assert not (tmp_path / "must_not_be_used").exists()
    time.sleep(1)
    assert not _marked_processes(marker)


def _marked_processes(marker: str) -> list[dict]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("FPGROWTH_DEMO_TEST_MARKER") == marker:
                found.append(proc.info)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
def test_make_dev_serves_the_ui_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    """``make dev``: the UI answers with the project's job, the printed steps are there, Ctrl-C stops it all."""
    import signal

    marker = uuid.uuid4().hex
    env = child_env({"FPGROWTH_DEMO_TEST_MARKER": marker})
    env.pop("FPGROWTH_CONFIG", None)
    home = tmp_path / "dev_home"
    proc = subprocess.Popen([sys.executable, "-m", "fpgrowth_dagster.demo", "--dev", "--dagster-home", str(home)],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=reset_signals)  # Ctrl-C works, as in a terminal
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        url = None
        while not any(line.startswith("Press Ctrl-C") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("Dagster UI: "):
                url = line.split()[-1]
        text = "".join(lines)
        assert url and "dagster job launch -m fpgrowth_dagster.definitions -j all_groups_job" in text
        assert "export AWS_ENDPOINT_URL=http://127.0.0.1:" in text and f"export DAGSTER_HOME={home}" in text
        jobs = graphql(url, "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }")
        names = {job["name"] for repo in jobs["repositoriesOrError"]["nodes"] for job in repo["jobs"]}
        assert "all_groups_job" in names
        assert (home / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()
        assert len(_marked_processes(marker)) >= 3  # the demo, moto, dagster dev (and its webserver, daemon, ...)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends to the foreground process
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert "Stopped dagster dev and the S3 endpoint." in out
    time.sleep(1)
    assert not _marked_processes(marker)
