"""``fpgrowth-dagster sqs run``: enqueue, process with the Dagster daemon until drained, print a summary.

The one-shot full mode of ``execute_fpgrowth_with_sqs(max_concurrent=N)``: the jobs go on the queue
(created if missing), then ``dagster-daemon run`` runs the ``sqs_jobs`` sensor and the run queue
with ``sqs.max_concurrent = N`` until every job of this request has a finished run and the queue is
empty. The daemon runs in its own session and is stopped with SIGTERM. The exit code is 1 if a job
failed, was lost or ran twice. Runs are recorded in the instance at ``$DAGSTER_HOME`` like any other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fpgrowth_dagster.cli.enqueue import UsageError, add_job_arguments, plan_jobs, send_plan

POLL_SECONDS = 2.0
# The one-shot mode drains as fast as the daemon allows (it evaluates sensors every 5 s at most).
ONE_SHOT_INTERVAL_SECONDS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sqs", help="The SQS job queue: one-shot enqueue-and-process runs.")
    sub = parser.add_subparsers(dest="sqs_command", metavar="SUBCOMMAND")
    run = sub.add_parser(
        "run",
        help="Enqueue jobs, run the Dagster daemon until they are done, print a summary.",
        description="Enqueue one job per (group, partition), then run `dagster-daemon run` (the sqs_jobs sensor and "
                    "the run queue) until every job has a finished run and the queue is empty. Needs DAGSTER_HOME. "
                    "Exits 1 if a job failed, was lost or ran twice.",
    )
    add_job_arguments(run)
    run.add_argument("--max-concurrent", type=int, metavar="N",
                     help="jobs queued or running at once (default: sqs.max_concurrent of the config)")
    run.add_argument("--workspace", type=Path, metavar="PATH",
                     help="workspace.yaml for the daemon (default: the fpgrowth_dagster.definitions module)")
    run.add_argument("--timeout", type=float, default=0, metavar="SECONDS",
                     help="give up (exit 1) after this long; 0 waits for as long as it takes (default)")
    run.set_defaults(func=run_one_shot)
    parser.set_defaults(func=lambda args: (parser.print_help(sys.stderr), 2)[1])


# --------------------------------------------------------------------------- summary


@dataclass
class JobSummary:
    """What happened to a set of jobs, from the runs in the instance.

    A job's first run comes from the sensor; Dagster's run retries (a crashed run worker) add runs with
    a ``dagster/parent_run_id`` tag to its chain. ``duplicates`` counts extra first runs of a job: a job
    requested twice. A job's outcome is that of the latest run of its chain.
    """

    jobs: int
    runs: int = 0
    retries: int = 0
    outcomes: Counter = field(default_factory=Counter)
    duplicates: int = 0
    lost: list[str] = field(default_factory=list)
    failed_jobs: list[str] = field(default_factory=list)
    max_concurrency: int = 0

    @property
    def succeeded(self) -> int:
        return self.outcomes.get("SUCCESS", 0)

    @property
    def failed(self) -> int:
        return self.outcomes.get("FAILURE", 0) + self.outcomes.get("CANCELED", 0)

    @property
    def unfinished(self) -> int:
        return sum(n for status, n in self.outcomes.items() if status not in ("SUCCESS", "FAILURE", "CANCELED"))

    @property
    def ok(self) -> bool:
        return not (self.failed or self.lost or self.duplicates or self.unfinished)

    def lines(self) -> list[str]:
        retries = f", {self.retries} of them retries" if self.retries else ""
        unfinished = f", unfinished {self.unfinished}" if self.unfinished else ""
        lines = [
            f"jobs: {self.jobs} (succeeded {self.succeeded}, failed {self.failed}{unfinished})",
            f"runs: {self.runs}{retries}",
            f"duplicates: {self.duplicates}",
            f"lost: {len(self.lost)}" + (f" ({', '.join(self.lost[:10])})" if self.lost else ""),
            f"max runs queued or in progress at once: {self.max_concurrency}",
        ]
        if self.failed_jobs:
            lines.append(f"failed jobs: {', '.join(self.failed_jobs)}")
        return lines


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of ``[start, end)`` intervals that hold at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    current = best = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def summarize_jobs(instance: Any, job_ids: Sequence[str], tags: Mapping[str, str]) -> JobSummary:
    """The outcome of each job from the runs carrying ``tags``; a run holds a slot from creation to end."""
    from dagster import RunsFilter
    from dagster._core.storage.tags import PARENT_RUN_ID_TAG

    from fpgrowth_dagster.sqs import JOB_ID_TAG

    records = sorted(instance.get_run_records(filters=RunsFilter(tags=dict(tags))),
                     key=lambda r: r.create_timestamp)
    summary = JobSummary(jobs=len(job_ids), runs=len(records))
    latest: dict[str, Any] = {}
    first_runs: Counter = Counter()
    now = time.time()
    intervals = []
    for record in records:
        run = record.dagster_run
        job_id = run.tags.get(JOB_ID_TAG)
        if PARENT_RUN_ID_TAG in run.tags:
            summary.retries += 1
        else:
            first_runs[job_id] += 1
        latest[job_id] = run
        intervals.append((record.create_timestamp.timestamp(), record.end_time or now))
    for job_id in job_ids:
        run = latest.get(job_id)
        if run is None:
            summary.lost.append(job_id)
            continue
        summary.outcomes[run.status.value] += 1
        if run.status.value in ("FAILURE", "CANCELED"):
            summary.failed_jobs.append(f"{job_id} ({run.status.value}, run {run.run_id})")
    summary.duplicates = sum(count - 1 for count in first_runs.values() if count > 1)
    summary.max_concurrency = max_overlap(intervals)
    return summary


# --------------------------------------------------------------------------- the daemon


def write_workspace(directory: Path) -> Path:
    """A workspace with the project's code location, run by this Python."""
    path = directory / "workspace.yaml"
    path.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: fpgrowth_dagster.definitions\n"
        f"      executable_path: {sys.executable}\n"
    )
    return path


def write_run_config(config_path: Path, settings: Any, directory: Path) -> Path:
    """The project config with this run's ``sqs`` settings (queue, max_concurrent, sensor running)."""
    import yaml

    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    sqs = dict(data.get("sqs") or {})
    sqs.update(queue=settings.queue, dead_letter_queue=settings.dead_letter_queue_name,
               max_concurrent=settings.max_concurrent, running=True,
               minimum_interval_seconds=min(settings.minimum_interval_seconds, ONE_SHOT_INTERVAL_SECONDS))
    data["sqs"] = sqs
    path = directory / "fpgrowth.yaml"
    path.write_text(f"# {config_path} with the sqs settings of one `fpgrowth-dagster sqs run`\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path


def dagster_bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def ensure_sensor_running(instance: Any, workspace: Path, env: Mapping[str, str]) -> None:
    """Start the sensor if the instance remembers it as stopped (its running default applies otherwise)."""
    import subprocess

    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

    from fpgrowth_dagster.sensors import SENSOR_NAME

    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    if any(s.instigator_name == SENSOR_NAME and s.status == InstigatorStatus.STOPPED for s in states):
        subprocess.run([dagster_bin("dagster"), "sensor", "start", SENSOR_NAME, "-w", str(workspace)],
                       env=dict(env), check=True, capture_output=True, timeout=300)


class DaemonError(RuntimeError):
    """The daemon exited before the jobs were done."""


def wait_until_drained(instance: Any, daemon: Any, client: Any, url: str, job_ids: Sequence[str],
                       tags: Mapping[str, str], *, timeout: float, out: TextIO) -> bool:
    """Poll until each job has a finished run and the queue is empty; False on timeout."""
    from dagster import RunsFilter

    from fpgrowth_dagster.sensors import ACTIVE_STATUSES
    from fpgrowth_dagster.sqs import JOB_ID_TAG, QUEUE_TAG, SOURCE_SQS, SOURCE_TAG, queue_depth
    from fpgrowth_dagster.stack import log_tail

    deadline = time.monotonic() + timeout if timeout else None
    reported: set[str] = set()
    wanted = set(job_ids)
    while True:
        if daemon.poll() is not None:
            raise DaemonError(f"dagster-daemon exited with code {daemon.returncode}:\n{log_tail(daemon)}")
        latest: dict[str, Any] = {}
        for run in reversed(instance.get_runs(filters=RunsFilter(tags=dict(tags)))):  # oldest first
            latest[run.tags.get(JOB_ID_TAG)] = run  # a retry of a crashed run replaces its parent
            if run.is_finished and run.run_id not in reported:
                reported.add(run.run_id)
                print(f"run {run.run_id} {run.tags.get(JOB_ID_TAG)}: {run.status.value}", file=out, flush=True)
        finished = {job_id for job_id, run in latest.items() if run.is_finished}
        active = instance.get_runs(filters=RunsFilter(
            tags={SOURCE_TAG: SOURCE_SQS, QUEUE_TAG: tags[QUEUE_TAG]}, statuses=ACTIVE_STATUSES), limit=1)
        if wanted <= finished and not active and sum(queue_depth(client, url).values()) == 0:
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(POLL_SECONDS)


def run_one_shot(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from fpgrowth_dagster.config import ConfigError
    from fpgrowth_dagster.sqs import SQSError

    out = out or sys.stdout
    home = os.environ.get("DAGSTER_HOME")
    if not home or not Path(home).is_dir():
        print("fpgrowth-dagster sqs run: error: set DAGSTER_HOME to an existing directory (the Dagster instance "
              "that records the runs; its dagster.yaml may copy the repository's dagster.yaml)", file=sys.stderr)
        return 2
    if not args.request_id:
        args.request_id = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
    try:
        plan = plan_jobs(args, max_concurrent=args.max_concurrent)
    except (UsageError, ConfigError) as exc:
        print(f"fpgrowth-dagster sqs run: error: {exc}", file=sys.stderr)
        return 2
    try:
        send_plan(plan, create=True, out=out)
    except SQSError as exc:
        print(f"fpgrowth-dagster sqs run: error: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="fpgrowth-sqs-run-") as tmp:
        return _process(args, plan, Path(tmp), Path(home), out)


def _process(args: argparse.Namespace, plan: Any, tmp: Path, home: Path, out: TextIO) -> int:
    from dagster import DagsterInstance

    from fpgrowth_dagster.sqs import QUEUE_TAG, REQUEST_TAG, SQSResource, queue_depth
    from fpgrowth_dagster.stack import start_process, stop_process

    workspace = args.workspace or write_workspace(tmp)
    env = {**os.environ, "FPGROWTH_CONFIG": str(write_run_config(plan.config.path, plan.settings, tmp))}
    tags = {QUEUE_TAG: plan.settings.queue, REQUEST_TAG: args.request_id}
    job_ids = [job.job_id for job in plan.jobs]
    resource = SQSResource(queue_name=plan.settings.queue)
    client = resource.get_client()
    url = resource.get_queue_url()
    log_path = home / "logs" / f"sqs-run-{args.request_id}.log"
    with DagsterInstance.get() as instance:
        ensure_sensor_running(instance, workspace, env)
        print(f"processing {len(job_ids)} job(s) of request {args.request_id}, at most "
              f"{plan.settings.max_concurrent} at a time (daemon log: {log_path})", file=out, flush=True)
        daemon = start_process([dagster_bin("dagster-daemon"), "run", "-w", str(workspace)], env=env,
                               log_path=log_path)
        try:
            drained = wait_until_drained(instance, daemon, client, url, job_ids, tags, timeout=args.timeout,
                                         out=out)
        except DaemonError as exc:
            print(f"fpgrowth-dagster sqs run: error: {exc}", file=sys.stderr)
            drained = False
        finally:
            stop_process(daemon)
        summary = summarize_jobs(instance, job_ids, tags)
    dlq_depth = sum(queue_depth(client, resource.get_queue_url(plan.settings.dead_letter_queue_name)).values())
    print("summary:", file=out)
    for line in summary.lines() + [f"dead-letter queue {plan.settings.dead_letter_queue_name}: {dlq_depth} message(s)"]:
        print(f"  {line}", file=out)
    if not drained:
        print(f"  not drained{' within --timeout' if args.timeout else ''}", file=out)
    out.flush()
    return 0 if drained and summary.ok else 1
