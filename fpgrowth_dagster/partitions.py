"""The partitions shared by every asset: time windows of the source's time column, or one static partition."""

from __future__ import annotations

import datetime as dt

from dagster import (
    DailyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    PartitionsDefinition,
    StaticPartitionsDefinition,
    TimeWindowPartitionsDefinition,
    WeeklyPartitionsDefinition,
)

from fpgrowth_dagster.config import PartitionsConfig

_TIME_CLASSES = {
    "monthly": MonthlyPartitionsDefinition,
    "weekly": WeeklyPartitionsDefinition,
    "daily": DailyPartitionsDefinition,
}


def build_partitions_def(config: PartitionsConfig) -> PartitionsDefinition:
    """Monthly/weekly/daily windows from ``start`` (to ``end``, exclusive, if set), or one static key."""
    if config.kind == "static":
        return StaticPartitionsDefinition([config.static_key])
    cls = _TIME_CLASSES[config.kind]
    kwargs = {"start_date": config.start, "timezone": config.timezone}
    if config.end:
        kwargs["end_date"] = config.end
    return cls(**kwargs)


def partition_window(
    partitions_def: PartitionsDefinition, partition_key: str
) -> tuple[dt.datetime, dt.datetime] | None:
    """The ``[start, end)`` window of a time partition in its own time zone; None for a static partition."""
    if not isinstance(partitions_def, TimeWindowPartitionsDefinition):
        return None
    window = partitions_def.time_window_for_partition_key(partition_key)
    return window.start, window.end
