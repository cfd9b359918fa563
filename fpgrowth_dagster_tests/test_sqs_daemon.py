"""The SQS sensor under a real ``dagster-daemon run``: exactly one run per job, bounded concurrency, poison messages.

Each test writes a tiny synthetic project to the moto server, a DAGSTER_HOME with the queued run
coordinator, and starts the daemon in its own session (stopped with SIGTERM to its process group).
"""

from __future__ import annotations

import subprocess

import boto3
import pytest
from dagster import AssetKey, DagsterInstance

from fpgrowth_dagster.cli import main
from fpgrowth_dagster.cli.sqs import dagster_bin, summarize_jobs
from fpgrowth_dagster.config import load_project_config
from fpgrowth_dagster.sensors import SENSOR_NAME
from fpgrowth_dagster.sqs import QUEUE_TAG, SOURCE_SQS, SOURCE_TAG, SQSJob, SQSResource, queue_depth, sqs_settings
from fpgrowth_dagster_tests.sqs_harness import (
    FAST_SQS,
    MONTHS,
    ActiveRunWatcher,
    Daemons,
    all_finished,
    daemon_env,
    runs_by_job,
    sensor_log,
    total_depth,
    wait_until,
    write_instance,
    write_project,
)

pytestmark = pytest.mark.slow


def test_fifty_jobs_with_duplicate_sends_run_exactly_once_each_within_max_concurrent(
        aws_env, dagster_home, tmp_path, capsys):
    max_concurrent = 2
    config_path = write_project(tmp_path, boto3.client("s3"), groups=10,
                                sqs={**FAST_SQS, "max_concurrent": max_concurrent})
    settings = sqs_settings(load_project_config(config_path))
    # Runs execute inside the daemon (one code-location import for all 50); the crash tests below use a
    # run worker process per run.
    write_instance(dagster_home, max_concurrent_runs=max_concurrent + 2, runs_in_daemon=True)
    for index, month in enumerate(MONTHS):
        create = ["--create"] if index == 0 else []
        assert main(["enqueue", "--config", str(config_path), "--partition", month, "--all-groups", *create]) == 0
    assert capsys.readouterr().out.count("enqueued ") == 50
    # Duplicates: the same jobs again within SQS's deduplication window (dropped by SQS) ...
    assert main(["enqueue", "--config", str(config_path), "--partition", MONTHS[0], "--groups", "g0,g1,g2"]) == 0
    resource = SQSResource(queue_name=settings.queue)
    client, url = resource.get_client(), resource.get_queue_url()
    # ... and after it (new deduplication ids, as a producer resending later would): the sensor drops these.
    resent = [SQSJob(f"g{i}", MONTHS[1]) for i in range(5)] + [SQSJob("g9", MONTHS[4])]
    for job in resent:
        client.send_message(QueueUrl=url, MessageBody=job.to_body(), MessageGroupId=job.message_group_id,
                            MessageDeduplicationId=f"{job.deduplication_id}-resent")
    # Poison: malformed JSON in its own message group, an unknown group inside group g3's message group.
    poison = {
        client.send_message(QueueUrl=url, MessageBody="{not json", MessageGroupId="poison",
                            MessageDeduplicationId="poison-1")["MessageId"]: "{not json",
        client.send_message(QueueUrl=url, MessageBody=SQSJob("atlantis", MONTHS[0]).to_body(), MessageGroupId="g3",
                            MessageDeduplicationId="poison-2")["MessageId"]: SQSJob("atlantis", MONTHS[0]).to_body(),
    }
    assert queue_depth(client, url)["visible"] == 50 + len(resent) + len(poison)
    dlq_url = resource.get_queue_url(settings.dead_letter_queue_name)
    job_ids = [SQSJob(f"g{g}", m).job_id for g in range(10) for m in MONTHS]

    daemons = Daemons(tmp_path, daemon_env(config_path, dagster_home))
    instance = DagsterInstance.get()
    try:
        with ActiveRunWatcher(instance, settings.queue) as watcher:
            daemon = daemons.start()
            wait_until(lambda: all_finished(instance, job_ids) and total_depth(client, url) == 0
                       and queue_depth(client, dlq_url)["visible"] == len(poison),
                       timeout=840, what="50 jobs to finish and both poison messages to be dead-lettered",
                       daemon=daemon, interval=2)
    finally:
        daemons.stop_all()

    by_job = runs_by_job(instance)
    assert sorted(by_job) == sorted(job_ids)
    assert all(len(runs) == 1 for runs in by_job.values()), {j: len(r) for j, r in by_job.items() if len(r) > 1}
    summary = summarize_jobs(instance, job_ids, {SOURCE_TAG: SOURCE_SQS, QUEUE_TAG: settings.queue})
    assert (summary.runs, summary.succeeded, summary.duplicates, summary.lost) == (50, 50, 0, []), summary.lines()
    assert 1 <= summary.max_concurrency <= max_concurrent
    assert 1 <= watcher.maximum <= max_concurrent
    for group in range(10):
        assert instance.get_materialized_partitions(AssetKey(["fpgrowth", f"g{group}"])) == set(MONTHS)
    assert total_depth(client, url) == 0
    dead = client.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(poison.values())
    errors = [message for level, message in sensor_log(instance) if level == "ERROR"]
    for message_id in poison:
        named = [m for m in errors if f"SQS message {message_id} " in m and "is not a valid job" in m]
        assert len(named) == settings.max_receive_count, errors  # one line per receive until dead-lettered
    print(f"\nfigures: jobs 50, runs {summary.runs}, duplicates {summary.duplicates}, lost {len(summary.lost)}, "
          f"max concurrency {summary.max_concurrency} (polled {watcher.maximum} over {watcher.samples} samples)")


def crash_project(tmp_path, dagster_home, groups: int, faults: list[str]) -> tuple:
    """A project whose daemon is killed (SIGKILL, daemon and code server) at each armed fault, in order."""
    sqs = {**FAST_SQS, "tick_budget_seconds": 5, "visibility_timeout_seconds": 20}
    config_path = write_project(tmp_path, boto3.client("s3"), groups=groups, sqs=sqs)
    settings = sqs_settings(load_project_config(config_path))
    write_instance(dagster_home, max_concurrent_runs=4, faulty=True)
    fault_file = tmp_path / "faults"
    fault_file.write_text("".join(f"{name}\n" for name in faults))
    env = daemon_env(config_path, dagster_home, FPGROWTH_SQS_FAULT_FILE=str(fault_file))
    return config_path, settings, fault_file, Daemons(tmp_path, env)


def fired(fault_file) -> list[str]:
    path = fault_file.with_name(fault_file.name + ".fired")
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_kill_9_at_every_step_neither_loses_a_job_nor_runs_it_twice(aws_env, dagster_home, tmp_path):
    faults = ["after_receive", "before_submit", "after_submit", "before_delete", "after_delete"]
    config_path, settings, fault_file, daemons = crash_project(tmp_path, dagster_home, groups=3, faults=faults)
    for month in MONTHS[:2]:
        assert main(["enqueue", "--config", str(config_path), "--partition", month, "--all-groups", "--create"]) == 0
    job_ids = [SQSJob(f"g{g}", m).job_id for g in range(3) for m in MONTHS[:2]]
    resource = SQSResource(queue_name=settings.queue)
    client, url = resource.get_client(), resource.get_queue_url()
    instance = DagsterInstance.get()
    done = lambda: all_finished(instance, job_ids) and total_depth(client, url) == 0  # noqa: E731
    restarts = 0
    try:
        with ActiveRunWatcher(instance, settings.queue) as watcher:
            while True:
                daemon = daemons.start()
                wait_until(lambda: daemon.poll() is not None or done(), timeout=900,
                           what=f"a fault or the end (fired so far: {fired(fault_file)})", interval=1)
                if daemon.poll() is None:
                    break
                assert daemon.returncode == -9, daemons.log_text()[-3000:]
                restarts += 1
                assert restarts <= len(faults), f"the daemon died without an armed fault: {fired(fault_file)}"
    finally:
        daemons.stop_all()

    assert fired(fault_file) == faults
    assert restarts == len(faults)
    by_job = runs_by_job(instance)
    assert sorted(by_job) == sorted(job_ids)
    assert {job: len(runs) for job, runs in by_job.items()} == {job: 1 for job in job_ids}
    summary = summarize_jobs(instance, job_ids, {SOURCE_TAG: SOURCE_SQS, QUEUE_TAG: settings.queue})
    assert (summary.succeeded, summary.duplicates, summary.lost) == (len(job_ids), 0, []), summary.lines()
    assert summary.max_concurrency <= settings.max_concurrent and watcher.maximum <= settings.max_concurrent
    assert total_depth(client, url) == 0
    assert total_depth(client, resource.get_queue_url(settings.dead_letter_queue_name)) == 0
    print(f"\nfigures: jobs {len(job_ids)}, kills {restarts}, runs {summary.runs}, duplicates {summary.duplicates}, "
          f"lost {len(summary.lost)}, max concurrency {summary.max_concurrency} (polled {watcher.maximum})")


def test_a_message_redelivered_after_its_visibility_timeout_starts_no_second_run(aws_env, dagster_home, tmp_path):
    config_path, settings, fault_file, daemons = crash_project(tmp_path, dagster_home, groups=1,
                                                               faults=["before_delete"])
    assert main(["enqueue", "--config", str(config_path), "--partition", MONTHS[0], "--groups", "g0", "--create"]) == 0
    job_id = SQSJob("g0", MONTHS[0]).job_id
    resource = SQSResource(queue_name=settings.queue)
    client, url = resource.get_client(), resource.get_queue_url()
    instance = DagsterInstance.get()
    try:
        daemon = daemons.start()
        # The run is created; the daemon dies just before the tick that would delete the message.
        wait_until(lambda: daemon.poll() is not None, timeout=600, what="the before_delete fault")
        assert fired(fault_file) == ["before_delete"]
        (run,) = runs_by_job(instance)[job_id]
        # The message times out and is visible again; the cursor that remembered its receipt is deleted.
        wait_until(lambda: queue_depth(client, url)["visible"] == 1, timeout=120,
                   what="the message to become visible again")
        cursor = subprocess.run([dagster_bin("dagster"), "sensor", "cursor", SENSOR_NAME, "--delete",
                                 "-w", str(daemons.workspace)], env=daemons.env, capture_output=True, text=True,
                                timeout=600)
        assert cursor.returncode == 0, cursor.stderr[-2000:]
        daemon = daemons.start()
        wait_until(lambda: total_depth(client, url) == 0 and all_finished(instance, [job_id]), timeout=600,
                   what="the redelivered message to be deleted", daemon=daemon)
    finally:
        daemons.stop_all()

    assert [r.run_id for r in runs_by_job(instance)[job_id]] == [run.run_id]
    assert any(f"run {run.run_id} already exists, deleting the message" in m for _, m in sensor_log(instance))
