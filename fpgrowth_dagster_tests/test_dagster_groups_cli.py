"""``fpgrowth-dagster groups discover``: the group list from the data, run as a real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import yaml

from fpgrowth_dagster.cli.groups import discover_groups, safe_group_name
from fpgrowth_dagster.config import parse_project_config
from fpgrowth_dagster_tests.dagster_helpers import BUCKET, FILTERS, ONLINE_RETAIL, RAW_KEY, make_config_data


def _discover(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fpgrowth_dagster", "groups", "discover", *args],
                          capture_output=True, text=True, timeout=300)


def _filter_args() -> list[str]:
    return [arg for f in FILTERS for arg in ("--filter", f)]


def test_discover_online_retail_countries(tmp_path: Path):
    out = tmp_path / "groups.yaml"
    proc = _discover(str(ONLINE_RETAIL), "--group-column", "Country", *_filter_args(),
                     "--large-threshold", "100", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 36 groups (3 large)" in proc.stderr
    data = yaml.safe_load(out.read_text())
    groups = data["groups"]
    assert len(groups) == 36
    # Largest first; counts from SOURCE.md (after dropping cancellations and Quantity <= 0).
    assert [g["name"] for g in groups[:4]] == ["united_kingdom", "germany", "france", "eire"]
    assert groups[0] == {"name": "united_kingdom", "where": {"Country": "United Kingdom"},
                         "tags": {"fpgrowth/size": "large"},
                         "description": "Country = United Kingdom: 7726 transactions"}
    assert groups[3]["tags"] == {"fpgrowth/size": "small"}  # EIRE: 93 < 100
    assert {g["name"] for g in groups} >= {"channel_islands", "european_community", "unspecified", "usa"}
    # The list drops straight into a project config.
    config = parse_project_config(make_config_data(groups=groups), tmp_path / "p.yaml")
    assert len(config.groups) == 36


def test_discover_from_s3_to_stdout(aws_env: str):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=RAW_KEY, Body=ONLINE_RETAIL.read_bytes())
    proc = _discover(f"s3://{BUCKET}/{RAW_KEY}", "--group-column", "Country", *_filter_args())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Groups of s3://")
    groups = yaml.safe_load(proc.stdout)["groups"]
    assert len(groups) == 36
    assert [g["name"] for g in groups if g["tags"]["fpgrowth/size"] == "large"] == ["united_kingdom"]


def test_discover_errors_name_file_and_column(tmp_path: Path):
    proc = _discover(str(ONLINE_RETAIL), "--group-column", "Region")
    assert proc.returncode == 1
    assert str(ONLINE_RETAIL) in proc.stderr and "group column 'Region'" in proc.stderr
    missing = tmp_path / "nope.csv"
    proc = _discover(str(missing), "--group-column", "Country")
    assert proc.returncode == 1 and f"{missing}: file not found" in proc.stderr


def test_safe_names_are_unique():
    import pandas as pd

    frame = pd.DataFrame({"transaction": ["1", "2", "3", "4"], "group": ["São Paulo", "sao-paulo", "Sao Paulo!", "?"]})
    names = [g["name"] for g in discover_groups(frame, "City", large_threshold=10)]
    assert sorted(names) == ["group", "s_o_paulo", "sao_paulo", "sao_paulo_2"]
    assert safe_group_name("Channel Islands") == "channel_islands"
