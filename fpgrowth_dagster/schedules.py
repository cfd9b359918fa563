"""A schedule that runs ``all_groups_job`` for the latest complete window.

For time partitions, ``build_schedule_from_partitioned_job`` ticks once per window (at the configured
hour and minute after the window ends) and requests the window that has just ended. A static
partition has no windows: the schedule then requests that single partition once a day.
"""

from __future__ import annotations

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    build_schedule_from_partitioned_job,
    schedule,
)

from fpgrowth_dagster.config import ProjectConfig
from fpgrowth_dagster.jobs import UnresolvedAssetJobDefinition

SCHEDULE_NAME = "all_groups_schedule"


def build_all_groups_schedule(config: ProjectConfig, job: UnresolvedAssetJobDefinition):
    """The schedule of ``job`` for the latest complete window (or the static partition, daily)."""
    status = DefaultScheduleStatus.RUNNING if config.schedule.running else DefaultScheduleStatus.STOPPED
    minute, hour = config.schedule.minute_of_hour, config.schedule.hour_of_day
    if config.partitions.kind != "static":
        kwargs = {"minute_of_hour": minute}
        if config.partitions.kind in ("monthly", "weekly", "daily"):
            kwargs["hour_of_day"] = hour
        return build_schedule_from_partitioned_job(
            job,
            name=SCHEDULE_NAME,
            description=f"Runs {job.name} for the latest complete {config.partitions.kind} window.",
            default_status=status,
            **kwargs,
        )
    static_key = config.partitions.static_key

    @schedule(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule=f"{minute} {hour} * * *",
        default_status=status,
        description=f"Runs {job.name} daily for the static partition {static_key!r}.",
    )
    def _static_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        tick = context.scheduled_execution_time
        return RunRequest(run_key=f"{static_key}:{tick.isoformat() if tick else 'manual'}", partition_key=static_key)

    return _static_schedule
