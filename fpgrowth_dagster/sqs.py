"""The SQS job queue: its settings, the resource that talks to it, and the job message schema.

A job is one (group, partition) pair. Its id, ``"<group>:<partition>"`` (plus ``"@<request>"`` when a
request id asks for a deliberate re-run), is stable: it is the run key of the Dagster run that
executes the job and the tag that lets the sensor find that run, and it (or its hash, when it has
characters SQS does not allow) is the FIFO ``MessageDeduplicationId``. The message body is JSON:
``{"version": 1, "group": ..., "partition": ...}`` with an optional ``"request"``.

``SQSResource`` is configured like dagster-aws's ``S3Resource``: endpoint, region and credentials come
from the standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``, the credential chain) unless
set in config, and every process keeps one boto3 client per configuration.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from fpgrowth_dagster.config import ConfigError

MESSAGE_VERSION = 1
# Tags on every run the SQS sensor requests: the source, the queue, the job id and the message.
SOURCE_TAG = "fpgrowth/source"
SOURCE_SQS = "sqs"
QUEUE_TAG = "fpgrowth/sqs_queue"
JOB_ID_TAG = "fpgrowth/sqs_job_id"
MESSAGE_ID_TAG = "fpgrowth/sqs_message_id"
REQUEST_TAG = "fpgrowth/sqs_request"

# SQS MessageGroupId / MessageDeduplicationId: 1-128 printable ASCII characters, no spaces.
_SQS_TOKEN_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
_QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,75}\.fifo$")
_MAX_BODY_BYTES = 256 * 1024


class SQSError(RuntimeError):
    """The queue cannot be used (missing, unreachable, bad credentials): the message names the queue."""


class InvalidJobMessage(ValueError):
    """A message that is not a valid job; it is never launched and ends in the dead-letter queue."""


def sqs_token(text: str) -> str:
    """``text`` if SQS accepts it as a group/deduplication id, else a readable prefix plus a hash of it."""
    if _SQS_TOKEN_RE.match(text):
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    readable = re.sub(r"[^\x21-\x7e]", "_", text)[:80]
    return f"{readable}~{digest}"


@dataclass(frozen=True)
class SQSJob:
    """One queued unit of work: mine ``group`` for ``partition``."""

    group: str
    partition: str
    request: str | None = None

    @property
    def job_id(self) -> str:
        """Stable id: the run key of the job's run, and the base of the deduplication id."""
        base = f"{self.group}:{self.partition}"
        return f"{base}@{self.request}" if self.request else base

    @property
    def deduplication_id(self) -> str:
        return sqs_token(self.job_id)

    @property
    def message_group_id(self) -> str:
        """One FIFO message group per group: a group's jobs stay ordered, other groups never wait."""
        return sqs_token(self.group)

    def to_body(self) -> str:
        body: dict[str, Any] = {"version": MESSAGE_VERSION, "group": self.group, "partition": self.partition}
        if self.request:
            body["request"] = self.request
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_body(cls, body: str | None) -> SQSJob:
        """Parse a message body; raises :class:`InvalidJobMessage` saying what is wrong with it."""
        if body is None or not body.strip():
            raise InvalidJobMessage("empty message body")
        if len(body.encode("utf-8", "replace")) > _MAX_BODY_BYTES:
            raise InvalidJobMessage("message body over 256 KiB")
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise InvalidJobMessage(f"body is not JSON ({exc.msg} at char {exc.pos}): {body[:80]!r}") from None
        if not isinstance(data, dict):
            raise InvalidJobMessage(f"body must be a JSON object, got {type(data).__name__}: {body[:80]!r}")
        version = data.get("version")
        if version != MESSAGE_VERSION:
            raise InvalidJobMessage(f"unsupported message version {version!r} (expected {MESSAGE_VERSION})")
        unknown = sorted(set(data) - {"version", "group", "partition", "request"})
        if unknown:
            raise InvalidJobMessage(f"unknown field(s) {', '.join(map(repr, unknown))}")
        values: dict[str, str | None] = {}
        for name in ("group", "partition", "request"):
            value = data.get(name)
            if name == "request" and value is None:
                values[name] = None
                continue
            if not isinstance(value, str) or not value.strip():
                raise InvalidJobMessage(f"field {name!r} must be a non-empty string, got {value!r}")
            values[name] = value
        return cls(group=values["group"], partition=values["partition"], request=values["request"])


@dataclass(frozen=True)
class JobCatalog:
    """The groups and partitions a job may name: the sensor never launches, and the CLI never sends, others."""

    groups: frozenset[str]
    partitions_def: Any  # dagster PartitionsDefinition

    @classmethod
    def from_config(cls, config: Any) -> JobCatalog:
        from fpgrowth_dagster.partitions import build_partitions_def

        return cls(frozenset(g.name for g in config.groups), build_partitions_def(config.partitions))

    def check(self, job: SQSJob) -> None:
        """Raise :class:`InvalidJobMessage` if the job names an unknown group or partition."""
        if job.group not in self.groups:
            raise InvalidJobMessage(f"unknown group {job.group!r} (known: {', '.join(sorted(self.groups))})")
        if not self.partitions_def.has_partition_key(job.partition):
            keys = self.partitions_def.get_partition_keys()
            known = f"{keys[0]} .. {keys[-1]}" if len(keys) > 1 else ", ".join(keys) or "none yet"
            raise InvalidJobMessage(f"unknown partition {job.partition!r} for group {job.group!r} "
                                    f"(partitions: {known})")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SQSSettings:
    """The ``sqs:`` section of the project config: the queues and how the sensor consumes them."""

    queue: str = "fpgrowth-jobs.fifo"
    dead_letter_queue: str | None = None  # default: "<queue>-dlq.fifo"
    max_receive_count: int = 5
    max_concurrent: int = 2
    minimum_interval_seconds: int = 30
    visibility_timeout_seconds: int = 300
    wait_time_seconds: int = 5
    invalid_message_retry_seconds: int = 30
    tick_budget_seconds: int = 30
    running: bool = False

    @property
    def dead_letter_queue_name(self) -> str:
        return self.dead_letter_queue or f"{self.queue[: -len('.fifo')]}-dlq.fifo"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, path: str | Path = "<config>") -> SQSSettings:
        """Validate the ``sqs:`` mapping; errors name the file and the key."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path}: sqs.{unknown[0]}: unknown key; expected one of: {', '.join(sorted(known))}")
        settings = cls(**data)
        settings.validate(path)
        return settings

    def replace(self, **changes: Any) -> SQSSettings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({k: v for k, v in changes.items() if v is not None})
        settings = SQSSettings(**values)
        settings.validate()
        return settings

    def validate(self, path: str | Path = "<config>") -> None:
        def fail(key: str, message: str) -> ConfigError:
            return ConfigError(f"{path}: sqs.{key}: {message}")

        for name in ("queue", "dead_letter_queue_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _QUEUE_NAME_RE.match(value):
                raise fail(name.replace("_name", ""), f"expected a FIFO queue name (letters, digits, '-', '_', "
                                                      f"at most 80 characters, ending in .fifo), got {value!r}")
        if self.queue == self.dead_letter_queue_name:
            raise fail("dead_letter_queue", "must differ from sqs.queue")
        bounds = {
            "max_receive_count": (1, 1000),
            "max_concurrent": (1, 10_000),
            "minimum_interval_seconds": (1, 86_400),
            "visibility_timeout_seconds": (1, 43_200),
            "wait_time_seconds": (0, 20),
            "invalid_message_retry_seconds": (0, 43_200),
            "tick_budget_seconds": (1, 55),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise fail(name, f"expected an integer from {low} to {high}, got {value!r}")
        if not isinstance(self.running, bool):
            raise fail("running", f"expected true or false, got {self.running!r}")
        if self.wait_time_seconds >= self.tick_budget_seconds:
            raise fail("wait_time_seconds", f"must be below sqs.tick_budget_seconds ({self.tick_budget_seconds})")
        # A received message must stay invisible until a later tick has seen its run: well above the
        # time between two ticks (the daemon evaluates sensors at most every 5 s) plus one tick.
        floor = 2 * (max(self.minimum_interval_seconds, 5) + self.tick_budget_seconds)
        if self.visibility_timeout_seconds < floor:
            raise fail("visibility_timeout_seconds", f"{self.visibility_timeout_seconds} s is too short: a message "
                                                     f"must stay invisible for at least two ticks ({floor} s with "
                                                     "these settings)")


def sqs_settings(project_config: Any) -> SQSSettings:
    """The SQS settings of a loaded project config (defaults when it has no ``sqs:`` section)."""
    raw = getattr(project_config, "sqs", None)
    if isinstance(raw, SQSSettings):
        return raw
    return SQSSettings.from_mapping(raw, getattr(project_config, "path", "<config>"))


# --------------------------------------------------------------------------- the resource

class SQSResource(ConfigurableResource):
    """An SQS FIFO queue of jobs. Unset connection fields come from the standard AWS environment."""

    queue_name: str = Field(default="fpgrowth-jobs.fifo", description="The FIFO job queue.")
    region_name: str | None = Field(default=None, description="Default: AWS_REGION / AWS_DEFAULT_REGION.")
    endpoint_url: str | None = Field(default=None, description="Default: AWS_ENDPOINT_URL(_SQS).")
    max_attempts: int = Field(default=5, description="botocore retry attempts (standard mode).")
    profile_name: str | None = None
    use_ssl: bool = True
    verify: bool | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None

    def get_client(self) -> Any:
        """The process's boto3 SQS client for this configuration (created once, then reused)."""
        from fpgrowth_dagster.resources import resource_client

        return resource_client("sqs", self)

    def describe_endpoint(self) -> str:
        client = self.get_client()
        return f"{client.meta.endpoint_url} ({client.meta.region_name})"

    def get_queue_url(self, queue_name: str | None = None) -> str:
        """The queue's URL, looked up on each call so that a deleted queue is noticed at once.

        Raises :class:`SQSError` naming the queue if it is missing or unreachable.
        """
        return queue_url(self.get_client(), queue_name or self.queue_name)


def queue_url(client: Any, name: str) -> str:
    """Look up a queue URL, turning 'missing queue' and access errors into an :class:`SQSError`."""
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"{client.meta.endpoint_url} ({client.meta.region_name})"
    try:
        return client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if "NonExistentQueue" in code or "QueueDoesNotExist" in code:
            raise SQSError(f"SQS queue {name!r} does not exist at {where}; create it with "
                           f"`fpgrowth-dagster enqueue --create ...`") from exc
        raise SQSError(f"cannot use SQS queue {name!r} at {where}: {code}: {exc}") from exc
    except BotoCoreError as exc:
        raise SQSError(f"cannot reach SQS queue {name!r} at {where}: {exc}") from exc


# --------------------------------------------------------------------------- queue operations


def create_job_queues(resource: SQSResource, settings: SQSSettings) -> tuple[str, str]:
    """Create (or update) the FIFO job queue and its FIFO dead-letter queue with a redrive policy."""
    client = resource.get_client()
    fifo = {"FifoQueue": "true"}
    try:
        dlq_url = client.create_queue(QueueName=settings.dead_letter_queue_name, Attributes=fifo)["QueueUrl"]
        client.set_queue_attributes(QueueUrl=dlq_url, Attributes={"MessageRetentionPeriod": "1209600"})
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = client.create_queue(QueueName=settings.queue, Attributes=fifo)["QueueUrl"]
        client.set_queue_attributes(QueueUrl=url, Attributes={
            "ContentBasedDeduplication": "false",
            "VisibilityTimeout": str(settings.visibility_timeout_seconds),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.max_receive_count)}),
        })
    except Exception as exc:
        if isinstance(exc, SQSError):
            raise
        raise SQSError(f"cannot create SQS queues {settings.queue!r} and {settings.dead_letter_queue_name!r} "
                       f"at {resource.describe_endpoint()}: {exc}") from exc
    return url, dlq_url


@dataclass(frozen=True)
class SentJob:
    job: SQSJob
    message_id: str


def send_jobs(client: Any, url: str, jobs: Iterable[SQSJob]) -> list[SentJob]:
    """Send jobs in batches of ten; raises :class:`SQSError` naming every job SQS refused."""
    jobs = list(jobs)
    sent: list[SentJob] = []
    for start in range(0, len(jobs), 10):
        batch = jobs[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": job.to_body(), "MessageGroupId": job.message_group_id,
                    "MessageDeduplicationId": job.deduplication_id} for i, job in enumerate(batch)]
        response = client.send_message_batch(QueueUrl=url, Entries=entries)
        failed = response.get("Failed") or []
        if failed:
            reasons = "; ".join(f"{batch[int(f['Id'])].job_id}: {f.get('Code')}: {f.get('Message')}" for f in failed)
            raise SQSError(f"SQS refused {len(failed)} job(s) (sent so far: {len(sent)}): {reasons}")
        sent.extend(SentJob(batch[int(ok["Id"])], ok["MessageId"]) for ok in response.get("Successful", []))
    return sent


def queue_depth(client: Any, url: str) -> dict[str, int]:
    """Visible, in-flight and delayed message counts of a queue (approximate, as SQS reports them)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {"visible": int(attributes.get(names[0], 0)), "in_flight": int(attributes.get(names[1], 0)),
            "delayed": int(attributes.get(names[2], 0))}


def jobs_for(groups: Sequence[str], partition: str, request: str | None = None) -> list[SQSJob]:
    return [SQSJob(group=group, partition=partition, request=request) for group in groups]
