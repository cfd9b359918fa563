"""all_groups_job for real: moto S3, a DagsterInstance in a temporary DAGSTER_HOME, the multiprocess executor.

Over two monthly windows of Online Retail every group's objects must equal the mining core's own
output on the same rows; ``max_concurrent=2`` and the ``fpgrowth/size: large`` limit of 1 must hold
in the step events; a group with bad data or settings fails alone and leaves nothing in S3.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pandas as pd
import pytest
from dagster import DagsterEventType, DagsterRunStatus

from fpgrowth_dagster.config import CONFIG_ENV_VAR, load_project_config
from fpgrowth_dagster.s3io import ResultLayout
from fpgrowth_dagster_tests.dagster_helpers import (
    BUCKET,
    as_comparable,
    expected_group_result,
    make_config_data,
    max_overlap,
    read_parquet_object,
    run_all_groups_job,
    step_intervals,
    upload_online_retail,
    write_config,
)

PARTITIONS = ["2010-12-01", "2011-01-01"]


@pytest.fixture
def project(aws_env: str, dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Online Retail on moto, a test config in $FPGROWTH_CONFIG; returns (client, write) to set the config."""
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    client = boto3.client("s3")
    upload_online_retail(client)

    def use(data: dict) -> object:
        path = write_config(tmp_path / "fpgrowth.yaml", data)
        monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
        return load_project_config(path)

    return client, use


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _materializations(instance, run_id: str) -> dict[str, dict]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    out = {}
    for record in records:
        mat = record.event_log_entry.dagster_event.event_specific_data.materialization
        out[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return out


def _check_evaluations(instance, run_id: str) -> list:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [r.event_log_entry.dagster_event.event_specific_data for r in records]


@pytest.mark.slow
def test_all_groups_job_two_months_equals_mining_core(project):
    client, use = project
    config = use(make_config_data())
    layout = ResultLayout(config.output)
    statuses: dict[str, set[str]] = {}
    for partition in PARTITIONS:
        instance, run = run_all_groups_job(
            partition, run_config={"execution": {"config": {"max_concurrent": 2}}})
        assert run.status == DagsterRunStatus.SUCCESS, f"run for {partition} failed"
        intervals = step_intervals(instance, run.run_id)
        group_steps = [s for s, *_ in intervals if s.startswith("fpgrowth__")]
        assert len(group_steps) == len(config.groups)
        # Bounded parallelism, observed from the step start/end events of the whole run.
        assert max_overlap(intervals) <= 2
        large = {f"fpgrowth__{g.name}" for g in config.groups if g.tags.get("fpgrowth/size") == "large"}
        assert len(large) == 3
        assert max_overlap(intervals, keep=lambda key: key in large) <= 1

        mats = _materializations(instance, run.run_id)
        for group in config.groups:
            meta = mats[f"fpgrowth/{group.name}"]
            expected = expected_group_result(config, group.name, partition)
            statuses.setdefault(group.name, set()).add(meta["status"])
            assert meta["status"] == expected.status, group.name
            assert meta["transactions"] == expected.n_transactions
            itemsets_key = layout.itemsets_key(group.name, partition)
            rules_key = layout.rules_key(group.name, partition)
            if expected.status == "skipped":
                assert _keys(client, layout.group_prefix(group.name, partition)) == []
                continue
            assert (meta["itemsets"], meta["rules"], meta["items"]) == (
                expected.n_itemsets, expected.n_rules, expected.n_items)
            assert meta["frequent_itemsets"] == f"s3://{BUCKET}/{itemsets_key}"
            pd.testing.assert_frame_equal(as_comparable(read_parquet_object(client, itemsets_key)),
                                          as_comparable(expected.itemsets), check_dtype=False, check_exact=True)
            pd.testing.assert_frame_equal(as_comparable(read_parquet_object(client, rules_key)),
                                          as_comparable(expected.rules), check_dtype=False, check_exact=True)
            assert "| antecedents | consequents |" in meta["top_rules"]
        evaluations = _check_evaluations(instance, run.run_id)
        assert len(evaluations) == len(config.groups)  # one results_valid check per group
        assert all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]
        for evaluation in evaluations:
            assert {"outputs_exist", "row_counts_match", "supports_in_range", "rules_meet_threshold"} <= set(
                evaluation.metadata)
        comparison = mats["group_comparison"]
        assert comparison["groups_compared"] == sum(
            1 for g in config.groups if expected_group_result(config, g.name, partition).status == "mined")
        table = read_parquet_object(client, layout.comparison_table_key(partition))
        assert len(table) == comparison["distinct_rules"]
        png = client.get_object(Bucket=BUCKET, Key=layout.comparison_plot_key(partition))["Body"].read()
        assert png[:4] == b"\x89PNG"
        assert comparison["plot"].startswith("![rule prevalence](data:image/png;base64,")
    # The windows exercise both outcomes: mined groups and groups skipped as too small.
    assert "mined" in statuses["united_kingdom"] and "skipped" in set().union(*statuses.values())
    assert _keys(client, layout.staging_prefix()) == []


@pytest.mark.slow
def test_bad_groups_fail_alone_and_leave_nothing(project):
    client, use = project
    groups = [
        {"name": "germany", "where": {"Country": "Germany"}},
        # Settings that make mining fail: an itemset budget of 1.
        {"name": "france", "where": {"Country": "France"}, "mining": {"max_itemsets": 1}},
        # A where on a column the source does not have.
        {"name": "north", "where": {"Region": "North"}},
        {"name": "united_kingdom", "where": {"Country": "United Kingdom"}, "mining": {"min_support": 0.03}},
    ]
    config = use(make_config_data(groups=groups))
    layout = ResultLayout(config.output)
    partition = "2010-12-01"
    instance, run = run_all_groups_job(partition, run_config={"execution": {"config": {"max_concurrent": 2}}})
    assert run.status == DagsterRunStatus.FAILURE
    outcomes = {step: outcome for step, _, _, outcome in step_intervals(instance, run.run_id)}
    assert outcomes == {"transactions": "success", "fpgrowth__germany": "success", "fpgrowth__united_kingdom": "success",
                        "fpgrowth__france": "failure", "fpgrowth__north": "failure"}  # comparison never started
    failures = {
        r.event_log_entry.dagster_event.step_key: r.event_log_entry.dagster_event.event_specific_data.error.message
        for r in instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
    }
    assert "group france, partition 2010-12-01: mining failed: BudgetExceeded" in failures["fpgrowth__france"]
    assert "group north, partition 2010-12-01" in failures["fpgrowth__north"]
    assert "where column(s) 'Region' not in the source" in failures["fpgrowth__north"]
    # Each failure is final: no retries of a failure that a retry cannot fix.
    retries = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY).records
    assert retries == []
    for good in ("germany", "united_kingdom"):
        assert _keys(client, layout.group_prefix(good, partition)) == [
            layout.rules_key(good, partition), layout.itemsets_key(good, partition)]
    for bad in ("france", "north"):
        assert _keys(client, layout.group_prefix(bad, partition)) == []
    assert _keys(client, layout.staging_prefix()) == []
    assert _keys(client, f"{config.output.prefix}/group_comparison/") == []
