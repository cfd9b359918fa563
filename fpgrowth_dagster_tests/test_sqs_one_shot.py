"""``fpgrowth-dagster sqs run``: enqueue, run the real daemon until drained, summarise, exit 1 on a failed job."""

from __future__ import annotations

import re

import boto3
import pytest
from dagster import DagsterInstance

from fpgrowth_dagster.sqs import JOB_ID_TAG, REQUEST_TAG
from fpgrowth_dagster_tests.sqs_harness import (
    FAST_SQS,
    MONTHS,
    daemon_env,
    run_cli,
    sqs_runs,
    total_depth,
    write_instance,
    write_project,
)

pytestmark = pytest.mark.slow

# A group whose rows cannot be selected (its column is not in the data): its job fails, the others do not.
BROKEN = {"name": "broken", "where": {"Region": "North"}}


def test_one_shot_runs_each_job_once_and_exits_1_when_a_job_fails(aws_env, dagster_home, tmp_path):
    config_path = write_project(tmp_path, boto3.client("s3"), groups=2, sqs=FAST_SQS, extra_groups=[BROKEN])
    write_instance(dagster_home, runs_in_daemon=True)  # what is tested is the command, not the run launcher
    env = daemon_env(config_path, dagster_home)

    failing = run_cli("sqs", "run", "--config", str(config_path), "--max-concurrent", "2", "--partition", MONTHS[0],
                      "--groups", "g0,g1,broken", env=env, timeout=1500)
    out = failing.stdout
    assert failing.returncode == 1, failing.stderr[-3000:]
    assert "jobs: 3 (succeeded 2, failed 1)" in out
    assert "duplicates: 0" in out and "lost: 0" in out
    assert re.search(rf"failed jobs: broken:{MONTHS[0]}@\S+ \(FAILURE, run ", out)
    concurrency = int(re.search(r"max runs queued or in progress at once: (\d+)", out).group(1))
    assert 1 <= concurrency <= 2
    request = re.search(r"processing 3 job\(s\) of request (\S+),", out).group(1)

    passing = run_cli("sqs", "run", "--config", str(config_path), "--max-concurrent", "1", "--partition", MONTHS[1],
                      "--groups", "g0,g1", env=env, timeout=1500)
    assert passing.returncode == 0, passing.stdout[-3000:] + passing.stderr[-3000:]
    assert "jobs: 2 (succeeded 2, failed 0)" in passing.stdout
    assert "max runs queued or in progress at once: 1" in passing.stdout

    runs = sqs_runs(DagsterInstance.get())
    first = sorted(r.tags[JOB_ID_TAG] for r in runs if r.tags[REQUEST_TAG] == request)
    assert first == sorted(f"{g}:{MONTHS[0]}@{request}" for g in ("broken", "g0", "g1"))
    assert len(runs) == 5
    assert total_depth(boto3.client("sqs"), boto3.client("sqs").get_queue_url(QueueName="fpgrowth-jobs.fifo")
                       ["QueueUrl"]) == 0
