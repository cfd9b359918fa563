"""The SQS sensor's protocol, one evaluation at a time, against the moto server and a real SQLite instance.

The daemon tests (test_sqs_daemon.py) run the same sensor under ``dagster-daemon run``; here each
tick is evaluated directly so every step of the protocol can be checked between ticks. Runs the
daemon would create from the run requests are added to the instance with the same tags.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from dagster import AssetKey, AssetMaterialization, DagsterInstance, DagsterRun, DagsterRunStatus, build_sensor_context
from dagster._core.utils import make_new_run_id

from fpgrowth_dagster.assets import TRANSACTIONS_KEY
from fpgrowth_dagster.config import load_project_config
from fpgrowth_dagster.definitions import build_definitions
from fpgrowth_dagster.sensors import SENSOR_NAME, SQS_JOB_NAME
from fpgrowth_dagster.sqs import (
    JOB_ID_TAG,
    MESSAGE_ID_TAG,
    QUEUE_TAG,
    SOURCE_SQS,
    SOURCE_TAG,
    SQSJob,
    SQSResource,
    create_job_queues,
    queue_depth,
    send_jobs,
    sqs_settings,
)
from fpgrowth_dagster_tests.sqs_harness import FAST_SQS, MONTHS, write_project

P = MONTHS[0]


@dataclass
class Project:
    instance: DagsterInstance
    defs: Any
    sensor: Any
    resource: SQSResource
    settings: Any
    client: Any
    url: str
    dlq_url: str
    cursor: str | None = None

    def tick(self) -> Any:
        """One evaluation, carrying the cursor forward as the daemon does."""
        result = self.sensor.evaluate_tick(self.context(cursor=self.cursor))
        self.cursor = result.cursor
        return result

    def context(self, cursor: str | None = None, resource: SQSResource | None = None) -> Any:
        return build_sensor_context(instance=self.instance, cursor=cursor, definitions=self.defs,
                                    resources={"sqs": resource or self.resource})

    def create_runs(self, run_requests: Any, status: DagsterRunStatus = DagsterRunStatus.NOT_STARTED) -> None:
        """What the daemon does with run requests: a run per request, with its tags and run key."""
        for request in run_requests:
            tags = {**request.tags, "dagster/run_key": request.run_key}
            self.instance.add_run(DagsterRun(job_name=SQS_JOB_NAME, run_id=make_new_run_id(), tags=tags,
                                             status=status))

    def send(self, *jobs: SQSJob) -> None:
        send_jobs(self.client, self.url, jobs)

    def depth(self) -> dict[str, int]:
        return queue_depth(self.client, self.url)


def make_project(tmp_path, **sqs: Any) -> Project:
    config_path = write_project(tmp_path, boto3.client("s3"), groups=3, sqs={**FAST_SQS, **sqs})
    config = load_project_config(config_path)
    settings = sqs_settings(config)
    resource = SQSResource(queue_name=settings.queue)
    url, dlq_url = create_job_queues(resource, settings)
    defs = build_definitions(config)
    (sensor,) = [s for s in defs.sensors if s.name == SENSOR_NAME]
    return Project(DagsterInstance.get(), defs, sensor, resource, settings, resource.get_client(), url, dlq_url)


@pytest.fixture
def project(aws_env, dagster_home, tmp_path) -> Project:
    return make_project(tmp_path)


def pending(project: Project) -> dict[str, list]:
    return json.loads(project.cursor)["pending"]


def test_a_tick_requests_only_as_many_jobs_as_there_is_room_for_and_deletes_nothing(project):
    project.send(*(SQSJob(g, P) for g in ("g0", "g1", "g2")))
    result = project.tick()
    assert len(result.run_requests) == 2  # max_concurrent defaults to 2
    for request in result.run_requests:
        job = request.tags[JOB_ID_TAG]
        group = job.split(":")[0]
        assert request.run_key == job == f"{group}:{P}"
        assert request.partition_key == P
        assert request.asset_selection == [TRANSACTIONS_KEY, AssetKey(["fpgrowth", group])]
        assert request.tags[SOURCE_TAG] == SOURCE_SQS and request.tags[QUEUE_TAG] == project.settings.queue
        assert request.tags[MESSAGE_ID_TAG]
    assert project.depth() == {"visible": 1, "in_flight": 2, "delayed": 0}
    assert sorted(pending(project)) == sorted(r.run_key for r in result.run_requests)


def test_messages_are_deleted_only_once_their_runs_exist(project):
    project.send(SQSJob("g0", P), SQSJob("g1", P))
    first = project.tick()
    assert len(first.run_requests) == 2
    second = project.tick()  # the runs were not created (e.g. the daemon died before submitting)
    assert second.run_requests == [] and project.depth()["in_flight"] == 2
    project.create_runs(first.run_requests)
    third = project.tick()
    assert third.run_requests == []
    assert sum(project.depth().values()) == 0
    assert pending(project) == {}


def test_room_is_max_concurrent_minus_this_queues_queued_and_running_runs(tmp_path, aws_env, dagster_home):
    project = make_project(tmp_path, max_concurrent=3)
    project.send(*(SQSJob(g, P) for g in ("g0", "g1", "g2")))
    busy = [SQSJob("g0", MONTHS[1]), SQSJob("g1", MONTHS[1]), SQSJob("g2", MONTHS[1]), SQSJob("g0", MONTHS[2])]
    statuses = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
    for job, status in zip(busy, statuses):
        tags = {SOURCE_TAG: SOURCE_SQS, QUEUE_TAG: project.settings.queue, JOB_ID_TAG: job.job_id}
        project.instance.add_run(DagsterRun(job_name=SQS_JOB_NAME, run_id=make_new_run_id(), tags=tags, status=status))
    other_queue = {SOURCE_TAG: SOURCE_SQS, QUEUE_TAG: "other.fifo", JOB_ID_TAG: "g2:x"}
    project.instance.add_run(DagsterRun(job_name=SQS_JOB_NAME, run_id=make_new_run_id(), tags=other_queue,
                                        status=DagsterRunStatus.STARTED))
    result = project.tick()
    assert len(result.run_requests) == 1  # 3 - (one not started + one started of this queue)
    assert project.depth()["visible"] == 2


def test_a_message_whose_job_already_has_a_run_is_deleted_without_a_request(project):
    project.send(SQSJob("g0", P))
    project.create_runs(project.tick().run_requests, DagsterRunStatus.SUCCESS)
    ((_, handle, *_),) = pending(project)[f"g0:{P}"]
    # The tick that would delete it never happens and the cursor is lost; the message times out.
    project.cursor = None
    project.client.change_message_visibility(QueueUrl=project.url, ReceiptHandle=handle, VisibilityTimeout=0)
    assert project.tick().run_requests == []
    assert sum(project.depth().values()) == 0
    # The same job sent again after SQS's five-minute deduplication window (here: a new deduplication id).
    project.client.send_message(QueueUrl=project.url, MessageBody=SQSJob("g0", P).to_body(), MessageGroupId="g0",
                                MessageDeduplicationId="resent")
    assert project.tick().run_requests == []
    assert sum(project.depth().values()) == 0
    assert len(project.instance.get_runs()) == 1


def test_duplicates_received_in_one_tick_request_one_run_and_are_all_deleted_later(project):
    job = SQSJob("g1", P)
    for dedup in ("a", "b", "c"):
        project.client.send_message(QueueUrl=project.url, MessageBody=job.to_body(), MessageGroupId="g1",
                                    MessageDeduplicationId=dedup)
    result = project.tick()
    assert [r.run_key for r in result.run_requests] == [job.job_id]
    assert len(pending(project)[job.job_id]) == 2  # a receive asks for at most `room` messages
    project.create_runs(result.run_requests)
    assert project.tick().run_requests == []  # deletes the two, then receives the third and deletes it
    assert sum(project.depth().values()) == 0
    assert len(project.instance.get_runs()) == 1


def test_transactions_join_the_run_only_while_the_partition_has_none(project):
    project.instance.report_runless_asset_event(AssetMaterialization(asset_key=TRANSACTIONS_KEY, partition=P))
    project.send(SQSJob("g0", P), SQSJob("g1", MONTHS[1]))
    selections = {r.partition_key: r.asset_selection for r in project.tick().run_requests}
    assert selections == {P: [AssetKey(["fpgrowth", "g0"])],
                          MONTHS[1]: [TRANSACTIONS_KEY, AssetKey(["fpgrowth", "g1"])]}


def test_invalid_messages_are_never_requested_and_move_to_the_dead_letter_queue(project):
    bodies = {"malformed": "{oops", "unknown-group": SQSJob("nope", P).to_body(),
              "unknown-partition": SQSJob("g0", "1999-01-01").to_body()}
    for group, body in bodies.items():
        project.client.send_message(QueueUrl=project.url, MessageBody=body, MessageGroupId=group,
                                    MessageDeduplicationId=group)
    project.send(SQSJob("g2", P))
    requested: list[str] = []
    deadline = time.monotonic() + 60
    while queue_depth(project.client, project.dlq_url)["visible"] < 3:
        assert time.monotonic() < deadline, f"poison messages not dead-lettered: {project.depth()}"
        result = project.tick()
        requested += [r.run_key for r in result.run_requests]
        project.create_runs(result.run_requests)
        time.sleep(1.1)  # invalid_message_retry_seconds = 1
    project.tick()
    assert requested == [f"g2:{P}"]
    assert sum(project.depth().values()) == 0
    dead = project.client.receive_message(QueueUrl=project.dlq_url, MaxNumberOfMessages=10,
                                          MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert sorted(m["Body"] for m in dead) == sorted(bodies.values())
    assert all(int(m["Attributes"]["ApproximateReceiveCount"]) >= 3 for m in dead)


def test_a_waiting_message_is_kept_invisible_then_released_after_a_visibility_timeout(project):
    project.send(SQSJob("g0", P))
    project.tick()
    state = json.loads(project.cursor)
    (entry,) = state["pending"][f"g0:{P}"]
    entry[3] = time.time() + 1  # about to become visible again
    project.cursor = json.dumps(state)
    project.tick()
    time.sleep(2)
    assert project.depth()["in_flight"] == 1  # extended with ChangeMessageVisibility
    (entry,) = json.loads(project.cursor)["pending"][f"g0:{P}"]
    assert entry[3] > time.time() + project.settings.visibility_timeout_seconds / 2
    entry[2] = time.time() - project.settings.visibility_timeout_seconds  # no run for a whole timeout
    project.cursor = json.dumps({"pending": {f"g0:{P}": [entry]}})
    project.tick()
    assert pending(project) == {}  # no longer waited for: SQS redelivers it when its timeout ends


def test_a_missing_queue_fails_the_tick_instead_of_skipping(project):
    project.tick()
    project.client.delete_queue(QueueUrl=project.url)
    with pytest.raises(Exception, match="SQS queue 'fpgrowth-jobs.fifo' does not exist"):
        project.tick()


def test_broken_credentials_fail_the_tick_instead_of_skipping(project, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(Exception, match="credentials"):
        project.sensor.evaluate_tick(project.context())
