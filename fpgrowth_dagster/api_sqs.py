"""``enqueue_jobs``: the Python form of ``execute_fpgrowth_with_sqs(max_concurrent=N)`` and its two modes.

The jobs go on the SQS FIFO job queue exactly as ``fpgrowth-dagster enqueue`` sends them (one per
(group, partition), a message group per group, the stable job id as deduplication id), with a
request id of their own so that a second call runs them again. Who processes them:

- a daemon already serving ``$DAGSTER_HOME`` (``dagster dev``, ``dagster-daemon run``) with the
  ``sqs_jobs`` sensor running: nothing more to start; ``wait=True`` follows the runs it makes;
- no daemon, ``wait=False``: the enqueue-only mode; the jobs wait for a daemon;
- no daemon, ``wait=True``: the one-shot full mode, ``fpgrowth-dagster sqs run`` started in a
  detached process (its own session), which runs the daemon until the queue is drained.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpgrowth_dagster.api_support import LaunchError, find_services

JOBS_LOG_DIR = "fpgrowth_launches"


@dataclass
class EnqueueResult:
    """The jobs of one request, and (once waited for) the run of each job and its outcome."""

    request_id: str
    partition: str
    queue: str
    job_ids: list[str]
    mode: str  # "daemon", "enqueue-only" or "one-shot"
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # job id -> {"run_id", "status"}
    summaries: dict[str, Any] = field(default_factory=dict)  # job id -> demo_summary.RunSummary
    log_path: Path | None = None
    _process: Any = field(default=None, repr=False)

    @property
    def succeeded(self) -> bool:
        return len(self.runs) == len(self.job_ids) and all(r["status"] == "SUCCESS" for r in self.runs.values())

    def group_table(self) -> Any:
        """One row per job: group, run id, run status, and the group's mining figures."""
        import pandas as pd

        rows = []
        for job_id in self.job_ids:
            group = job_id.split(":", 1)[0]
            run = self.runs.get(job_id, {})
            line = None
            summary = self.summaries.get(job_id)
            if summary is not None:
                line = summary.groups.get(group)
            rows.append({"group": group, "job_id": job_id, "run_id": run.get("run_id"),
                         "run_status": run.get("status", "not run yet"),
                         "status": line.status if line else None, "itemsets": line.itemsets if line else None,
                         "rules": line.rules if line else None, "reason": line.reason if line else None})
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        return (f"<p><b>{len(self.job_ids)} SQS job(s) of request {self.request_id} on {self.queue} "
                f"({self.mode})</b></p>" + self.group_table().to_html(index=False))


def new_request_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def _job_args(partition: str, groups: Sequence[str] | None, queue: str | None, request_id: str,
              config_path: str | Path | None) -> argparse.Namespace:
    return argparse.Namespace(partition=partition, groups=",".join(groups) if groups else None,
                              all_groups=not groups, queue=queue, request_id=request_id,
                              config=Path(config_path) if config_path else None)


def enqueue(partition: str, groups: Sequence[str] | None = None, *, max_concurrent: int | None = None,
            wait: bool = False, create: bool = True, queue: str | None = None, request_id: str | None = None,
            timeout: float | None = None, progress: bool = True, config_path: str | Path | None = None
            ) -> EnqueueResult:
    """Enqueue the jobs (and with ``wait=True`` see them processed); see the module docstring."""
    import io

    from fpgrowth_dagster.cli.enqueue import UsageError, plan_jobs, send_plan
    from fpgrowth_dagster.config import ConfigError
    from fpgrowth_dagster.sqs import SQSError

    if isinstance(groups, str):
        groups = [groups]
    request_id = request_id or new_request_id()
    args = _job_args(partition, groups, queue, request_id, config_path)
    try:
        plan = plan_jobs(args, max_concurrent=max_concurrent)
    except (UsageError, ConfigError, ValueError) as exc:
        raise LaunchError(str(exc)) from None
    home_text = os.environ.get("DAGSTER_HOME")
    home = Path(home_text) if home_text else None
    daemon = bool(home and home.is_dir() and find_services(home)["daemon"])
    if wait and not daemon and (home is None or not home.is_dir()):
        raise LaunchError("wait=True needs DAGSTER_HOME (the instance that records the runs) set to an existing "
                          "directory; enqueue with wait=False to only put the jobs on the queue.")
    result = EnqueueResult(request_id=request_id, partition=partition, queue=plan.settings.queue,
                           job_ids=[job.job_id for job in plan.jobs],
                           mode="daemon" if daemon else ("one-shot" if wait else "enqueue-only"))
    if result.mode == "one-shot":
        result.log_path, result._process = _start_one_shot(plan, args, home, max_concurrent, config_path)
    else:
        out = io.StringIO()
        try:
            send_plan(plan, create=create, out=out)
        except SQSError as exc:
            raise LaunchError(f"{exc}\nSQS uses the standard AWS environment (AWS_ENDPOINT_URL, AWS_REGION, "
                              "credentials).") from None
        if daemon and max_concurrent is not None and max_concurrent != plan.settings.max_concurrent:
            print(f"note: the running sensor takes at most sqs.max_concurrent of its own config at once; "
                  f"max_concurrent={max_concurrent} applies only to the one-shot mode", file=sys.stderr)
    print(f"Enqueued {len(result.job_ids)} job(s) of request {request_id} on {result.queue} ({result.mode})",
          file=sys.stderr, flush=True)
    if result.mode == "enqueue-only":
        print("No daemon serves this instance: the jobs wait until `dagster dev` (sqs_jobs sensor on) or "
              "`fpgrowth-dagster sqs run` processes them.", file=sys.stderr)
    if wait:
        wait_for_jobs(result, timeout=timeout, progress=progress)
    return result


def _start_one_shot(plan: Any, args: argparse.Namespace, home: Path, max_concurrent: int | None,
                    config_path: str | Path | None) -> tuple[Path, Any]:
    from fpgrowth_dagster.stack import start_process

    argv = [sys.executable, "-m", "fpgrowth_dagster", "sqs", "run", "--partition", args.partition,
            "--request-id", args.request_id, "--queue", plan.settings.queue]
    argv += ["--groups", args.groups] if args.groups else ["--all-groups"]
    if max_concurrent is not None:
        argv += ["--max-concurrent", str(max_concurrent)]
    if config_path:
        argv += ["--config", str(config_path)]
    log_path = home / JOBS_LOG_DIR / f"sqs-{args.request_id}.log"
    return log_path, start_process(argv, env=dict(os.environ), log_path=log_path, cwd=Path.cwd())


def wait_for_jobs(result: EnqueueResult, *, timeout: float | None = None, progress: bool = True,
                  poll: float = 2.0) -> EnqueueResult:
    """Follow the runs of the request's jobs until each has a finished run (and a one-shot process has exited)."""
    from dagster import DagsterInstance, RunsFilter

    from fpgrowth_dagster.demo_summary import collect_run_summary
    from fpgrowth_dagster.run_watch import Progress, RunState
    from fpgrowth_dagster.sqs import JOB_ID_TAG, QUEUE_TAG, REQUEST_TAG

    started = time.monotonic()
    display = Progress(f"SQS request {result.request_id}", enabled=progress)
    tags = {QUEUE_TAG: result.queue, REQUEST_TAG: result.request_id}
    state = None
    try:
        with DagsterInstance.get() as instance:
            while True:
                runs = instance.get_runs(filters=RunsFilter(tags=tags))
                for run in runs:
                    result.runs[run.tags.get(JOB_ID_TAG)] = {"run_id": run.run_id, "status": run.status.value}
                statuses = [r["status"] for r in result.runs.values()]
                done = [s for s in statuses if s in ("SUCCESS", "FAILURE", "CANCELED")]
                state = RunState(result.request_id, "DONE" if len(done) == len(result.job_ids) else "PROCESSING",
                                 len(result.job_ids), statuses.count("SUCCESS"), len(done) - statuses.count("SUCCESS"),
                                 len(statuses) - len(done), unit="jobs", kind="request")
                display.update(state, time.monotonic() - started, result.partition)
                process_done = result._process is None or result._process.poll() is not None
                if len(done) == len(result.job_ids) and process_done:
                    break
                if result._process is not None and result._process.poll() is not None and \
                        len(done) < len(result.job_ids):
                    log = result.log_path.read_text(errors="replace")[-3000:] if result.log_path else ""
                    raise LaunchError(f"`fpgrowth-dagster sqs run` exited with code {result._process.returncode} "
                                      f"before every job had a run; log {result.log_path}:\n{log}")
                if timeout is not None and time.monotonic() - started > timeout:
                    raise TimeoutError(f"request {result.request_id}: {len(done)}/{len(result.job_ids)} jobs done "
                                       f"after {timeout:.0f} s; the jobs go on")
                time.sleep(poll)
            for job_id, run in result.runs.items():
                result.summaries[job_id] = collect_run_summary(instance, run["run_id"], result.partition,
                                                               run["status"])
    finally:
        display.close(state.line(time.monotonic() - started, result.partition) if state else "no runs yet")
    return result
