"""Project config validation, partitions, the executor's run-config defaults and overrides, and the schedule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from fpgrowth_dagster.config import (
    CONFIG_ENV_VAR,
    DEMO_CONFIG_PATH,
    ConfigError,
    config_path,
    load_project_config,
    parse_project_config,
)
from fpgrowth_dagster.definitions import build_definitions
from fpgrowth_dagster.system import available_cpus
from fpgrowth_dagster_tests.dagster_helpers import make_config_data, write_config


def _error(tmp_path: Path, data: dict) -> str:
    path = write_config(tmp_path / "project.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_project_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message  # every error names the file
    return message


def test_demo_config_is_valid_with_all_36_countries():
    config = load_project_config(DEMO_CONFIG_PATH)
    assert len(config.groups) == 36
    assert config.group("united_kingdom").where == {"Country": ("United Kingdom",)}
    assert config.group("united_kingdom").tags == {"fpgrowth/size": "large"}
    assert config.partitions.kind == "monthly" and config.partitions.start == "2010-12-01"
    assert config.output.bucket == "fpgrowth-demo"


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert config_path() == DEMO_CONFIG_PATH
    (tmp_path / "fpgrowth.yaml").write_text("x: 1\n")
    assert config_path() == tmp_path / "fpgrowth.yaml"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(tmp_path / "other.yaml"))
    assert config_path() == tmp_path / "other.yaml"


def test_group_overrides_and_membership(tmp_path: Path):
    config = load_project_config(write_config(tmp_path / "p.yaml", make_config_data()))
    assert config.settings_for("united_kingdom").min_support == 0.03
    assert config.settings_for("germany").min_support == 0.05
    assert config.group("benelux").where == {"Country": ("Belgium", "Netherlands")}
    assert config.where_columns == ["Country"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("output"), "(top level): missing required key(s) output"),
        (lambda d: d.update(colour="blue"), "colour: unknown key"),
        (lambda d: d["source"].update(uri="/local/file.csv"), "source.uri: expected an S3 URI"),
        (lambda d: d["source"].update(filters=["Quantity >> 0"]), "source.filters[0]: cannot parse filter"),
        (lambda d: d["partitions"].update(type="hourly"), "partitions.type: expected one of monthly"),
        (lambda d: d["partitions"].update(start="2010-13-01"), "partitions.start: expected a date"),
        (lambda d: d["partitions"].update(end="2010-01-01"), "partitions.end: end 2010-01-01 must be after"),
        (lambda d: d["source"].pop("time_column"), "partitions.type: monthly partitions need source.time_column"),
        (lambda d: d["mining"].update(min_support=1.5), "mining: min_support must be a number in (0, 1]"),
        (lambda d: d["mining"].update(min_supp=0.1), "mining.min_supp: unknown key"),
        (lambda d: d["groups"][1].update(mining={"engine": "magic"}), "groups[1].mining: unknown engine 'magic'"),
        (lambda d: d["groups"][2].update(name="Fr ance"), "groups[2].name: group names use letters"),
        (lambda d: d["groups"][3].update(name="germany"), "groups[3].name: duplicate group name 'germany'"),
        (lambda d: d["groups"][0].update(where={"Country": []}), "groups[0].where.Country: expected a value"),
        (lambda d: d["groups"][0].update(tags={"fpgrowth/size": "very large"}), "groups[0].tags.fpgrowth/size"),
        (lambda d: d["executor"].update(max_concurrent=0), "executor.max_concurrent: expected an integer >= 1"),
        (lambda d: d["executor"].update(start_method="fork"), "executor.start_method: expected one of"),
        (lambda d: d.update(groups=[]), "groups: expected a non-empty list"),
        (lambda d: d["output"].update(bucket="Bad_Bucket"), "output.bucket: not a valid S3 bucket name"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path: Path, change, expected: str):
    data = make_config_data()
    change(data)
    assert expected in _error(tmp_path, data)


def test_yaml_and_missing_file_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad}: not valid YAML"):
        load_project_config(bad)
    with pytest.raises(ConfigError, match="project config file not found"):
        load_project_config(tmp_path / "missing.yaml")


def test_static_partition(tmp_path: Path):
    data = make_config_data(partitions={"type": "static", "key": "everything"})
    config = parse_project_config(data, tmp_path / "static.yaml")
    defs = build_definitions(config)
    job = defs.resolve_job_def("all_groups_job")
    assert job.partitions_def.get_partition_keys() == ["everything"]


def test_executor_defaults_and_run_config_overrides(tmp_path: Path):
    """max_concurrent defaults to the CPUs available; every executor field can be overridden per launch."""
    from dagster._core.system_config.objects import ResolvedRunConfig

    config = parse_project_config(make_config_data(), tmp_path / "p.yaml")
    job = build_definitions(config).resolve_job_def("all_groups_job")
    default = ResolvedRunConfig.build(job, {}).execution.execution_engine_config
    assert default["max_concurrent"] == available_cpus()
    assert default["tag_concurrency_limits"] == [{"key": "fpgrowth/size", "value": "large", "limit": 1}]
    assert default["start_method"]["forkserver"]["preload_modules"] == ["fpgrowth_dagster.preload"]
    override = {"execution": {"config": {"max_concurrent": 7, "tag_concurrency_limits": [],
                                         "start_method": {"spawn": {}}}}}
    resolved = ResolvedRunConfig.build(job, override).execution.execution_engine_config
    assert resolved["max_concurrent"] == 7
    assert resolved["tag_concurrency_limits"] == []
    assert resolved["start_method"] == {"spawn": {}}
    fixed = parse_project_config(make_config_data(executor={"max_concurrent": 3, "start_method": "spawn"}),
                                 tmp_path / "q.yaml")
    job = build_definitions(fixed).resolve_job_def("all_groups_job")
    resolved = ResolvedRunConfig.build(job, {}).execution.execution_engine_config
    assert resolved["max_concurrent"] == 3 and resolved["start_method"] == {"spawn": {}}


def test_definitions_shape(tmp_path: Path):
    from dagster import AssetKey

    config = parse_project_config(make_config_data(), tmp_path / "p.yaml")
    defs = build_definitions(config)
    job = defs.resolve_job_def("all_groups_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert keys == {"transactions", "group_comparison", "fpgrowth/united_kingdom", "fpgrowth/germany",
                    "fpgrowth/france", "fpgrowth/benelux", "fpgrowth/eire", "fpgrowth/spain"}
    uk = defs.resolve_assets_def(AssetKey(["fpgrowth", "united_kingdom"]))
    assert uk.op.tags["fpgrowth/size"] == "large"  # op tags: what the executor's tag limits see
    assert [c.name for c in uk.check_specs] == ["results_valid"]
    assert uk.op.retry_policy is not None


@pytest.mark.parametrize(
    ("tick", "partition"),
    [
        (dt.datetime(2011, 2, 1, 1, 0, tzinfo=dt.timezone.utc), "2011-01-01"),
        (dt.datetime(2011, 1, 1, 1, 0, tzinfo=dt.timezone.utc), "2010-12-01"),
        (dt.datetime(2011, 6, 1, 1, 0, tzinfo=dt.timezone.utc), "2011-05-01"),
    ],
)
def test_schedule_requests_latest_complete_window(tmp_path: Path, tick: dt.datetime, partition: str):
    from dagster import build_schedule_context

    config = parse_project_config(make_config_data(), tmp_path / "p.yaml")
    schedule = build_definitions(config).resolve_schedule_def("all_groups_schedule")
    assert schedule.cron_schedule == "0 1 1 * *"
    result = schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=tick))
    assert [r.partition_key for r in result.run_requests] == [partition]
    assert result.run_requests[0].job_name in (None, "all_groups_job")


def test_weekly_schedule_and_static_schedule(tmp_path: Path):
    from dagster import build_schedule_context

    weekly = parse_project_config(make_config_data(partitions={"type": "weekly", "start": "2010-12-05"}),
                                  tmp_path / "w.yaml")
    schedule = build_definitions(weekly).resolve_schedule_def("all_groups_schedule")
    tick = dt.datetime(2011, 1, 16, 1, 0, tzinfo=dt.timezone.utc)  # a Sunday: the week 01-09..01-16 just ended
    assert [r.partition_key for r in schedule.evaluate_tick(build_schedule_context(scheduled_execution_time=tick))
            .run_requests] == ["2011-01-09"]
    static = parse_project_config(make_config_data(partitions={"type": "static"}), tmp_path / "s.yaml")
    defs = build_definitions(static)
    schedule = defs.resolve_schedule_def("all_groups_schedule")
    context = build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    result = schedule.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests] == ["all"]


def test_demo_config_round_trips_through_yaml():
    data = yaml.safe_load(DEMO_CONFIG_PATH.read_text())
    assert parse_project_config(data, DEMO_CONFIG_PATH).groups == load_project_config(DEMO_CONFIG_PATH).groups
