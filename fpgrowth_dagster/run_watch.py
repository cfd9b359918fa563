"""Watching a run from Python: its status and step counts, a progress display, and its per-group summary.

Two sources answer the same questions: the Dagster instance of ``$DAGSTER_HOME`` (read-only SQL
queries, safe in a notebook kernel) and the webserver's GraphQL API (when the runs live in a
``dagster dev`` whose instance this process cannot open). The progress display is a tqdm bar in a
terminal, one text line updated in place in a notebook, and one line per change otherwise.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

from fpgrowth_dagster.demo_summary import GROUP_PREFIX, GroupLine, RunSummary

FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@dataclass(frozen=True)
class RunState:
    """A snapshot of one run: its status and how many of its steps have ended."""

    run_id: str
    status: str
    steps_total: int
    steps_succeeded: int
    steps_failed: int
    steps_running: int
    unit: str = "steps"
    kind: str = "run"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def steps_done(self) -> int:
        return self.steps_succeeded + self.steps_failed

    def line(self, elapsed: float, partition: str) -> str:
        failed = f", {self.steps_failed} failed" if self.steps_failed else ""
        name = self.run_id[:8] if self.kind == "run" else self.run_id
        return (f"{self.kind} {name} ({partition}) {self.status}: {self.steps_done}/{self.steps_total} {self.unit} done"
                f"{failed}, {self.steps_running} running, {elapsed:.0f} s")


class RunSource(Protocol):
    def state(self, run_id: str) -> RunState | None: ...

    def summary(self, run_id: str, partition: str, status: str) -> RunSummary: ...


# --------------------------------------------------------------------------- the instance


class InstanceSource:
    """Reads runs from the Dagster instance of ``$DAGSTER_HOME`` (opened lazily, closed with :meth:`close`)."""

    def __init__(self) -> None:
        self._instance: Any = None

    @property
    def instance(self) -> Any:
        if self._instance is None:
            from dagster import DagsterInstance

            self._instance = DagsterInstance.get()
        return self._instance

    def close(self) -> None:
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    def state(self, run_id: str) -> RunState | None:
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            return None
        total = len(run.step_keys_to_execute or ())
        if not total and run.execution_plan_snapshot_id:
            snapshot = self.instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            total = len(snapshot.step_keys_to_execute or [s.key for s in snapshot.steps])
        counts = {"SUCCESS": 0, "FAILURE": 0, "IN_PROGRESS": 0}
        for stats in self.instance.get_run_step_stats(run_id):
            name = stats.status.value if stats.status is not None else "IN_PROGRESS"
            counts[name] = counts.get(name, 0) + 1
        return RunState(run_id, run.status.value, total, counts["SUCCESS"], counts["FAILURE"],
                        counts["IN_PROGRESS"])

    def summary(self, run_id: str, partition: str, status: str) -> RunSummary:
        from fpgrowth_dagster.demo_summary import collect_run_summary

        return collect_run_summary(self.instance, run_id, partition, status)


# --------------------------------------------------------------------------- GraphQL

RUN_STATE_QUERY = """
query RunState($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status stepKeysToExecute stepStats { stepKey status } }
    ... on Error { message }
  }
}
"""
RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 5000) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MaterializationEvent {
          stepKey
          assetKey { path }
          metadataEntries {
            label
            ... on IntMetadataEntry { intValue }
            ... on FloatMetadataEntry { floatValue }
            ... on TextMetadataEntry { text }
            ... on PathMetadataEntry { path }
            ... on MarkdownMetadataEntry { mdStr }
            ... on BoolMetadataEntry { boolValue }
          }
        }
        ... on ExecutionStepFailureEvent { stepKey error { message } }
      }
    }
    ... on Error { message }
  }
}
"""


def _metadata_value(entry: dict[str, Any]) -> Any:
    for key in ("intValue", "floatValue", "text", "path", "mdStr", "boolValue"):
        if key in entry:
            return entry[key]
    return None


class GraphQLSource:
    """Reads runs through the webserver's GraphQL API at ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def close(self) -> None:
        pass

    def _query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        from fpgrowth_dagster.stack import graphql

        return graphql(self.url, query, variables, timeout=30)

    def state(self, run_id: str) -> RunState | None:
        data = self._query(RUN_STATE_QUERY, {"runId": run_id})["runOrError"]
        if data["__typename"] != "Run":
            return None
        counts = {"SUCCESS": 0, "FAILURE": 0, "IN_PROGRESS": 0}
        for stats in data.get("stepStats") or []:
            status = stats.get("status") or "IN_PROGRESS"
            counts[status] = counts.get(status, 0) + 1
        total = len(data.get("stepKeysToExecute") or []) or len(data.get("stepStats") or [])
        return RunState(run_id, data["status"], total, counts["SUCCESS"], counts["FAILURE"], counts["IN_PROGRESS"])

    def summary(self, run_id: str, partition: str, status: str) -> RunSummary:
        state = self._query(RUN_STATE_QUERY, {"runId": run_id})["runOrError"]
        planned = [key[len(GROUP_PREFIX) + 2:] for key in state.get("stepKeysToExecute") or []
                   if key.startswith(f"{GROUP_PREFIX}__")]
        groups: dict[str, GroupLine] = {}
        comparison: list[str] = []
        cursor = None
        while True:
            page = self._query(RUN_EVENTS_QUERY, {"runId": run_id, "cursor": cursor})["logsForRun"]
            if page["__typename"] != "EventConnection":
                raise RuntimeError(f"{self.url}: cannot read the events of run {run_id}: {page.get('message')}")
            for event in page["events"]:
                _add_event(event, groups, comparison)
            cursor = page["cursor"]
            if not page.get("hasMore"):
                break
        for name in planned:
            groups.setdefault(name, GroupLine(group=name, status="not run", reason="an upstream step failed"))
        ordered = {name: groups[name] for name in planned if name in groups}
        ordered.update({name: line for name, line in groups.items() if name not in ordered})
        return RunSummary(run_id=run_id, partition=partition, status=status, groups=ordered,
                          comparison_uris=comparison)


def _add_event(event: dict[str, Any], groups: dict[str, GroupLine], comparison: list[str]) -> None:
    kind = event.get("__typename")
    if kind == "MaterializationEvent":
        path = event["assetKey"]["path"]
        metadata = {entry["label"]: _metadata_value(entry) for entry in event.get("metadataEntries") or []}
        if len(path) == 2 and path[0] == GROUP_PREFIX:
            groups[path[1]] = GroupLine(
                group=path[1], status=str(metadata.get("status") or "mined"),
                transactions=metadata.get("transactions"), items=metadata.get("items"),
                itemsets=metadata.get("itemsets"), rules=metadata.get("rules"), seconds=metadata.get("seconds"),
                reason=str(metadata.get("reason") or ""),
                uris=[str(metadata[k]) for k in ("frequent_itemsets", "association_rules") if k in metadata],
                top_rules=str(metadata.get("top_rules") or ""))
        elif path == ["group_comparison"]:
            comparison[:] = [str(metadata[k]) for k in ("table", "plot_uri") if k in metadata]
    elif kind == "ExecutionStepFailureEvent":
        step = event.get("stepKey") or ""
        if step.startswith(f"{GROUP_PREFIX}__"):
            name = step[len(GROUP_PREFIX) + 2:]
            message = ((event.get("error") or {}).get("message") or "step failed").strip()
            groups[name] = GroupLine(group=name, status="failed", reason=message.splitlines()[0] if message else "")


# --------------------------------------------------------------------------- progress display


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell that talks to a front end over ZMQ)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001
        return False
    return shell is not None and (type(shell).__name__ == "ZMQInteractiveShell" or hasattr(shell, "kernel"))


class Progress:
    """A progress bar (terminal), an updating text line (notebook), change lines (logs) or nothing."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self.kind = "off"
        self._bar: Any = None
        self._display: Any = None
        self._last = ""
        if not enabled:
            return
        if in_notebook():
            from IPython.display import Pretty, display

            self.kind = "notebook"
            self._display = display(Pretty(f"{label}: submitted"), display_id=True)
        elif sys.stderr.isatty():
            self.kind = "terminal"
        else:
            self.kind = "lines"

    def update(self, state: RunState, elapsed: float, partition: str) -> None:
        line = state.line(elapsed, partition)
        if self.kind == "notebook":
            self._display.update(_pretty(line))
        elif self.kind == "terminal":
            from tqdm import tqdm

            if self._bar is None:
                self._bar = tqdm(total=max(state.steps_total, 1), desc=self.label, unit=state.unit.rstrip("s"), file=sys.stderr,
                                 leave=True, dynamic_ncols=True)
            self._bar.total = max(state.steps_total, 1)
            self._bar.n = state.steps_done
            self._bar.set_postfix_str(f"{state.status}, {state.steps_running} running"
                                      + (f", {state.steps_failed} failed" if state.steps_failed else ""))
        elif self.kind == "lines":
            key = line.rsplit(",", 1)[0]  # without the seconds: print on changes only
            if key != self._last:
                print(line, file=sys.stderr, flush=True)
                self._last = key

    def close(self, final: str) -> None:
        if self.kind == "notebook":
            self._display.update(_pretty(final))
        elif self.kind == "terminal" and self._bar is not None:
            self._bar.close()
            print(final, file=sys.stderr, flush=True)
        elif self.kind == "lines" and final.rsplit(",", 1)[0] != self._last:
            print(final, file=sys.stderr, flush=True)


def _pretty(text: str) -> Any:
    from IPython.display import Pretty

    return Pretty(text)


def watch(source: RunSource, run_id: str, partition: str, *, label: str, timeout: float | None,
          progress: bool, poll: float = 1.0, alive: Any = None) -> RunState:
    """Poll until the run has finished (or ``timeout`` seconds passed); returns the last state.

    ``alive`` (optional callable) returns an error message when whatever executes the run is gone
    before the run has even been created, which raises RuntimeError instead of waiting forever.
    """
    started = time.monotonic()
    display = Progress(label, enabled=progress)
    state: RunState | None = None
    try:
        while True:
            state = source.state(run_id)
            elapsed = time.monotonic() - started
            if state is None:
                problem = alive() if alive is not None else None
                if problem:
                    raise RuntimeError(problem)
            else:
                display.update(state, elapsed, partition)
                if state.finished:
                    return state
            if timeout is not None and elapsed > timeout:
                raise TimeoutError(f"run {run_id} is still {state.status if state else 'not created'} after "
                                   f"{timeout:.0f} s; it goes on: wait for it again with get_run({run_id!r}).wait()")
            time.sleep(poll)
    finally:
        final = state.line(time.monotonic() - started, partition) if state else f"{label}: not created"
        display.close(final)
