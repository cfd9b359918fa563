"""``fpgrowth-dagster enqueue`` against the moto server: queues, messages, deduplication, rejected jobs."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pytest

from fpgrowth_dagster.cli import main
from fpgrowth_dagster.sqs import SQSJob, queue_depth
from fpgrowth_dagster_tests.sqs_harness import FAST_SQS, MONTHS, write_project

QUEUE = "fpgrowth-jobs.fifo"


@pytest.fixture
def config_path(aws_env, tmp_path):
    return write_project(tmp_path, boto3.client("s3"), groups=3, sqs=FAST_SQS)


def enqueue(config_path, *args: str) -> int:
    return main(["enqueue", "--config", str(config_path), *args])


def queue_url(name: str = QUEUE) -> str:
    return boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]


def receive_all(url: str) -> list[dict]:
    client = boto3.client("sqs")
    messages = []
    while batch := client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                          MessageSystemAttributeNames=["All"]).get("Messages"):
        messages += batch
    return messages


def test_create_makes_a_fifo_queue_and_dead_letter_queue_and_sends_one_message_per_group(config_path, capsys):
    assert enqueue(config_path, "--partition", MONTHS[1], "--all-groups", "--create", "--max-receive-count", "4") == 0
    out = capsys.readouterr().out
    client = boto3.client("sqs")
    dlq_url = queue_url("fpgrowth-jobs-dlq.fifo")
    dlq_attributes = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    attributes = client.get_queue_attributes(QueueUrl=queue_url(), AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true" and dlq_attributes["FifoQueue"] == "true"
    assert attributes["VisibilityTimeout"] == str(FAST_SQS["visibility_timeout_seconds"])
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_attributes["QueueArn"],
                                                       "maxReceiveCount": 4}
    messages = receive_all(queue_url())
    jobs = {SQSJob.from_body(m["Body"]) for m in messages}
    assert jobs == {SQSJob(f"g{i}", MONTHS[1]) for i in range(3)}
    for message in messages:
        job = SQSJob.from_body(message["Body"])
        assert message["Attributes"]["MessageGroupId"] == job.group
        assert message["Attributes"]["MessageDeduplicationId"] == job.job_id
        assert f"enqueued {job.job_id}  message {message['MessageId']}" in out
    assert f"3 job(s) on {QUEUE}" in out


def test_sending_the_same_jobs_again_within_the_deduplication_window_stores_them_once(config_path):
    assert enqueue(config_path, "--partition", MONTHS[0], "--all-groups", "--create") == 0
    assert enqueue(config_path, "--partition", MONTHS[0], "--groups", "g0,g2") == 0
    assert queue_depth(boto3.client("sqs"), queue_url())["visible"] == 3


def test_a_request_id_makes_new_jobs_of_the_same_group_and_partition(config_path):
    assert enqueue(config_path, "--partition", MONTHS[0], "--groups", "g0", "--create") == 0
    assert enqueue(config_path, "--partition", MONTHS[0], "--groups", "g0", "--request-id", "again") == 0
    job_ids = sorted(SQSJob.from_body(m["Body"]).job_id for m in receive_all(queue_url()))
    assert job_ids == [f"g0:{MONTHS[0]}", f"g0:{MONTHS[0]}@again"]


@pytest.mark.parametrize(("args", "named"), [
    (["--partition", MONTHS[0], "--groups", "g0,atlantis"], "unknown group 'atlantis'"),
    (["--partition", "1999-01-01", "--groups", "g0"], "unknown partition '1999-01-01'"),
    (["--partition", MONTHS[0], "--groups", " , "], "--groups: no group names given"),
])
def test_unknown_groups_and_partitions_are_rejected_before_anything_is_sent(config_path, capsys, args, named):
    assert enqueue(config_path, "--partition", MONTHS[0], "--groups", "g1", "--create") == 0
    assert enqueue(config_path, *args) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "nothing was sent" in err or args[-1] == " , "
    assert queue_depth(boto3.client("sqs"), queue_url())["visible"] == 1  # only the first, valid job


def test_a_missing_queue_without_create_is_a_clear_error(config_path, capsys):
    assert enqueue(config_path, "--partition", MONTHS[0], "--all-groups", "--queue", "absent.fifo") == 1
    err = capsys.readouterr().err
    assert "SQS queue 'absent.fifo' does not exist" in err and "--create" in err


def test_the_console_script_enqueues(config_path, tmp_path):
    result = subprocess.run([sys.executable, "-m", "fpgrowth_dagster", "enqueue", "--config", str(config_path),
                             "--partition", MONTHS[2], "--groups", "g1", "--create", "--queue", "other.fifo"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"enqueued g1:{MONTHS[2]}" in result.stdout
    assert queue_depth(boto3.client("sqs"), queue_url("other.fifo"))["visible"] == 1
    assert queue_url("other-dlq.fifo")


def test_a_bad_queue_option_names_the_option(config_path, capsys):
    assert enqueue(config_path, "--partition", MONTHS[0], "--all-groups", "--queue", "jobs") == 2
    assert "--queue: expected a FIFO queue name" in capsys.readouterr().err
