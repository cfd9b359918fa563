"""The notebook-safe launch API with real processes: moto's S3/SQS server, a real instance, real runs.

A Python subprocess (standing for a notebook kernel or a script) calls ``launch_all_groups``; the run
is executed by the detached local runner, and the caller gets the status and per-group summary. After
the caller exits (normally, or killed mid-run) no step process is left over. Under ``dagster dev`` the
same call goes through the webserver. Missing pieces raise errors that say what to set or start.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import pytest

from fpgrowth_dagster.stack import REPO_ROOT, child_env, prepare_dagster_home, start_dagster_dev, stop_process
from fpgrowth_dagster_tests.conftest import free_port
from fpgrowth_dagster_tests.notebook_support import (
    ProcessTracker,
    processes_mentioning,
    runner_processes,
    wait_until,
    write_small_config,
)

PARTITION = "2011-05-01"
CALLER = """
import json, sys
from fpgrowth_dagster.api import launch_all_groups
handle = launch_all_groups({partition!r}, max_concurrent=2, groups={groups!r}, progress=True)
print("RESULT " + json.dumps({{"run_id": handle.run_id, "status": handle.status, "mode": handle.mode,
                              "groups": handle.group_table().to_dict(orient="records")}}, default=str))
"""


@pytest.fixture
def project(aws_env: str, dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Demo data on moto, the project's dagster.yaml (run queue, no daemon) in DAGSTER_HOME, a 3-group config."""
    from fpgrowth_dagster.demo import upload_demo_data

    config = write_small_config(tmp_path / "fpgrowth.yaml")
    upload_demo_data(aws_env, config)
    prepare_dagster_home(dagster_home, coordinator="queued")
    monkeypatch.setenv("FPGROWTH_CONFIG", str(config))
    monkeypatch.delenv("FPGROWTH_WEBSERVER_URL", raising=False)
    return config


def _start_caller(groups: list[str], log: Path) -> subprocess.Popen:
    script = CALLER.format(partition=PARTITION, groups=groups)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=open(log, "wb"),
                            text=True, cwd=REPO_ROOT)


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the caller printed no result: {stdout!r}"
    return json.loads(lines[-1][len("RESULT "):])


def _materializations(run_id: str) -> dict[str, dict]:
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.get() as instance:
        records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
        run = instance.get_run_by_id(run_id)
    out = {"__run__": {"status": run.status.value, "tags": dict(run.tags)}}
    for record in records:
        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


@pytest.mark.slow
def test_launch_from_a_subprocess_returns_status_summary_and_leaves_no_processes(
        project: Path, dagster_home: Path, tmp_path: Path) -> None:
    tracker = ProcessTracker(dagster_home)
    caller = _start_caller(["france", "usa"], tmp_path / "caller.log")
    stop = threading.Event()

    def track() -> None:
        while not stop.wait(0.2):
            tracker.poll()

    thread = threading.Thread(target=track, daemon=True)
    thread.start()
    try:
        stdout, _ = caller.communicate(timeout=600)
    finally:
        stop.set()
        thread.join()
    assert caller.returncode == 0, (tmp_path / "caller.log").read_text()[-3000:]
    result = _result(stdout)
    assert result["mode"] == "local" and result["status"] == "SUCCESS"

    recorded = _materializations(result["run_id"])
    assert recorded["__run__"]["status"] == "SUCCESS"
    assert recorded["__run__"]["tags"]["dagster/partition"] == PARTITION
    assert recorded["__run__"]["tags"]["fpgrowth/launched_from"] == "python-api"
    groups = {row["group"]: row for row in result["groups"]}
    assert set(groups) == {"france", "usa"}
    assert "fpgrowth/germany" not in recorded  # the run was limited to the groups asked for
    france, usa = recorded["fpgrowth/france"], recorded["fpgrowth/usa"]
    assert groups["france"]["status"] == france["status"] == "mined"
    for key in ("transactions", "items", "itemsets", "rules"):
        assert groups["france"][key] == france[key]
    assert groups["france"]["rules"] > 0
    assert groups["usa"]["status"] == usa["status"] == "skipped"
    assert "min_transactions" in groups["usa"]["reason"]
    # The summary's URIs are the objects the asset wrote.
    s3 = boto3.client("s3")
    bucket, key = groups["france"]["rules_uri"][len("s3://"):].split("/", 1)
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    # The runner and every step process it started were seen while the run went on, and have exited.
    # The executor's forkserver exits just after the runner; re-parented to PID 1, it can stay a zombie
    # (an exited process, holding nothing) on machines whose PID 1 reaps nothing.
    assert any("fpgrowth_dagster.local_runner" in cmd for cmd in tracker.seen.values())
    assert len(tracker.seen) >= 3, tracker.seen
    wait_until(lambda: tracker.still_running(allow_zombies=True) == [], 60, what="the run's processes to exit")
    assert [p for p in processes_mentioning(result["run_id"]) if "(zombie)" not in p] == []


@pytest.mark.slow
def test_a_caller_killed_while_waiting_leaves_the_run_to_finish_without_leftovers(
        project: Path, dagster_home: Path, tmp_path: Path) -> None:
    from dagster import DagsterInstance

    tracker = ProcessTracker(dagster_home)
    caller = _start_caller(["usa"], tmp_path / "caller.log")
    try:
        wait_until(lambda: tracker.poll() or runner_processes(dagster_home), 300, what="the local runner")
        with DagsterInstance.get() as instance:
            run = wait_until(lambda: next(iter(instance.get_runs(limit=1)), None), 300, what="the run")
            run_id = run.run_id
            caller.send_signal(signal.SIGKILL)  # a crashed kernel
            caller.wait(timeout=30)

            def finished():
                tracker.poll()
                current = instance.get_run_by_id(run_id)
                return current if current.is_finished else None

            final = wait_until(finished, 600, interval=0.3, what="the run to finish")
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    assert final.status.value == "SUCCESS"
    # The runner outlived its caller and finished the run; then it exited (re-parented, it may stay a
    # zombie until init reaps it) and left no step process behind.
    wait_until(lambda: tracker.still_running(allow_zombies=True) == [], 120, what="the runner to exit")
    live = [p for p in processes_mentioning(run_id) if "(zombie)" not in p]
    assert live == []


def test_errors_say_what_is_missing(aws_env: str, dagster_home: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from fpgrowth_dagster.api import LaunchError, launch_all_groups

    config = write_small_config(tmp_path / "fpgrowth.yaml")
    monkeypatch.setenv("FPGROWTH_CONFIG", str(config))
    monkeypatch.delenv("FPGROWTH_WEBSERVER_URL", raising=False)

    monkeypatch.delenv("DAGSTER_HOME")
    with pytest.raises(LaunchError) as no_home:
        launch_all_groups(PARTITION, wait=False)
    for needed in ("DAGSTER_HOME", "webserver_url", "FPGROWTH_CONFIG", "AWS_ENDPOINT_URL"):
        assert needed in str(no_home.value)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))

    # The bucket does not exist on this endpoint yet: the error names the bucket and the endpoint.
    with pytest.raises(LaunchError, match=r"fpgrowth-demo.*does not exist at .*AWS_ENDPOINT_URL="):
        launch_all_groups(PARTITION, wait=False)
    nobody = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", nobody)
    with pytest.raises(LaunchError, match=f"cannot reach S3 at {nobody}"):
        launch_all_groups(PARTITION, wait=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    with pytest.raises(LaunchError, match=r"unknown group\(s\) 'atlantis'.*groups: germany, france, usa"):
        launch_all_groups(PARTITION, groups=["atlantis"], wait=False)
    with pytest.raises(LaunchError, match=r"unknown partition '2031-01-01'.*2010-12-01 .. 2011-05-01"):
        launch_all_groups("2031-01-01", wait=False)
    with pytest.raises(LaunchError, match="no Dagster webserver answers"):
        launch_all_groups(PARTITION, webserver_url=nobody, wait=False)

    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        assert instance.get_runs() == []  # nothing was launched by the failed calls


def test_enqueue_jobs_puts_one_message_per_group_on_the_fifo_queue(project: Path) -> None:
    from fpgrowth_dagster.api import enqueue_jobs

    result = enqueue_jobs(PARTITION, ["france", "germany"], request_id="nb-1", wait=False)
    assert result.mode == "enqueue-only"  # no daemon serves the instance
    assert result.job_ids == [f"france:{PARTITION}@nb-1", f"germany:{PARTITION}@nb-1"]
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=result.queue)["QueueUrl"]
    bodies = []
    for _ in range(5):
        reply = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"])
        bodies += [(json.loads(m["Body"]), m["Attributes"]["MessageGroupId"]) for m in reply.get("Messages", [])]
        if len(bodies) >= 2:
            break
    assert sorted(bodies, key=lambda b: b[1]) == [
        ({"version": 1, "group": "france", "partition": PARTITION, "request": "nb-1"}, "france"),
        ({"version": 1, "group": "germany", "partition": PARTITION, "request": "nb-1"}, "germany"),
    ]
    table = result.group_table()
    assert list(table["group"]) == ["france", "germany"]
    assert set(table["run_status"]) == {"not run yet"}


@pytest.mark.slow
def test_under_dagster_dev_the_launch_goes_through_the_webserver(
        project: Path, dagster_home: Path, tmp_path: Path) -> None:
    from fpgrowth_dagster.api import launch_all_groups
    from fpgrowth_dagster.run_watch import InstanceSource

    env = child_env({})
    dev, url = start_dagster_dev(env=env, log_path=tmp_path / "dev.log", cwd=REPO_ROOT)
    try:
        handle = launch_all_groups(PARTITION, groups=["usa"], max_concurrent=1, progress=False, timeout=600)
        assert handle.mode == "webserver" and handle.target.webserver_url == url
        assert handle.status == "SUCCESS", (tmp_path / "dev.log").read_text()[-3000:]
        source = InstanceSource()
        try:
            from_instance = source.summary(handle.run_id, PARTITION, "SUCCESS")
        finally:
            source.close()
        assert handle.summary.groups == from_instance.groups  # GraphQL and the instance agree
        assert handle.summary.groups["usa"].status == "skipped"
        recorded = _materializations(handle.run_id)
        assert recorded["__run__"]["tags"]["dagster/partition"] == PARTITION
        assert "fpgrowth/launched_from" in recorded["__run__"]["tags"]
    finally:
        stop_process(dev)


@pytest.mark.slow
def test_enqueue_jobs_with_wait_runs_the_one_shot_mode_to_the_end(project: Path) -> None:
    from fpgrowth_dagster.api import enqueue_jobs

    result = enqueue_jobs(PARTITION, ["usa"], max_concurrent=1, wait=True, progress=False, timeout=900)
    assert result.mode == "one-shot"
    assert result._process.returncode == 0, result.log_path.read_text()[-3000:]
    assert list(result.runs) == [f"usa:{PARTITION}@{result.request_id}"]
    assert result.succeeded
    table = result.group_table()
    assert table.loc[0, "run_status"] == "SUCCESS" and table.loc[0, "status"] == "skipped"
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=result.queue)["QueueUrl"]
    depth = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert depth["ApproximateNumberOfMessages"] == depth["ApproximateNumberOfMessagesNotVisible"] == "0"


@pytest.mark.slow
def test_cancel_run_stops_a_local_run_midway_and_leaves_no_processes(
        project: Path, dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cancel_run`` on a run of the local runner: the run ends CANCELED, later groups never start."""
    from dagster import DagsterEventType, DagsterInstance

    from fpgrowth_dagster.api import cancel_run, launch_all_groups
    from fpgrowth_dagster_tests.notebook_support import DEMO_CONFIG

    monkeypatch.setenv("FPGROWTH_CONFIG", str(DEMO_CONFIG))  # all 36 groups, one at a time: a run of many seconds
    handle = launch_all_groups(PARTITION, max_concurrent=1, wait=False, progress=False, mode="local")
    assert handle.mode == "local"
    with DagsterInstance.get() as instance:
        def group_done():
            records = instance.get_records_for_run(handle.run_id, of_type=DagsterEventType.STEP_SUCCESS).records
            return any(r.event_log_entry.step_key.startswith("fpgrowth__") for r in records)

        wait_until(group_done, 300, interval=0.2, what="the first group step to succeed")
        assert cancel_run(handle.run_id) == "STARTED"
        handle.wait(timeout=300, progress=False)
        assert handle.status == "CANCELED"
        assert instance.get_run_by_id(handle.run_id).status.value == "CANCELED"
        succeeded = {r.event_log_entry.step_key for r in instance.get_records_for_run(
            handle.run_id, of_type=DagsterEventType.STEP_SUCCESS).records}
    assert 1 <= len([s for s in succeeded if s.startswith("fpgrowth__")]) < 36
    assert "group_comparison" not in succeeded
    assert cancel_run(handle.run_id) == "CANCELED"  # a finished run: nothing to do, its status is said
    wait_until(lambda: [p for p in processes_mentioning(handle.run_id) if "(zombie)" not in p] == [], 60,
               what="the run's processes to exit")


@pytest.mark.slow
def test_with_a_daemon_serving_the_instance_the_launch_is_queued_for_it(
        project: Path, dagster_home: Path, tmp_path: Path) -> None:
    """No webserver, a ``dagster-daemon run``: mode 'auto' submits to the run queue and the daemon runs it."""
    from dagster import DagsterEventType, DagsterInstance

    from fpgrowth_dagster.api import launch_all_groups
    from fpgrowth_dagster.api_support import find_services
    from fpgrowth_dagster.stack import start_process

    daemon_bin = Path(sys.executable).with_name("dagster-daemon")
    daemon = start_process([str(daemon_bin), "run", "-w", str(REPO_ROOT / "workspace.yaml")], env=child_env({}),
                           log_path=tmp_path / "daemon.log", cwd=REPO_ROOT)
    try:
        wait_until(lambda: find_services(dagster_home)["daemon"], 120, what="the daemon")
        handle = launch_all_groups(PARTITION, max_concurrent=2, groups=["france", "usa"], progress=False, timeout=600)
        assert handle.mode == "queue"
        assert handle.status == "SUCCESS", (tmp_path / "daemon.log").read_text()[-3000:]
        with DagsterInstance.get() as instance:
            kinds = [r.dagster_event.event_type for r in instance.all_logs(handle.run_id) if r.dagster_event]
        # Queued by `dagster job launch`, then started by the daemon's run queue.
        assert DagsterEventType.RUN_ENQUEUED in kinds, " ".join(sorted({k.value for k in kinds}))
        assert kinds.index(DagsterEventType.RUN_ENQUEUED) < kinds.index(DagsterEventType.RUN_STARTING)
        groups = {row["group"]: row["status"] for row in handle.group_table().to_dict(orient="records")}
        assert groups == {"france": "mined", "usa": "skipped"}
    finally:
        stop_process(daemon)
