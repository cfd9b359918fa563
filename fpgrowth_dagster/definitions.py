"""The code location: the one ``Definitions`` of the project, with its executor configured here.

The project config comes from ``$FPGROWTH_CONFIG`` (see :mod:`fpgrowth_dagster.config`). The
multiprocess executor's defaults come from the config and the machine (``max_concurrent`` = the CPUs
this process may actually use), and every field stays settable per launch in run config::

    execution:
      config:
        max_concurrent: 2
        tag_concurrency_limits: [{key: fpgrowth/size, value: large, limit: 1}]
        start_method: {forkserver: {preload_modules: [...]}}   # or {spawn: {}}
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from dagster import (
    Any as AnyConfig,
    Definitions,
    ExecutorDefinition,
    Field,
    Int,
    Selector,
    Shape,
    multiprocess_executor,
)
from dagster._core.execution.retries import get_retries_config

from fpgrowth_dagster.assets import build_assets
from fpgrowth_dagster.config import ExecutorSettings, ProjectConfig, load_project_config
from fpgrowth_dagster.jobs import build_all_groups_job
from fpgrowth_dagster.partitions import build_partitions_def
from fpgrowth_dagster.resources import SharedS3Resource
from fpgrowth_dagster.schedules import build_all_groups_schedule
from fpgrowth_dagster.system import available_cpus

# Imported once by the forkserver, so each step process is forked warm: the code location loaded
# and resolved, the step's modules imported, botocore's models parsed (see fpgrowth_dagster.preload).
PRELOAD_MODULES = ["fpgrowth_dagster.preload"]

_TAG_LIMIT = Shape({
    "key": Field(str),
    "value": Field(AnyConfig, is_required=False,
                   description="A tag value, or {applyLimitPerUniqueValue: true} to limit each value separately."),
    "limit": Field(Int),
})


def _start_method_default(settings: ExecutorSettings) -> dict[str, Any]:
    if settings.start_method == "spawn":
        return {"spawn": {}}
    return {"forkserver": {"preload_modules": list(PRELOAD_MODULES)}}


def fpgrowth_executor(settings: ExecutorSettings) -> ExecutorDefinition:
    """The multiprocess executor with this project's defaults, all still overridable in run config."""
    schema = {
        "max_concurrent": Field(
            Int, is_required=False, default_value=settings.max_concurrent or available_cpus(),
            description="Group steps running at once (default: the CPUs this process may use, from affinity and "
                        "the cgroup quota; this replaces num_workers).",
        ),
        "tag_concurrency_limits": Field(
            [_TAG_LIMIT], is_required=False, default_value=[dict(x) for x in settings.tag_concurrency_limits],
            description="Limits on steps with a given op tag, e.g. at most one fpgrowth/size=large group at a time.",
        ),
        "start_method": Field(
            Selector({
                "spawn": Field({}),
                "forkserver": Field({"preload_modules": Field([str], is_required=False)}),
            }),
            is_required=False,
            default_value=_start_method_default(settings),
        ),
        "retries": get_retries_config(),
    }

    def to_multiprocess_config(config: dict[str, Any]) -> dict[str, Any]:
        return {key: config[key] for key in ("max_concurrent", "tag_concurrency_limits", "start_method", "retries")
                if key in config}

    return multiprocess_executor.configured(
        to_multiprocess_config,
        name="multiprocess",
        config_schema=schema,
        description="Each step in its own process; max_concurrent and tag_concurrency_limits bound the parallelism.",
    )


def _optional_module(name: str) -> Any | None:
    """A project module that may not exist yet (e.g. sensors); its own import errors are not hidden."""
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


def build_definitions(config: ProjectConfig) -> Definitions:
    """Everything Dagster loads for a project config."""
    partitions_def = build_partitions_def(config.partitions)
    transactions, groups, comparison = build_assets(config, partitions_def)
    job = build_all_groups_job(transactions, groups, comparison)
    resources: dict[str, Any] = {"s3": SharedS3Resource()}
    sensors: list[Any] = []
    sensors_module = _optional_module("fpgrowth_dagster.sensors")
    if sensors_module is not None:
        if hasattr(sensors_module, "build_resources"):
            resources.update(sensors_module.build_resources(config))
        if hasattr(sensors_module, "build_sensors"):
            sensors.extend(sensors_module.build_sensors(config, job))
    return Definitions(
        assets=[transactions, *groups, comparison],
        jobs=[job],
        schedules=[build_all_groups_schedule(config, job)],
        sensors=sensors,
        resources=resources,
        executor=fpgrowth_executor(config.executor),
    )


project_config = load_project_config()
defs = build_definitions(project_config)
