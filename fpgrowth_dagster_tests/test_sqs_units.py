"""Pure parts of the SQS job queue: the message schema, ids SQS accepts, settings, the cursor, overlap counting."""

from __future__ import annotations

import json
import re

import pytest

from fpgrowth_dagster.cli.sqs import max_overlap
from fpgrowth_dagster.config import ConfigError
from fpgrowth_dagster.sensors import PendingJobs, Receipt
from fpgrowth_dagster.sqs import InvalidJobMessage, SQSJob, SQSSettings, sqs_token

SQS_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def test_job_id_is_group_and_partition_and_body_round_trips():
    job = SQSJob("france", "2011-03-01")
    assert job.job_id == "france:2011-03-01"
    assert job.deduplication_id == "france:2011-03-01"
    assert job.message_group_id == "france"
    assert json.loads(job.to_body()) == {"version": 1, "group": "france", "partition": "2011-03-01"}
    assert SQSJob.from_body(job.to_body()) == job


def test_request_id_makes_a_distinct_job():
    again = SQSJob("france", "2011-03-01", request="rerun-2")
    assert again.job_id == "france:2011-03-01@rerun-2"
    assert again.job_id != SQSJob("france", "2011-03-01").job_id
    assert SQSJob.from_body(again.to_body()) == again


@pytest.mark.parametrize("text", ["United Kingdom:2011-01-01", "Zürich", "x" * 300, "tab\there"])
def test_tokens_sqs_rejects_become_valid_stable_and_distinct(text):
    token = sqs_token(text)
    assert SQS_ID.match(token), token
    assert sqs_token(text) == token
    assert sqs_token(text + "!") != token


@pytest.mark.parametrize(("body", "reason"), [
    ("", "empty"),
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"version": 2, "group": "a", "partition": "p"}', "version"),
    ('{"version": 1, "partition": "p"}', "'group'"),
    ('{"version": 1, "group": "a", "partition": ""}', "'partition'"),
    ('{"version": 1, "group": "a", "partition": "p", "extra": 1}', "unknown field"),
    ('{"version": 1, "group": 7, "partition": "p"}', "'group'"),
])
def test_malformed_bodies_are_rejected_with_the_reason(body, reason):
    with pytest.raises(InvalidJobMessage, match=reason):
        SQSJob.from_body(body)


def test_settings_defaults_are_conservative_and_dead_letter_queue_is_derived():
    settings = SQSSettings.from_mapping({})
    assert settings.max_concurrent == 2
    assert settings.dead_letter_queue_name == "fpgrowth-jobs-dlq.fifo"
    assert SQSSettings.from_mapping({"queue": "x.fifo"}).dead_letter_queue_name == "x-dlq.fifo"


@pytest.mark.parametrize(("data", "message"), [
    ({"max_concurent": 3}, "sqs.max_concurent: unknown key"),
    ({"queue": "jobs"}, "sqs.queue: expected a FIFO queue name"),
    ({"max_concurrent": 0}, "sqs.max_concurrent"),
    ({"wait_time_seconds": 25}, "sqs.wait_time_seconds"),
    ({"visibility_timeout_seconds": 30}, "sqs.visibility_timeout_seconds: 30 s is too short"),
    ({"running": "yes"}, "sqs.running"),
])
def test_invalid_settings_name_the_file_and_key(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        SQSSettings.from_mapping(data, "project.yaml")
    assert str(info.value).startswith("project.yaml: ")


def test_cursor_round_trips_and_an_unreadable_cursor_is_empty():
    pending = PendingJobs()
    pending.add("g:p", Receipt("m1", "handle-1", 10.0, 50.0))
    pending.add("g:p", Receipt("m2", "handle-2", 11.0, 51.0))
    restored = PendingJobs.from_cursor(pending.to_cursor())
    assert restored.jobs == pending.jobs
    assert PendingJobs.from_cursor("{not json").jobs == {}
    assert PendingJobs.from_cursor(None).jobs == {}


def test_max_overlap_counts_intervals_holding_at_once():
    assert max_overlap([]) == 0
    assert max_overlap([(0, 1), (1, 2), (2, 3)]) == 1  # an end and a start at the same instant do not overlap
    assert max_overlap([(0, 10), (1, 2), (1.5, 3), (5, 6)]) == 3
