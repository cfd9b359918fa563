"""The assets' building blocks on real data: reading a window from S3, splitting groups, clear failures."""

from __future__ import annotations

import io
from pathlib import Path

import boto3
import pandas as pd
import pytest
from botocore.exceptions import EndpointConnectionError
from dagster import Failure

from fpgrowth_dagster.assets import clear_failures, top_rules_markdown
from fpgrowth_dagster.config import parse_project_config
from fpgrowth_dagster.partitions import build_partitions_def, partition_window
from fpgrowth_dagster.source import _in_window, read_window, split_groups
from fpgrowth_dagster_tests.dagster_helpers import BUCKET, ONLINE_RETAIL, _local_rows, make_config_data


def test_clear_failures_keeps_transient_errors_retryable():
    with pytest.raises(Failure) as info:
        with clear_failures("group x, partition p"):
            raise ValueError("bad value in row 3")
    assert info.value.description == "group x, partition p: ValueError: bad value in row 3"
    assert info.value.allow_retries is False
    with pytest.raises(EndpointConnectionError):  # left to the assets' RetryPolicy
        with clear_failures("group x, partition p"):
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


def test_window_of_naive_and_aware_times():
    partitions = build_partitions_def(parse_project_config(make_config_data(), "p.yaml").partitions)
    window = partition_window(partitions, "2011-01-01")
    naive = pd.Series(pd.to_datetime(["2010-12-31 23:59:59", "2011-01-01 00:00:00", "2011-01-31 23:59:00", "2011-02-01 00:00:00"]))
    assert _in_window(naive, window).tolist() == [False, True, True, False]
    aware = naive.dt.tz_localize("Europe/Paris")  # 2011-01-01 00:00 Paris is still 2010-12-31 in UTC
    assert _in_window(aware, window).tolist() == [False, False, True, True]


@pytest.fixture
def split_source(aws_env: str):
    """Online Retail as two objects under one prefix: December as CSV.gz, the rest as Parquet."""
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    raw = pd.read_csv(ONLINE_RETAIL, dtype={"InvoiceNo": str, "StockCode": str})
    december = raw[raw["InvoiceDate"] < "2011-01-01"]
    later = raw[raw["InvoiceDate"] >= "2011-01-01"]
    buffer = io.BytesIO()
    december.to_csv(buffer, index=False, compression="gzip")
    client.put_object(Bucket=BUCKET, Key="raw/online_retail/part-1.csv.gz", Body=buffer.getvalue())
    buffer = io.BytesIO()
    later.to_parquet(buffer, index=False)
    client.put_object(Bucket=BUCKET, Key="raw/online_retail/part-2.parquet", Body=buffer.getvalue())
    return client


@pytest.mark.parametrize("partition", ["2010-12-01", "2011-01-01"])
def test_read_window_over_a_prefix_of_csv_and_parquet(split_source, partition: str, tmp_path: Path):
    groups = [
        {"name": "benelux", "where": {"Country": ["Belgium", "Netherlands"]}},
        {"name": "germany", "where": {"Country": "Germany"}},
        {"name": "north", "where": {"Region": "North"}},
        {"name": "everything"},
    ]
    config = parse_project_config(make_config_data(groups=groups), tmp_path / "p.yaml")
    window = partition_window(build_partitions_def(config.partitions), partition)
    frame, facts = read_window(split_source, config, window)
    assert facts["objects"] == [f"s3://{BUCKET}/raw/online_retail/part-1.csv.gz",
                                f"s3://{BUCKET}/raw/online_retail/part-2.parquet"]
    assert facts["missing_columns"] == ["Region"]
    local = _local_rows()
    start = pd.Timestamp(partition)
    local = local[(local["time"] >= start) & (local["time"] < start + pd.offsets.MonthBegin(1))]
    assert len(frame) == len(local)
    parts = split_groups(frame, config, facts)
    assert "where column(s) 'Region' not in the source" in parts["north"]["error"]
    assert str(config.path) in parts["north"]["error"]
    expected_benelux = local[local["Country"].isin(["Belgium", "Netherlands"])]
    assert sorted(map(tuple, parts["benelux"]["rows"].values.tolist())) == sorted(
        map(tuple, expected_benelux[["transaction", "item"]].values.tolist()))
    assert len(parts["germany"]["rows"]) == int((local["Country"] == "Germany").sum())
    assert len(parts["everything"]["rows"]) == len(local)


def test_where_on_numeric_column_matches_text_and_number(tmp_path: Path):
    groups = [{"name": "customer", "where": {"CustomerID": [12583, "17850"]}}]
    config = parse_project_config(make_config_data(groups=groups), tmp_path / "p.yaml")
    frame = pd.DataFrame({"transaction": ["1", "2", "3"], "item": ["a", "b", "c"],
                          "CustomerID": [12583.0, 17850.0, None]})
    facts = {"renamed": {"InvoiceNo": "transaction", "StockCode": "item"}, "missing_columns": [], "objects": []}
    rows = split_groups(frame, config, facts)["customer"]["rows"]
    assert rows["transaction"].tolist() == ["1", "2"]


def test_top_rules_markdown():
    rules = pd.DataFrame({"antecedents": [["a"], ["b", "c"]], "consequents": [["d"], ["e"]],
                          "support": [0.1, 0.2], "confidence": [0.9, 0.8], "lift": [1.5, 3.0]})
    md = top_rules_markdown(rules)
    assert md.splitlines()[2] == "| b, c | e | 0.2000 | 0.800 | 3.00 |"
    assert top_rules_markdown(rules.iloc[:0]) == "_no rules_"
