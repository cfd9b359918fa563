"""The SQS sensor: every enqueued (group, partition) job runs exactly once, at most ``max_concurrent`` at a time.

Each tick:

1. settles the messages it received on earlier ticks (kept in the cursor): a message is deleted only
   once a run for its job id exists in the instance, since a sensor's body finishes before its run
   requests are submitted; messages still waiting are kept invisible with ChangeMessageVisibility;
2. counts this queue's runs that are queued or in progress and receives at most ``max_concurrent``
   minus that many jobs, long-polling only within the tick's time budget;
3. turns each job into a RunRequest for its group's asset and partition (plus ``transactions`` if that
   partition has none yet), with the job id as run key, so a redelivered message never starts a
   second run; a message whose job already has a run is deleted on the spot.

Nothing depends on the cursor surviving: a lost cursor only means a message reappears after its
visibility timeout, finds its run and is deleted. Malformed messages and unknown groups or partitions
are logged by message id and never launched; they are not deleted, so the queue's redrive policy
moves them to the dead-letter queue after ``max_receive_count`` receives. A missing queue or broken
credentials raise, failing the tick where the UI shows it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import (
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    define_asset_job,
    in_process_executor,
    sensor,
)

from fpgrowth_dagster.assets import TRANSACTIONS_KEY, group_asset_key
from fpgrowth_dagster.config import ProjectConfig
from fpgrowth_dagster.sqs import (
    JOB_ID_TAG,
    MESSAGE_ID_TAG,
    QUEUE_TAG,
    REQUEST_TAG,
    SOURCE_SQS,
    SOURCE_TAG,
    InvalidJobMessage,
    JobCatalog,
    SQSError,
    SQSJob,
    SQSResource,
    SQSSettings,
    sqs_settings,
)

SENSOR_NAME = "sqs_jobs"
SQS_JOB_NAME = "sqs_group_job"
GROUP_TAG = "fpgrowth/group"
# A run in one of these holds one of the sensor's max_concurrent slots.
ACTIVE_STATUSES = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
                   DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
MAX_RECEIVE_CALLS = 20
# Crash-recovery tests name a file here; see fault_point().
FAULT_FILE_ENV = "FPGROWTH_SQS_FAULT_FILE"

logger = logging.getLogger(__name__)


def consume_fault(name: str) -> bool:
    """True (once) if ``name`` is the first line of the file named by ``$FPGROWTH_SQS_FAULT_FILE``.

    Crash-recovery tests arm faults there, one per line, in the order they must fire; the line is
    removed before returning so that each fires once, and appended to ``<file>.fired``.
    """
    path = os.environ.get(FAULT_FILE_ENV)
    if not path:
        return False
    fault_file = Path(path)
    try:
        lines = fault_file.read_text().split()
    except FileNotFoundError:
        return False
    if not lines or lines[0] != name:
        return False
    tmp = fault_file.with_name(fault_file.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines[1:]))
    tmp.replace(fault_file)
    with open(f"{fault_file}.fired", "a") as log:
        log.write(f"{name} {os.getpid()} {time.time():.3f}\n")
    return True


def fault_point(name: str) -> None:
    """Crash-recovery test hook: if ``name`` is the armed fault, SIGKILL this code server and its daemon."""
    if consume_fault(name):
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- the cursor


@dataclass
class Receipt:
    """One received message of a job that waits for its run to exist before it is deleted."""

    message_id: str
    handle: str
    received_at: float
    invisible_until: float


@dataclass
class PendingJobs:
    """Receipts by job id. Only an optimisation: a lost cursor costs one visibility timeout, not a job."""

    jobs: dict[str, list[Receipt]] = field(default_factory=dict)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> PendingJobs:
        if not cursor:
            return cls()
        try:
            raw = json.loads(cursor)["pending"]
            return cls({job_id: [Receipt(*entry) for entry in entries] for job_id, entries in raw.items()})
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable SQS sensor cursor (%s): messages reappear after their "
                           "visibility timeout", exc)
            return cls()

    def to_cursor(self) -> str:
        return json.dumps({"pending": {job_id: [[r.message_id, r.handle, round(r.received_at, 3),
                                                 round(r.invisible_until, 3)] for r in receipts]
                                       for job_id, receipts in self.jobs.items() if receipts}})

    def add(self, job_id: str, receipt: Receipt) -> None:
        self.jobs.setdefault(job_id, []).append(receipt)


# --------------------------------------------------------------------------- one tick


def active_sqs_runs(instance: Any, queue: str) -> list[Any]:
    """This queue's runs that are queued or in progress."""
    return list(instance.get_runs(filters=RunsFilter(tags={SOURCE_TAG: SOURCE_SQS, QUEUE_TAG: queue},
                                                     statuses=ACTIVE_STATUSES)))


def run_for_job(instance: Any, job_id: str) -> Any | None:
    """The run created for a job id, if any (in any status)."""
    runs = instance.get_runs(filters=RunsFilter(tags={JOB_ID_TAG: job_id}), limit=1)
    return runs[0] if runs else None


@dataclass
class TickReport:
    room: int = 0
    received: int = 0
    requested: list[str] = field(default_factory=list)
    duplicates: int = 0
    invalid: int = 0
    deleted: int = 0
    extended: int = 0

    def text(self, queue: str, max_concurrent: int, active: int) -> str:
        return (f"queue {queue}: {active} run(s) active of max {max_concurrent}, room {self.room}; "
                f"received {self.received}, requested {len(self.requested)} run(s), {self.duplicates} duplicate(s), "
                f"{self.invalid} invalid; deleted {self.deleted} message(s), extended {self.extended}")


class SQSJobConsumer:
    """One sensor evaluation over the job queue (see the module docstring for the protocol)."""

    def __init__(self, context: SensorEvaluationContext, sqs: SQSResource, catalog: JobCatalog,
                 settings: SQSSettings) -> None:
        self.context = context
        self.instance = context.instance
        self.catalog = catalog
        self.settings = settings
        self.started = time.monotonic()
        self.queue = sqs.queue_name
        # Both raise SQSError naming the queue if it is missing or the credentials are broken.
        self.client = sqs.get_client()
        self.url = sqs.get_queue_url()
        self.pending = PendingJobs.from_cursor(context.cursor)
        self.report = TickReport()

    def tick(self) -> SensorResult:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._tick()
        except (BotoCoreError, ClientError) as exc:
            raise SQSError(f"SQS queue {self.queue!r} at {self.client.meta.endpoint_url}: {exc}") from exc

    def _tick(self) -> SensorResult:
        self.settle_pending()
        active = len(active_sqs_runs(self.instance, self.queue))
        self.report.room = max(0, self.settings.max_concurrent - active)
        run_requests = self.receive_jobs(self.report.room) if self.report.room else []
        summary = self.report.text(self.queue, self.settings.max_concurrent, active)
        self.context.log.info(summary)
        return SensorResult(run_requests=run_requests, cursor=self.pending.to_cursor(),
                            skip_reason=None if run_requests else summary)

    # -- step 1: delete what has a run, keep the rest invisible

    def settle_pending(self) -> None:
        now = time.time()
        to_delete: list[tuple[str, Receipt]] = []
        to_extend: list[Receipt] = []
        kept = PendingJobs()
        for job_id, receipts in self.pending.jobs.items():
            if run_for_job(self.instance, job_id) is not None:
                to_delete.extend((job_id, r) for r in receipts)
                continue
            for receipt in receipts:
                if now - receipt.received_at >= self.settings.visibility_timeout_seconds:
                    # No run after a whole visibility timeout: stop waiting and let SQS redeliver the
                    # message (the redrive policy bounds how often).
                    self.context.log.warning(f"job {job_id}: no run yet for message {receipt.message_id} "
                                             f"received {now - receipt.received_at:.0f} s ago; it will be redelivered")
                    continue
                if receipt.invisible_until - now < self.settings.visibility_timeout_seconds / 2:
                    to_extend.append(receipt)
                kept.add(job_id, receipt)
        self.pending = kept
        self.extend(to_extend)
        self.delete(to_delete)

    def extend(self, receipts: Sequence[Receipt]) -> None:
        timeout = self.settings.visibility_timeout_seconds
        for start in range(0, len(receipts), 10):
            batch = receipts[start : start + 10]
            response = self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": r.handle, "VisibilityTimeout": timeout} for i, r in enumerate(batch)])
            for ok in response.get("Successful", []):
                batch[int(ok["Id"])].invisible_until = time.time() + timeout
                self.report.extended += 1
            for failed in response.get("Failed", []):
                self.context.log.warning(f"could not extend the visibility of message "
                                         f"{batch[int(failed['Id'])].message_id}: {failed.get('Code')}: "
                                         f"{failed.get('Message')}")

    def delete(self, receipts: Sequence[tuple[str, Receipt]]) -> None:
        if not receipts:
            return
        fault_point("before_delete")
        for start in range(0, len(receipts), 10):
            batch = receipts[start : start + 10]
            response = self.client.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": r.handle} for i, (_, r) in enumerate(batch)])
            self.report.deleted += len(response.get("Successful", []))
            for failed in response.get("Failed", []):
                job_id, receipt = batch[int(failed["Id"])]
                # A stale receipt (the message was received again since) is harmless: the new copy
                # finds the run and is deleted then. Anything else is retried on the next tick.
                if failed.get("Code") != "ReceiptHandleIsInvalid":
                    self.pending.add(job_id, receipt)
                self.context.log.warning(f"job {job_id}: could not delete message {receipt.message_id}: "
                                         f"{failed.get('Code')}: {failed.get('Message')}")
        fault_point("after_delete")

    # -- steps 2 and 3: receive what there is room for, request runs

    def receive_jobs(self, room: int) -> list[RunRequest]:
        run_requests: list[RunRequest] = []
        requested: set[str] = set()
        materialised = self.instance.get_materialized_partitions(TRANSACTIONS_KEY)
        budget = self.settings.tick_budget_seconds
        for call in range(MAX_RECEIVE_CALLS):
            remaining = budget - (time.monotonic() - self.started)
            if room <= 0 or remaining < 2:
                break
            wait = min(self.settings.wait_time_seconds, int(remaining) - 1) if call == 0 else 0
            messages = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=min(10, room), WaitTimeSeconds=max(0, wait),
                VisibilityTimeout=self.settings.visibility_timeout_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
            ).get("Messages", [])
            if not messages:
                break
            self.report.received += len(messages)
            fault_point("after_receive")
            to_delete: list[tuple[str, Receipt]] = []
            for message in messages:
                receipt = Receipt(message["MessageId"], message["ReceiptHandle"], time.time(),
                                  time.time() + self.settings.visibility_timeout_seconds)
                job = self.parse(message)
                if job is None:
                    continue
                if job.job_id in requested or job.job_id in self.pending.jobs:
                    self.report.duplicates += 1
                    self.context.log.info(f"job {job.job_id}: message {receipt.message_id} is a duplicate of a job "
                                          "requested earlier; deleted once its run exists")
                    self.pending.add(job.job_id, receipt)
                    continue
                existing = run_for_job(self.instance, job.job_id)
                if existing is not None:
                    self.report.duplicates += 1
                    self.context.log.info(f"job {job.job_id}: message {receipt.message_id} redelivered or sent again; "
                                          f"run {existing.run_id} already exists, deleting the message")
                    to_delete.append((job.job_id, receipt))
                    continue
                run_requests.append(self.run_request(job, receipt, materialised))
                requested.add(job.job_id)
                self.pending.add(job.job_id, receipt)
                room -= 1
            self.delete(to_delete)
        self.report.requested = sorted(requested)
        return run_requests

    def parse(self, message: Mapping[str, Any]) -> SQSJob | None:
        """The message's job, or None after logging why it is invalid (it is left for the redrive policy)."""
        try:
            job = SQSJob.from_body(message.get("Body"))
            self.catalog.check(job)
            return job
        except InvalidJobMessage as exc:
            self.report.invalid += 1
            attributes = message.get("Attributes", {})
            count = attributes.get("ApproximateReceiveCount", "?")
            self.context.log.error(
                f"SQS message {message['MessageId']} (message group {attributes.get('MessageGroupId', '?')}, "
                f"receive {count} of {self.settings.max_receive_count}) on {self.queue} is not a valid "
                f"job and is not launched: {exc}. It moves to {self.settings.dead_letter_queue_name} after "
                f"{self.settings.max_receive_count} receives."
            )
            self.client.change_message_visibility(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"],
                                                  VisibilityTimeout=self.settings.invalid_message_retry_seconds)
            return None

    def run_request(self, job: SQSJob, receipt: Receipt, materialised: set[str]) -> RunRequest:
        selection = [group_asset_key(job.group)]
        if job.partition not in materialised:
            selection.insert(0, TRANSACTIONS_KEY)
        tags = {SOURCE_TAG: SOURCE_SQS, QUEUE_TAG: self.queue, JOB_ID_TAG: job.job_id,
                MESSAGE_ID_TAG: receipt.message_id, GROUP_TAG: job.group}
        if job.request:
            tags[REQUEST_TAG] = job.request
        return RunRequest(run_key=job.job_id, partition_key=job.partition, asset_selection=selection, tags=tags)


# --------------------------------------------------------------------------- definitions


def build_sqs_sensor(config: ProjectConfig, settings: SQSSettings | None = None) -> SensorDefinition:
    """The ``sqs_jobs`` sensor over the config's groups and partitions, with its own in-process asset job."""
    settings = settings or sqs_settings(config)
    catalog = JobCatalog.from_config(config)
    job = define_asset_job(
        SQS_JOB_NAME,
        selection=AssetSelection.assets(TRANSACTIONS_KEY, *(group_asset_key(g) for g in sorted(catalog.groups))),
        executor_def=in_process_executor,
        description="One SQS job: one group of one partition (plus transactions if that partition has none yet), "
                    "in one process; the SQS sensor bounds how many run at once.",
        tags={SOURCE_TAG: SOURCE_SQS},
    )

    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=settings.minimum_interval_seconds,
        default_status=DefaultSensorStatus.RUNNING if settings.running else DefaultSensorStatus.STOPPED,
        description=f"Runs each (group, partition) job from SQS queue {settings.queue} exactly once, at most "
                    f"{settings.max_concurrent} at a time.",
    )
    def sqs_jobs(context: SensorEvaluationContext, sqs: SQSResource) -> SensorResult:
        return SQSJobConsumer(context, sqs, catalog, settings).tick()

    return sqs_jobs


def build_resources(config: ProjectConfig) -> dict[str, Any]:
    """``sqs``: the job queue, connection details from the standard AWS environment."""
    return {"sqs": SQSResource(queue_name=sqs_settings(config).queue)}


def build_sensors(config: ProjectConfig, all_groups_job: Any = None) -> list[SensorDefinition]:
    return [build_sqs_sensor(config)]
