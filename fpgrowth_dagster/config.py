"""The project config file: source data, time partitions, mining defaults, output, executor and groups.

One YAML file holds what the old hand-written group list held. Its path comes from the
``FPGROWTH_CONFIG`` environment variable; without it ``fpgrowth.yaml`` in the working directory is
used if present, else the packaged Online Retail demo (``fpgrowth_dagster/defaults/demo.yaml``).
Every validation error names the file and the key, e.g. ``demo.yaml: groups[3].where: ...``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

CONFIG_ENV_VAR = "FPGROWTH_CONFIG"
LOCAL_CONFIG_NAME = "fpgrowth.yaml"
DEMO_CONFIG_PATH = Path(__file__).resolve().parent / "defaults" / "demo.yaml"

PARTITION_KINDS = ("monthly", "weekly", "daily", "static")
START_METHODS = ("forkserver", "spawn")
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
# Dagster's rule for tag keys (an optional "prefix/" then a name) and the values we accept.
TAG_KEY_RE = re.compile(r"^([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")
TAG_VALUE_RE = re.compile(r"^[A-Za-z0-9_.-]{0,63}$")
SIZE_TAG = "fpgrowth/size"


class ConfigError(ValueError):
    """The project config file is invalid; the message names the file and the key."""


Scalar = str | int | float | bool


@dataclass(frozen=True)
class SourceConfig:
    """Raw long-format transactions: one S3 object, or every CSV/CSV.gz/Parquet object under a prefix."""

    uri: str
    transaction_column: str
    item_column: str
    time_column: str | None = None
    filters: tuple[str | Mapping[str, Any], ...] = ()

    @property
    def bucket(self) -> str:
        return self.uri[len("s3://") :].split("/", 1)[0]

    @property
    def key(self) -> str:
        """The object key, or the prefix when the URI ends with ``/``."""
        rest = self.uri[len("s3://") :].split("/", 1)
        return rest[1] if len(rest) > 1 else ""


@dataclass(frozen=True)
class PartitionsConfig:
    """Time windows of the time column (monthly/weekly/daily from ``start``), or one static partition."""

    kind: str = "monthly"
    start: str | None = None
    end: str | None = None
    timezone: str = "UTC"
    static_key: str = "all"


@dataclass(frozen=True)
class OutputConfig:
    """Where results go: ``s3://bucket/prefix/...``."""

    bucket: str
    prefix: str = "fpgrowth"


@dataclass(frozen=True)
class ExecutorSettings:
    """Defaults of the multiprocess executor; every field can still be changed per launch in run config."""

    max_concurrent: int | None = None
    tag_concurrency_limits: tuple[Mapping[str, Any], ...] = ()
    start_method: str = "forkserver"


@dataclass(frozen=True)
class ScheduleSettings:
    """When the schedule for the latest complete window ticks, and whether it starts running."""

    hour_of_day: int = 1
    minute_of_hour: int = 0
    running: bool = False


@dataclass(frozen=True)
class GroupConfig:
    """One group: the rows it takes (column -> allowed values, all must hold), mining overrides and tags."""

    name: str
    where: Mapping[str, tuple[Scalar, ...]] = field(default_factory=dict)
    mining: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class ProjectConfig:
    """The whole project config, validated."""

    path: Path
    source: SourceConfig
    partitions: PartitionsConfig
    output: OutputConfig
    groups: tuple[GroupConfig, ...]
    mining: Mapping[str, Any] = field(default_factory=dict)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    # The SQS job queue and its sensor, validated by fpgrowth_dagster.sqs.SQSSettings.from_mapping.
    sqs: Mapping[str, Any] = field(default_factory=dict)

    def group(self, name: str) -> GroupConfig:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"{self.path}: no group named {name!r}")

    @property
    def where_columns(self) -> list[str]:
        """Every column that some group's ``where`` selects on, in first-use order."""
        columns: list[str] = []
        for group in self.groups:
            for column in group.where:
                if column not in columns:
                    columns.append(column)
        return columns

    def settings_for(self, group: GroupConfig | str):  # -> MiningSettings
        """The project's mining defaults with the group's overrides applied."""
        from fpgrowth_dagster.mining import MiningSettings

        if isinstance(group, str):
            group = self.group(group)
        return MiningSettings(**dict(self.mining)).replace(**dict(group.mining))


# --------------------------------------------------------------------------- loading


def config_path() -> Path:
    """``$FPGROWTH_CONFIG``, else ``./fpgrowth.yaml`` if present, else the packaged demo config."""
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return Path(env).expanduser()
    local = Path.cwd() / LOCAL_CONFIG_NAME
    if local.is_file():
        return local
    return DEMO_CONFIG_PATH


def load_project_config(path: str | Path | None = None) -> ProjectConfig:
    """Read and validate a project config file (default: :func:`config_path`)."""
    resolved = Path(path) if path is not None else config_path()
    return _load_cached(str(resolved.resolve()) if resolved.exists() else str(resolved), _mtime(resolved))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0


@lru_cache(maxsize=16)
def _load_cached(path_text: str, _mtime_key: float) -> ProjectConfig:
    path = Path(path_text)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: project config file not found (set {CONFIG_ENV_VAR} to its path)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read project config: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_project_config(data, path)


def parse_project_config(data: Any, path: str | Path = "<config>") -> ProjectConfig:
    """Validate the parsed YAML of a project config; errors name ``path`` and the key."""
    from fpgrowth_dagster.config_parse import parse

    return parse(data, Path(path))
