"""Validation of the project config file: every error names the file and the key.

Kept apart from :mod:`fpgrowth_dagster.config` (the types and the loading) so each stays short.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpgrowth_dagster.config import (
    GROUP_NAME_RE,
    PARTITION_KINDS,
    START_METHODS,
    TAG_KEY_RE,
    TAG_VALUE_RE,
    ConfigError,
    ExecutorSettings,
    GroupConfig,
    OutputConfig,
    PartitionsConfig,
    ProjectConfig,
    Scalar,
    ScheduleSettings,
    SourceConfig,
)


def parse(data: Any, path: Path) -> ProjectConfig:
    """Validate the parsed YAML of a project config; errors name ``path`` and the key."""
    ctx = _Ctx(path)
    root = ctx.mapping(data, "", required={"source", "output", "groups"},
                       optional={"partitions", "mining", "executor", "schedule", "sqs"})
    source = _parse_source(ctx, root["source"])
    partitions = _parse_partitions(ctx, root.get("partitions"), source)
    mining = _parse_mining(ctx, root.get("mining") or {}, "mining")
    output = _parse_output(ctx, root["output"])
    executor = _parse_executor(ctx, root.get("executor") or {})
    schedule = _parse_schedule(ctx, root.get("schedule") or {})
    groups = _parse_groups(ctx, root["groups"])
    config = ProjectConfig(path=path, source=source, partitions=partitions, output=output, groups=groups,
                           mining=mining, executor=executor, schedule=schedule,
                           sqs=_parse_sqs(ctx, root.get("sqs") or {}))
    _check_settings(ctx, mining, "mining")
    for index, group in enumerate(groups):
        if group.mining:
            _check_settings(ctx, {**mining, **group.mining}, f"groups[{index}].mining")
    return config


@dataclass(frozen=True)
class _Ctx:
    path: Path

    def error(self, key: str, message: str) -> ConfigError:
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        return ConfigError(where + message)

    def mapping(self, value: Any, key: str, *, required: set[str] = frozenset(),
                optional: set[str] = frozenset()) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}: {value!r}")
        prefix = f"{key}." if key else ""
        missing = sorted(required - set(value))
        if missing:
            raise self.error(key or "(top level)", f"missing required key(s) {', '.join(prefix + m for m in missing)}")
        unknown = sorted(set(value) - required - optional)
        if unknown:
            known = ", ".join(sorted(required | optional))
            raise self.error(prefix + str(unknown[0]), f"unknown key; expected one of: {known}")
        return dict(value)

    def string(self, value: Any, key: str, *, allow_none: bool = False) -> str | None:
        if value is None and allow_none:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, value: Any, key: str, *, minimum: int, maximum: int | None = None,
                allow_none: bool = False) -> int | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f" and <= {maximum}" if maximum is not None else ""
            raise self.error(key, f"expected an integer >= {minimum}{bound}, got {value!r}")
        return value


def _parse_source(ctx: _Ctx, value: Any) -> SourceConfig:
    data = ctx.mapping(value, "source", required={"uri", "transaction_column", "item_column"},
                       optional={"time_column", "filters"})
    uri = ctx.string(data["uri"], "source.uri")
    if not uri.startswith("s3://") or len(uri) <= len("s3://") or uri[len("s3://"):].startswith("/"):
        raise ctx.error("source.uri", f"expected an S3 URI like s3://bucket/key or s3://bucket/prefix/, got {uri!r}")
    filters_raw = data.get("filters") or []
    if not isinstance(filters_raw, list):
        raise ctx.error("source.filters", f"expected a list of filters, got {filters_raw!r}")
    from fpgrowth_dagster.mining import RowFilter

    filters: list[str | Mapping[str, Any]] = []
    for index, spec in enumerate(filters_raw):
        key = f"source.filters[{index}]"
        try:
            if isinstance(spec, str):
                RowFilter.parse(spec)
            elif isinstance(spec, Mapping):
                RowFilter.from_dict(spec)
            else:
                raise ValueError(f"expected 'COLUMN OP VALUE' text or a mapping, got {spec!r}")
        except ValueError as exc:
            raise ctx.error(key, str(exc)) from None
        filters.append(spec)
    return SourceConfig(
        uri=uri,
        transaction_column=ctx.string(data["transaction_column"], "source.transaction_column"),
        item_column=ctx.string(data["item_column"], "source.item_column"),
        time_column=ctx.string(data.get("time_column"), "source.time_column", allow_none=True),
        filters=tuple(filters),
    )


def _date_text(ctx: _Ctx, value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ctx.error(key, f"expected a date YYYY-MM-DD, got {value!r}")


def _parse_partitions(ctx: _Ctx, value: Any, source: SourceConfig) -> PartitionsConfig:
    if value is None:
        value = {"type": "static"}
    data = ctx.mapping(value, "partitions", required={"type"}, optional={"start", "end", "timezone", "key"})
    kind = data["type"]
    if kind not in PARTITION_KINDS:
        raise ctx.error("partitions.type", f"expected one of {', '.join(PARTITION_KINDS)}, got {kind!r}")
    if kind == "static":
        for key in ("start", "end", "timezone"):
            if key in data:
                raise ctx.error(f"partitions.{key}", "only time partitions (monthly, weekly, daily) take this key")
        static_key = ctx.string(data.get("key", "all"), "partitions.key")
        return PartitionsConfig(kind="static", static_key=static_key)
    if "key" in data:
        raise ctx.error("partitions.key", "only static partitions take a key")
    if not source.time_column:
        raise ctx.error("partitions.type", f"{kind} partitions need source.time_column")
    if "start" not in data:
        raise ctx.error("partitions.start", f"{kind} partitions need a start date")
    start = _date_text(ctx, data["start"], "partitions.start")
    end = _date_text(ctx, data.get("end"), "partitions.end")
    if end is not None and end <= start:
        raise ctx.error("partitions.end", f"end {end} must be after start {start}")
    timezone = ctx.string(data.get("timezone", "UTC"), "partitions.timezone")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(timezone)
    except Exception:
        raise ctx.error("partitions.timezone", f"unknown time zone {timezone!r}") from None
    return PartitionsConfig(kind=kind, start=start, end=end, timezone=timezone)


def _settings_fields() -> list[str]:
    from fpgrowth_dagster.mining import MiningSettings

    return [f.name for f in dataclasses.fields(MiningSettings)]


def _parse_mining(ctx: _Ctx, value: Any, key: str) -> dict[str, Any]:
    known = set(_settings_fields())
    data = ctx.mapping(value, key, optional=known)
    return data


def _check_settings(ctx: _Ctx, merged: Mapping[str, Any], key: str) -> None:
    from fpgrowth_dagster.mining import MiningSettings

    try:
        MiningSettings(**dict(merged)).validate()
    except (ValueError, TypeError) as exc:
        raise ctx.error(key, str(exc)) from None


def _parse_output(ctx: _Ctx, value: Any) -> OutputConfig:
    data = ctx.mapping(value, "output", required={"bucket"}, optional={"prefix"})
    bucket = ctx.string(data["bucket"], "output.bucket")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ctx.error("output.bucket", f"not a valid S3 bucket name: {bucket!r}")
    prefix = ctx.string(data.get("prefix", "fpgrowth"), "output.prefix").strip("/")
    return OutputConfig(bucket=bucket, prefix=prefix)


def _parse_executor(ctx: _Ctx, value: Any) -> ExecutorSettings:
    data = ctx.mapping(value, "executor", optional={"max_concurrent", "tag_concurrency_limits", "start_method"})
    max_concurrent = ctx.integer(data.get("max_concurrent"), "executor.max_concurrent", minimum=1, allow_none=True)
    limits_raw = data.get("tag_concurrency_limits") or []
    if not isinstance(limits_raw, list):
        raise ctx.error("executor.tag_concurrency_limits", f"expected a list, got {limits_raw!r}")
    limits: list[dict[str, Any]] = []
    for index, item in enumerate(limits_raw):
        key = f"executor.tag_concurrency_limits[{index}]"
        entry = ctx.mapping(item, key, required={"key", "limit"}, optional={"value"})
        limit = {"key": ctx.string(entry["key"], f"{key}.key"),
                 "limit": ctx.integer(entry["limit"], f"{key}.limit", minimum=0)}
        if "value" in entry:
            tag_value = entry["value"]
            if not isinstance(tag_value, (str, Mapping)):
                raise ctx.error(f"{key}.value", f"expected a string or {{applyLimitPerUniqueValue: true}}, "
                                                f"got {tag_value!r}")
            limit["value"] = dict(tag_value) if isinstance(tag_value, Mapping) else tag_value
        limits.append(limit)
    start_method = data.get("start_method", "forkserver")
    if start_method not in START_METHODS:
        raise ctx.error("executor.start_method", f"expected one of {', '.join(START_METHODS)}, got {start_method!r}")
    return ExecutorSettings(max_concurrent=max_concurrent, tag_concurrency_limits=tuple(limits),
                            start_method=start_method)


def _parse_schedule(ctx: _Ctx, value: Any) -> ScheduleSettings:
    data = ctx.mapping(value, "schedule", optional={"hour_of_day", "minute_of_hour", "running"})
    running = data.get("running", False)
    if not isinstance(running, bool):
        raise ctx.error("schedule.running", f"expected true or false, got {running!r}")
    return ScheduleSettings(
        hour_of_day=ctx.integer(data.get("hour_of_day", 1), "schedule.hour_of_day", minimum=0, maximum=23),
        minute_of_hour=ctx.integer(data.get("minute_of_hour", 0), "schedule.minute_of_hour", minimum=0, maximum=59),
        running=running,
    )


def _parse_sqs(ctx: _Ctx, value: Any) -> dict[str, Any]:
    """Kept as given; its keys and values are checked by ``fpgrowth_dagster.sqs.SQSSettings``."""
    return ctx.mapping(value, "sqs", optional=set(value) if isinstance(value, Mapping) else set())


def _scalar_values(ctx: _Ctx, value: Any, key: str) -> tuple[Scalar, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ctx.error(key, "expected a value or a non-empty list of values")
    for item in values:
        if item is None or not isinstance(item, (str, int, float, bool)):
            raise ctx.error(key, f"expected a value or a list of values (strings or numbers), got {item!r}")
    return tuple(values)


def _parse_groups(ctx: _Ctx, value: Any) -> tuple[GroupConfig, ...]:
    if not isinstance(value, list) or not value:
        raise ctx.error("groups", f"expected a non-empty list of groups, got {value!r}")
    known_settings = set(_settings_fields())
    groups: list[GroupConfig] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        key = f"groups[{index}]"
        data = ctx.mapping(item, key, required={"name"}, optional={"where", "mining", "tags", "description"})
        name = data["name"]
        if not isinstance(name, str) or not GROUP_NAME_RE.match(name):
            raise ctx.error(f"{key}.name", f"group names use letters, digits and '_' only (they become asset "
                                           f"keys fpgrowth/<name>), got {name!r}")
        if name in seen:
            raise ctx.error(f"{key}.name", f"duplicate group name {name!r} (also groups[{seen[name]}])")
        seen[name] = index
        where_raw = data.get("where") or {}
        where_map = ctx.mapping(where_raw, f"{key}.where", optional=set(where_raw) if isinstance(where_raw, Mapping)
                                else set())
        where = {str(col): _scalar_values(ctx, vals, f"{key}.where.{col}") for col, vals in where_map.items()}
        mining = ctx.mapping(data.get("mining") or {}, f"{key}.mining", optional=known_settings)
        tags_raw = data.get("tags") or {}
        tags_map = ctx.mapping(tags_raw, f"{key}.tags", optional=set(tags_raw) if isinstance(tags_raw, Mapping)
                               else set())
        tags: dict[str, str] = {}
        for tag_key, tag_value in tags_map.items():
            if not isinstance(tag_key, str) or not TAG_KEY_RE.match(tag_key):
                raise ctx.error(f"{key}.tags", f"invalid tag key {tag_key!r} (letters, digits, '_', '.', '-', "
                                               "with an optional 'prefix/')")
            if not isinstance(tag_value, str) or not TAG_VALUE_RE.match(tag_value):
                raise ctx.error(f"{key}.tags.{tag_key}", f"invalid tag value {tag_value!r} (a string of letters, "
                                                         "digits, '_', '.', '-')")
            tags[tag_key] = tag_value
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            raise ctx.error(f"{key}.description", f"expected a string, got {description!r}")
        groups.append(GroupConfig(name=name, where=where, mining=mining, tags=tags, description=description))
    return tuple(groups)
