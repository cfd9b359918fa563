"""Termination diagnostics: a record of who stopped a group step, and what the step and machine looked like.

``with TerminationWatch(group=..., partition=...) as watch:`` around a group step:

* SIGTERM (an operator, a container runtime, an OOM helper) is handled in the step: the record
  names the signal and, from siginfo, the sending process and its command line; it is written
  before anything else, then :class:`StepTerminated` is raised so the step takes its failure path
  (staged outputs are discarded, nothing partial is published). Later SIGTERMs are recorded only,
  so cleanup is not interrupted.
* A Dagster termination (UI or ``terminateRun``) reaches the step as SIGINT and surfaces as
  ``DagsterExecutionInterruptedError``; the watch records it on the way out and lets it propagate.

Each record is appended as one JSON line to :func:`diagnostics_path` (``$FPGROWTH_DIAGNOSTICS_PATH``,
default ``<state dir>/diagnostics.jsonl``) with fsync, so it survives when the event log cannot be
written; the Dagster layer also puts it in the event log.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fpgrowth_dagster.monitoring.signals import (
    SignalSender,
    install_sender_recorder,
    last_sender,
    signal_name,
    uninstall_sender_recorder,
)

DIAGNOSTICS_ENV = "FPGROWTH_DIAGNOSTICS_PATH"
RECORD_KIND = "fpgrowth.termination"
CAUSES = {
    "external_signal": (
        "a signal sent to the step process from outside Dagster (an operator, a container runtime, an OOM helper)"
    ),
    "user_termination": (
        "the run was terminated from the Dagster UI or API (terminateRun); Dagster interrupted the step with SIGINT"
    ),
    "interrupt": "SIGINT that did not come from a run termination (for example Ctrl-C in a terminal)",
    "memory_guard": "the memory guard stopped the group before the kernel's OOM killer would",
}
TERMINATING_RUN_STATUSES = ("CANCELING", "CANCELED")


def diagnostics_path() -> Path:
    """The JSON-lines file of termination records (configurable with ``$FPGROWTH_DIAGNOSTICS_PATH``)."""
    explicit = os.environ.get(DIAGNOSTICS_ENV)
    if explicit:
        return Path(explicit)
    from fpgrowth_dagster.monitoring.processes import state_dir

    return state_dir() / "diagnostics.jsonl"


def append_record(record: dict[str, Any], path: Path | None = None) -> Path:
    """Append one record as a single ``write`` of one line, then fsync (no partial or interleaved lines)."""
    path = path or diagnostics_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, default=str, sort_keys=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def read_records(path: Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Records in the file, oldest first (the last ``limit`` ones); unreadable lines are skipped."""
    path = path or diagnostics_path()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines[-limit:] if limit else lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


class StepTerminated(BaseException):
    """The step was told to stop by a signal from outside Dagster; ``record`` says by whom.

    A BaseException, like KeyboardInterrupt: ``except Exception`` blocks in the step (a group's
    own error handling) must not swallow a termination request.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record.get("summary", "terminated by a signal"))
        self.record = record


def is_dagster_interrupt(exc: BaseException | None) -> bool:
    """KeyboardInterrupt or Dagster's DagsterExecutionInterruptedError (matched by name: no Dagster import)."""
    return exc is not None and (
        isinstance(exc, KeyboardInterrupt)
        or any(cls.__name__ == "DagsterExecutionInterruptedError" for cls in type(exc).__mro__)
    )


def machine_figures(sample_seconds: float = 0.1) -> dict[str, Any]:
    """The machine's status for a record; never raises (a record must be written whatever happens)."""
    from fpgrowth_dagster.monitoring.status import get_system_resource_status

    try:
        return get_system_resource_status(sample_seconds=sample_seconds)
    except Exception as exc:  # noqa: BLE001
        return {"error": f"could not read the machine's status: {exc}"}


class TerminationWatch:
    """Records terminations of the enclosed group step (see the module docstring)."""

    def __init__(
        self,
        *,
        group: str | None,
        partition: str | None = None,
        run_id: str | None = None,
        step_key: str | None = None,
        job: str | None = None,
        measurement: Any | None = None,
        path: Path | None = None,
        describe_context: Callable[[], dict[str, Any]] | None = None,
        signals: Iterable[int] = (signal.SIGTERM,),
        on_record: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.identity = {"group": group, "partition": partition, "run_id": run_id, "step_key": step_key, "job": job}
        self.measurement = measurement
        self.path = path
        self.describe_context = describe_context
        self.signals = tuple(signals)
        self.on_record = on_record
        self.records: list[dict[str, Any]] = []
        self._previous: dict[int, Any] = {}
        self._recorder_on_sigint = False
        self._raised = False
        self.active = False

    # -- records -----------------------------------------------------------------------------
    def build_record(
        self,
        cause: str,
        *,
        sender: SignalSender | None = None,
        signum: int | None = None,
        error: BaseException | None = None,
        extra: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A complete record: identity, cause, signal and sender, the step's and the machine's figures."""
        if context is None and self.describe_context is not None:
            try:
                context = dict(self.describe_context())
            except Exception as exc:  # noqa: BLE001
                context = {"context_error": str(exc)}
        context = context or {}
        step: dict[str, Any] = {}
        if self.measurement is not None:
            try:
                step = self.measurement.snapshot()
            except Exception as exc:  # noqa: BLE001
                step = {"error": str(exc)}
        where = f"group {self.identity['group']!r}" + (
            f" partition {self.identity['partition']}" if self.identity["partition"] else ""
        )
        if sender is not None:
            summary = f"{sender.describe()} stopped {where}"
        elif error is not None:
            summary = str(error) if f"group {self.identity['group']!r}" in str(error) else f"{where}: {error}"
        else:
            summary = f"{where} stopped: {CAUSES.get(cause, cause)}"
        record: dict[str, Any] = {
            "record": RECORD_KIND,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "cause": cause,
            "cause_description": CAUSES.get(cause, cause),
            "summary": summary,
            "signal": signal_name(signum) if signum else None,
            "signal_number": signum,
            "sender": sender.to_dict() if sender is not None else None,
            **self.identity,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            **context,
            "error": f"{type(error).__name__}: {error}" if error is not None else None,
            "step": step,
            "machine": machine_figures(),
        }
        if extra:
            record.update(extra)
        return record

    def write(self, record: dict[str, Any]) -> dict[str, Any]:
        """File first (it survives anything), then the caller's hook (the event log); never raises."""
        self.records.append(record)
        try:
            record["diagnostics_path"] = str(append_record(record, self.path))
        except OSError as exc:
            record["diagnostics_path_error"] = str(exc)
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception:  # noqa: BLE001 - the event log may be gone while terminating
                pass
        return record

    # -- signals -----------------------------------------------------------------------------
    def _handle(self, signum: int, frame: Any) -> None:
        sender = last_sender(signum)
        record = self.write(self.build_record("external_signal", sender=sender, signum=signum))
        if self._raised:
            return  # already stopping: do not interrupt the cleanup
        self._raised = True
        raise StepTerminated(record)

    def __enter__(self) -> TerminationWatch:
        if threading.current_thread() is not threading.main_thread():
            return self  # handlers can only be set on the main thread; nothing to watch
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
            install_sender_recorder(signum)
        if signal.SIGINT not in self.signals:
            self._recorder_on_sigint = install_sender_recorder(signal.SIGINT)
        self.active = True
        return self

    @staticmethod
    def _interrupt_cause(sender: SignalSender, context: dict[str, Any]) -> str:
        """A run being cancelled, or SIGINT sent by the step process to itself (Dagster's termination thread)."""
        if str(context.get("run_status", "")).upper() in TERMINATING_RUN_STATUSES:
            return "user_termination"
        if sender.relation == "self" and sender.code == "SI_USER":
            return "user_termination"
        return "interrupt"

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if not self.active:
            return False
        self.active = False
        for signum, previous in self._previous.items():
            try:
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            except (TypeError, ValueError):
                pass
        self._previous.clear()
        if self._recorder_on_sigint:
            uninstall_sender_recorder(signal.SIGINT)
        if is_dagster_interrupt(exc):
            sender = last_sender(signal.SIGINT)
            context = {}
            if self.describe_context is not None:
                try:
                    context = dict(self.describe_context())
                except Exception:  # noqa: BLE001
                    context = {}
            cause = self._interrupt_cause(sender, context)
            self.write(self.build_record(cause, sender=sender, signum=signal.SIGINT, error=exc, context=context))
        return False
