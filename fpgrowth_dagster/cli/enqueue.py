"""``fpgrowth-dagster enqueue``: put one job per (group, partition) on the SQS FIFO job queue.

The enqueue-only mode of ``execute_fpgrowth_with_sqs``. Each job goes to its group's message group,
with its stable job id as the deduplication id, so sending the same job twice within SQS's
five-minute deduplication window stores it once (and the sensor drops later copies by job id).
Every group and the partition are checked against the project config before anything is sent.
``--create`` makes the queue and its FIFO dead-letter queue, with a redrive policy after
``max_receive_count`` receives.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "enqueue",
        help="Put one job per (group, partition) on the SQS job queue (the sensor runs them).",
        description="Send one message per (group, partition) job to the SQS FIFO job queue named in the project "
                    "config's sqs section. Connection details come from the standard AWS environment "
                    "(AWS_ENDPOINT_URL, AWS_REGION, the credential chain).",
    )
    add_job_arguments(parser)
    parser.add_argument("--create", action="store_true",
                        help="create the queue and its FIFO dead-letter queue (with a redrive policy) if missing")
    parser.add_argument("--max-receive-count", type=int, metavar="N",
                        help="with --create: receives before a message moves to the dead-letter queue "
                             "(default: sqs.max_receive_count of the config)")
    parser.set_defaults(func=run_enqueue)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``enqueue`` and ``sqs run``: which jobs, which queue, which config."""
    parser.add_argument("--partition", required=True, metavar="KEY", help="partition key, e.g. 2011-03-01")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--groups", metavar="G1,G2", help="comma-separated group names from the project config")
    which.add_argument("--all-groups", action="store_true", help="every group of the project config")
    parser.add_argument("--queue", metavar="NAME", help="FIFO queue name (default: sqs.queue of the config)")
    parser.add_argument("--request-id", metavar="ID",
                        help="part of each job id: jobs with a new request id run again even if the same group "
                             "and partition ran before")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="project config (default: $FPGROWTH_CONFIG, ./fpgrowth.yaml, the packaged demo)")


@dataclass(frozen=True)
class JobPlan:
    """What to send where: validated jobs and the settings of the queue they go to."""

    config: Any  # ProjectConfig
    settings: Any  # SQSSettings
    jobs: list[Any]  # list[SQSJob]


class UsageError(ValueError):
    """A group, partition or option the project config does not allow; nothing was sent."""


def plan_jobs(args: argparse.Namespace, **setting_overrides: Any) -> JobPlan:
    """Load the config and check every requested job; raises UsageError/ConfigError before any send."""
    from fpgrowth_dagster.config import load_project_config
    from fpgrowth_dagster.sqs import InvalidJobMessage, JobCatalog, SQSJob, sqs_settings

    config = load_project_config(args.config)
    settings = sqs_settings(config)
    overrides = {"queue": args.queue, **setting_overrides}
    try:
        settings = settings.replace(**overrides)
    except ValueError as exc:  # an override from the command line: name its option
        raise UsageError(re.sub(r"^<config>: sqs\.(\w+)", lambda m: "--" + m.group(1).replace("_", "-"),
                                str(exc))) from None
    if args.all_groups:
        groups = [g.name for g in config.groups]
    else:
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        if not groups:
            raise UsageError("--groups: no group names given")
    if args.request_id is not None and not args.request_id.strip():
        raise UsageError("--request-id: must not be empty")
    catalog = JobCatalog.from_config(config)
    jobs = [SQSJob(group=g, partition=args.partition, request=args.request_id) for g in dict.fromkeys(groups)]
    problems = []
    for job in jobs:
        try:
            catalog.check(job)
        except InvalidJobMessage as exc:
            problems.append(str(exc))
    if problems:
        raise UsageError(f"{config.path}: " + "; ".join(dict.fromkeys(problems)) + " (nothing was sent)")
    return JobPlan(config=config, settings=settings, jobs=jobs)


def send_plan(plan: JobPlan, *, create: bool, out: TextIO | None = None) -> list[Any]:
    """Create the queues if asked, send the jobs, print one line per job; returns the SentJob list."""
    out = out or sys.stdout
    from fpgrowth_dagster.sqs import SQSResource, create_job_queues, send_jobs

    resource = SQSResource(queue_name=plan.settings.queue)
    if create:
        url, dlq_url = create_job_queues(resource, plan.settings)
        print(f"queue {url} (dead-letter queue {dlq_url}, after {plan.settings.max_receive_count} receives)",
              file=out)
    else:
        url = resource.get_queue_url()
    sent = send_jobs(resource.get_client(), url, plan.jobs)
    for item in sent:
        print(f"enqueued {item.job.job_id}  message {item.message_id}  group {item.job.message_group_id}  "
              f"dedup {item.job.deduplication_id}", file=out)
    print(f"{len(sent)} job(s) on {plan.settings.queue} at {resource.describe_endpoint()}", file=out)
    return sent


def run_enqueue(args: argparse.Namespace) -> int:
    from fpgrowth_dagster.config import ConfigError
    from fpgrowth_dagster.sqs import SQSError

    try:
        overrides = {"max_receive_count": args.max_receive_count} if args.max_receive_count is not None else {}
        plan = plan_jobs(args, **overrides)
    except (UsageError, ConfigError) as exc:
        print(f"fpgrowth-dagster enqueue: error: {exc}", file=sys.stderr)
        return 2
    try:
        send_plan(plan, create=args.create)
    except SQSError as exc:
        print(f"fpgrowth-dagster enqueue: error: {exc}", file=sys.stderr)
        return 1
    return 0
