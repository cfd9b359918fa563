"""The Dagster side of step monitoring: figures as metadata, records in the event log, clear failures.

A group asset wraps its body::

    with monitored_group_step(context, group=name, partition_key=pk) as step:
        baskets = ...
        with step.memory_guard(settings, baskets):
            result = mine_group(baskets, settings, group=name)
        ... stage and publish ...
        return MaterializeResult(metadata={..., **step.metadata()})

* every materialisation gets wall/CPU time, peak RSS and available memory as metadata and one
  JSON log line (``fpgrowth.step_resources``);
* SIGTERM from outside becomes a step failure (``Failure``, not retried) whose metadata holds the
  termination record; the record is also written to the diagnostics file and logged;
* a run termination (UI, ``terminateRun``) is recorded and re-raised unchanged, so the run ends
  CANCELED as Dagster intends;
* the memory guard's error becomes a ``Failure`` naming the group and what to change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg

from fpgrowth_dagster.monitoring.diagnostics import StepTerminated, TerminationWatch, is_dagster_interrupt
from fpgrowth_dagster.monitoring.guard import (
    MemoryBudgetExceeded,
    MemoryGuard,
    check_memory_estimate,
    memory_budget_bytes,
)
from fpgrowth_dagster.monitoring.measure import StepMeasurement, measure_step
from fpgrowth_dagster.monitoring.processes import register_step, unregister_step

METADATA_PREFIX = "step_"


def _op_context(context: Any) -> Any:
    return getattr(context, "op_execution_context", context)


def _step_key(context: Any) -> str | None:
    try:
        return _op_context(context).get_step_execution_context().step.key
    except Exception:  # noqa: BLE001 - direct invocation has no step
        return None


def record_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """Dagster metadata for a termination record: the key facts flat, the whole record as JSON."""
    sender = record.get("sender") or {}
    step = record.get("step") or {}
    flat: dict[str, Any] = {
        "cause": record.get("cause"),
        "signal": record.get("signal") or "none",
        "sender_pid": sender.get("pid") if sender.get("pid") is not None else "unknown",
        "sender_command": " ".join(sender.get("cmdline") or []) or "unknown",
        "sender_relation": sender.get("relation") or "unknown",
        "group": record.get("group"),
        "partition": record.get("partition") or "none",
        "step_pid": record.get("pid"),
        "wall_seconds": step.get("wall_seconds"),
        "peak_rss_mib": round(step["peak_rss_bytes"] / 2**20, 1) if step.get("peak_rss_bytes") else None,
        "diagnostics_file": record.get("diagnostics_path") or "not written",
        "record": dg.MetadataValue.json(json.loads(json.dumps(record, default=str))),
    }
    return {key: value for key, value in flat.items() if value is not None}


class GroupStepMonitor:
    """Handle given to the asset body by :func:`monitored_group_step`."""

    def __init__(self, context: Any, measurement: StepMeasurement, watch: TerminationWatch) -> None:
        self.context = context
        self.measurement = measurement
        self.watch = watch
        self.memory_estimate: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        """The step's resource figures so far (and the memory estimate), as ``step_*`` metadata entries."""
        out = {f"{METADATA_PREFIX}{key}": value for key, value in self.measurement.metadata().items()}
        if self.memory_estimate is not None:
            out[f"{METADATA_PREFIX}memory_estimate"] = dg.MetadataValue.json(self.memory_estimate)
        return out

    @contextmanager
    def memory_guard(
        self, settings: Any, baskets: Sequence[Sequence[str]] | None = None, max_memory_mb: int | None = None
    ) -> Iterator[MemoryGuard]:
        """Refuse the group if its estimate is over budget, then stop it if its RSS goes over."""
        identity = self.watch.identity
        budget = memory_budget_bytes(settings, max_memory_mb)
        try:
            if baskets is not None:
                try:
                    estimate = check_memory_estimate(
                        baskets, settings, budget, group=identity["group"], partition=identity["partition"]
                    )
                    self.memory_estimate = estimate.to_dict()
                except MemoryBudgetExceeded:
                    raise
                except Exception as exc:  # noqa: BLE001 - bad settings or data: the mining core reports them
                    self.context.log.debug(f"no memory estimate for group {identity['group']!r}: {exc}")
            with MemoryGuard(
                budget, group=identity["group"], partition=identity["partition"], settings=settings
            ) as guard:
                yield guard
        except MemoryBudgetExceeded as exc:
            # Raised as a Failure here, so generic error handling around the block keeps its metadata.
            record = self.watch.write(
                self.watch.build_record("memory_guard", error=exc, extra={"memory_guard": exc.to_dict()})
            )
            raise dg.Failure(description=str(exc), metadata=record_metadata(record), allow_retries=False) from exc


def _describe_run(context: Any) -> dict[str, Any]:
    op_context = _op_context(context)
    run = op_context.instance.get_run_by_id(op_context.run_id)
    return {"run_status": run.status.value if run is not None else None}


@contextmanager
def monitored_group_step(
    context: Any, *, group: str, partition_key: str | None = None, asset_key: dg.AssetKey | None = None
) -> Iterator[GroupStepMonitor]:
    """Measure, watch and guard one group materialisation (see the module docstring)."""
    op_context = _op_context(context)
    if asset_key is None:
        try:
            asset_key = op_context.asset_key
        except Exception:  # noqa: BLE001 - an op without a single asset
            asset_key = None

    def to_event_log(record: dict[str, Any]) -> None:
        context.log.error("fpgrowth termination record: " + json.dumps(record, default=str))
        if asset_key is not None:
            op_context.log_event(
                dg.AssetObservation(asset_key=asset_key, partition=partition_key, metadata=record_metadata(record))
            )

    registration = None
    try:
        with measure_step(group, partition_key, log=context.log.info) as measurement:
            watch = TerminationWatch(
                group=group,
                partition=partition_key,
                run_id=op_context.run_id,
                step_key=_step_key(context),
                job=op_context.job_name,
                measurement=measurement,
                describe_context=lambda: _describe_run(context),
                on_record=to_event_log,
            )
            try:
                with watch:
                    # Registered once the watch is on: `fpgrowth-dagster status` names the group of this pid.
                    registration = register_step(
                        {
                            "run_id": op_context.run_id,
                            "step_key": watch.identity["step_key"],
                            "group": group,
                            "partition": partition_key,
                        }
                    )
                    yield GroupStepMonitor(context, measurement, watch)
            except StepTerminated as exc:
                raise dg.Failure(
                    description=f"{exc} (termination record in {exc.record.get('diagnostics_path')})",
                    metadata=record_metadata(exc.record),
                    allow_retries=False,
                ) from exc
            except BaseException as exc:
                if is_dagster_interrupt(exc):
                    summary = watch.records[-1]["summary"] if watch.records else repr(exc)
                    context.log.warning(f"group {group!r} step interrupted: {summary}")
                raise
    finally:
        unregister_step(registration)
