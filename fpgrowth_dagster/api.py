"""Launch ``all_groups_job`` and SQS jobs from Python (a notebook, a script) without running them in the caller.

Nothing here runs FP-Growth or starts a step process in the calling process: work is handed to the
Dagster instance, the same way the UI or ``dagster job launch`` hands it over, and the caller only
reads run records. Where the run goes depends on what is running (``mode="auto"``):

- ``webserver``: a ``dagster dev`` / ``dagster-webserver`` serves the instance (found among this
  machine's processes by its ``DAGSTER_HOME``, or given as ``webserver_url`` /
  ``$FPGROWTH_WEBSERVER_URL``): the run is launched through its GraphQL API, like the UI's Launch
  button, and goes through the run queue of its daemon.
- ``queue``: no webserver, but a daemon (``dagster-daemon run``) serves the instance: the run is
  submitted with ``dagster job launch`` in a child process and queued for that daemon.
- ``local``: nothing serves the instance: :mod:`fpgrowth_dagster.local_runner` executes the run in a
  detached process (its own session), which outlives the caller if need be and reaps every step
  process it starts.

With ``wait=True`` the call returns when the run has finished, with its status and a per-group
summary; meanwhile a progress bar (terminal) or an updating text line (notebook) shows the steps.
Interrupting the wait (Ctrl-C, the notebook's stop button) never stops the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpgrowth_dagster.api_support import (
    LaunchError,
    Target,
    check_s3_reachable,
    launch_graphql,
    plan_selection,
    resolve_target,
)
from fpgrowth_dagster.run_watch import FINISHED, GraphQLSource, InstanceSource, watch

JOB_NAME = "all_groups_job"
SOURCE_TAG = "fpgrowth/launched_from"
SOURCE_PYTHON = "python-api"
LAUNCH_LOG_DIR = "fpgrowth_launches"

__all__ = ["LaunchError", "RunHandle", "cancel_run", "enqueue_jobs", "get_run", "launch_all_groups",
           "launch_partitions", "wait_all"]


@dataclass
class RunHandle:
    """One launched run: its id, where it went, and (once finished) its status and per-group summary."""

    run_id: str
    partition: str
    target: Target
    groups: tuple[str, ...] | None = None
    status: str = "SUBMITTED"
    summary: Any = None  # demo_summary.RunSummary once finished
    seconds: float | None = None
    log_path: Path | None = None
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def mode(self) -> str:
        return self.target.mode

    @property
    def url(self) -> str | None:
        """The run's page in the UI (webserver mode)."""
        return f"{self.target.webserver_url}/runs/{self.run_id}" if self.target.webserver_url else None

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"

    def _source(self) -> Any:
        return GraphQLSource(self.target.webserver_url) if self.target.mode == "webserver" else InstanceSource()

    def refresh(self) -> str:
        """Read the run's current status (and its summary once it has finished)."""
        source = self._source()
        try:
            state = source.state(self.run_id)
            if state is not None:
                self.status = state.status
                if state.finished and self.summary is None:
                    self.summary = source.summary(self.run_id, self.partition, state.status)
        finally:
            source.close()
        self._reap()
        return self.status

    def wait(self, timeout: float | None = None, progress: bool = True) -> RunHandle:
        """Block until the run has finished; shows progress; returns self with status and summary filled in."""
        source = self._source()
        try:
            state = watch(source, self.run_id, self.partition, label=f"{JOB_NAME} {self.partition}",
                          timeout=timeout, progress=progress, alive=self._runner_problem)
            self.status = state.status
            self.seconds = time.monotonic() - self._started
            self.summary = source.summary(self.run_id, self.partition, state.status)
        except KeyboardInterrupt:
            print(f"Stopped waiting. Run {self.run_id} goes on; wait again with "
                  f"get_run({self.run_id!r}).wait(), or stop it with cancel_run({self.run_id!r}).", file=sys.stderr)
            raise
        finally:
            source.close()
        self._reap(timeout=30)
        return self

    def _runner_problem(self) -> str | None:
        """Why the run will never exist: the process that should create it has exited."""
        if self._process is None or self._process.poll() is None:
            return None
        log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path and self.log_path.exists() else ""
        return (f"the {self.mode} launcher of run {self.run_id} exited with code {self._process.returncode} "
                f"before the run was created; log {self.log_path}:\n{log}")

    def _reap(self, timeout: float = 0) -> None:
        """Collect the exit status of a finished child launcher, so that it never lingers as a zombie."""
        if self._process is None:
            return
        try:
            self._process.wait(timeout=timeout) if timeout else self._process.poll()
        except subprocess.TimeoutExpired:
            pass

    def cancel(self) -> None:
        cancel_run(self.run_id, webserver_url=self.target.webserver_url)

    def group_table(self) -> Any:
        """The per-group summary as a DataFrame (group, status, transactions, items, itemsets, rules, ...)."""
        import pandas as pd

        if self.summary is None:
            self.refresh()
        if self.summary is None:
            return pd.DataFrame(columns=["group", "status"])
        rows = []
        for line in self.summary.groups.values():
            rows.append({"group": line.group, "status": line.status, "transactions": line.transactions,
                         "items": line.items, "itemsets": line.itemsets, "rules": line.rules,
                         "seconds": line.seconds, "reason": line.reason,
                         "itemsets_uri": line.uris[0] if line.uris else None,
                         "rules_uri": line.uris[1] if len(line.uris) > 1 else None})
        return pd.DataFrame(rows)

    def report(self, top: int = 3) -> str:
        """The text summary ``make demo`` prints."""
        from fpgrowth_dagster.demo_summary import format_run_summary

        if self.summary is None:
            return f"run {self.run_id} ({self.partition}): {self.status}"
        return format_run_summary(self.summary, self.seconds or 0.0, top=top)

    def __str__(self) -> str:
        where = self.url or self.mode
        return f"run {self.run_id} of {JOB_NAME} for {self.partition}: {self.status} ({where})"

    def _repr_html_(self) -> str:
        import html

        head = f"<p><b>{html.escape(str(self))}</b></p>"
        if self.summary is None:
            return head
        return head + self.group_table().drop(columns=["itemsets_uri", "rules_uri"]).to_html(index=False)


def launch_all_groups(
    partition: str,
    max_concurrent: int | None = None,
    groups: Sequence[str] | None = None,
    wait: bool = True,
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool = True,
    mode: str = "auto",
    webserver_url: str | None = None,
    config_path: str | Path | None = None,
) -> RunHandle:
    """Launch ``all_groups_job`` for one partition on the Dagster instance; the replacement for
    ``execute_parallel_global_fpgrowth(num_workers=N)``.

    ``max_concurrent`` bounds the group steps running at once (the executor's ``max_concurrent``;
    default: the code location's, i.e. the CPUs available). ``groups`` restricts the run to these
    groups (plus ``transactions`` and ``group_comparison``). With ``wait=True`` (default) this returns
    once the run has finished; with ``wait=False`` at once (call ``.wait()`` later). Raises
    :class:`LaunchError` saying what is missing when no instance can take the run.
    """
    target = resolve_target(mode=mode, webserver_url=webserver_url, config_path=config_path)
    selection = plan_selection(target, partition, groups)
    config: dict[str, Any] = json.loads(json.dumps(dict(run_config or {})))
    if max_concurrent is not None:
        if int(max_concurrent) < 1:
            raise LaunchError(f"max_concurrent must be at least 1, got {max_concurrent!r}")
        config.setdefault("execution", {}).setdefault("config", {})["max_concurrent"] = int(max_concurrent)
    run_tags = {"dagster/partition": partition, SOURCE_TAG: SOURCE_PYTHON, **dict(tags or {})}
    run_id = str(uuid.uuid4())
    handle = RunHandle(run_id=run_id, partition=partition, target=target,
                       groups=tuple(groups) if groups else None)
    if target.mode == "webserver":
        handle.run_id = launch_graphql(target, run_config=config, tags=run_tags, selection=selection)
    else:
        if target.config is not None:
            check_s3_reachable(target.config)
        handle.log_path, handle._process = _start_launcher(target, run_id, config, run_tags, selection)
    print(f"Launched {handle} ({'waiting' if wait else 'not waiting'})", file=sys.stderr, flush=True)
    if wait:
        handle.wait(timeout=timeout, progress=progress)
    return handle


def _create_instance_storage(home: Path) -> None:
    """Create a fresh instance's SQLite tables here, before the runner and this process's polling both race to."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs_count()  # run storage
        _ = instance.event_log_storage, instance.schedule_storage  # building each creates its tables


def _start_launcher(target: Target, run_id: str, run_config: dict[str, Any], tags: dict[str, str],
                    selection: list[list[str]] | None) -> tuple[Path, subprocess.Popen]:
    """Start the detached process that takes the run: the local runner, or ``dagster job launch`` (queue)."""
    from fpgrowth_dagster.stack import start_process

    home = target.dagster_home
    log_path = home / LAUNCH_LOG_DIR / f"{run_id}.log"
    env = dict(os.environ)
    if target.config is not None:
        env["FPGROWTH_CONFIG"] = str(target.config.path)
    if target.mode == "local":
        _create_instance_storage(home)
        spec = {"run_config": run_config, "tags": tags, "asset_selection": selection}
        argv = [sys.executable, "-m", "fpgrowth_dagster.local_runner", "--run-id", run_id, "--spec", json.dumps(spec)]
    else:
        dagster = Path(sys.executable).with_name("dagster")
        argv = [str(dagster) if dagster.exists() else "dagster", "job", "launch", "-m", "fpgrowth_dagster.definitions",
                "-j", JOB_NAME, "--run-id", run_id, "--tags", json.dumps(tags), "--config-json", json.dumps(run_config)]
        if selection:
            argv += ["--op-selection", ",".join("__".join(path) for path in selection)]
    return log_path, start_process(argv, env=env, log_path=log_path, cwd=Path.cwd())


def launch_partitions(partitions: Sequence[str], max_concurrent: int | None = None, wait: bool = True,
                      **kwargs: Any) -> list[RunHandle]:
    """One ``all_groups_job`` run per partition (a loop over windows); the instance's run limits apply."""
    handles = [launch_all_groups(p, max_concurrent=max_concurrent, wait=False, **kwargs) for p in partitions]
    if wait:
        wait_all(handles, progress=kwargs.get("progress", True), timeout=kwargs.get("timeout"))
    return handles


def wait_all(handles: Sequence[RunHandle], progress: bool = True, timeout: float | None = None) -> list[RunHandle]:
    """Wait for several runs in turn; returns them with status and summary."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for handle in handles:
        left = None if deadline is None else max(1.0, deadline - time.monotonic())
        handle.wait(timeout=left, progress=progress)
    return list(handles)


def get_run(run_id: str, *, webserver_url: str | None = None) -> RunHandle:
    """Re-attach to a run launched earlier (e.g. before a kernel restart): its status, partition, summary."""
    target = resolve_target(mode="webserver" if webserver_url else "instance", webserver_url=webserver_url)
    handle = RunHandle(run_id=run_id, partition="?", target=target)
    if target.mode == "webserver":
        handle.refresh()
        return handle
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
    if run is None:
        raise LaunchError(f"no run {run_id} in the instance at {target.dagster_home}")
    handle.partition = run.tags.get("dagster/partition", "?")
    handle.refresh()
    return handle


def cancel_run(run_id: str, *, webserver_url: str | None = None) -> str:
    """Stop a run, the way the UI's Terminate button does; returns the status it was in."""
    from fpgrowth_dagster.api_support import terminate_graphql

    target = resolve_target(mode="webserver" if webserver_url else "auto", webserver_url=webserver_url)
    if target.mode == "webserver":
        return terminate_graphql(target, run_id)
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise LaunchError(f"no run {run_id} in the instance at {target.dagster_home}")
        if run.status.value in FINISHED:
            return run.status.value
        if run.status.value == "QUEUED":
            instance.report_run_canceled(run, message="canceled from Python before it started")
        else:
            # The local runner watches for CANCELING and interrupts its executor; a daemon's run
            # monitoring does the same for runs it launched.
            instance.report_run_canceling(run, message="cancel requested from Python")
        return run.status.value


def enqueue_jobs(partition: str, groups: Sequence[str] | None = None, *, max_concurrent: int | None = None,
                 wait: bool = False, create: bool = True, queue: str | None = None, request_id: str | None = None,
                 timeout: float | None = None, progress: bool = True, config_path: str | Path | None = None) -> Any:
    """Put one SQS job per (group, partition) on the job queue; the replacement for
    ``execute_fpgrowth_with_sqs(max_concurrent=N)`` (see :mod:`fpgrowth_dagster.api_sqs`)."""
    from fpgrowth_dagster.api_sqs import enqueue

    return enqueue(partition, groups, max_concurrent=max_concurrent, wait=wait, create=create, queue=queue,
                   request_id=request_id, timeout=timeout, progress=progress, config_path=config_path)
