"""Helpers shared by the Dagster-layer tests: test configs on moto, running all_groups_job for real, event logs."""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

BUCKET = "fpgrowth-test"
RAW_KEY = "raw/online_retail/online_retail_2010-12_to_2011-05.csv.gz"
ONLINE_RETAIL = Path(__file__).resolve().parents[1] / "data" / "online_retail" / "online_retail_2010-12_to_2011-05.csv.gz"
FILTERS = ["InvoiceNo not_startswith C", "Quantity > 0"]

# A few groups of Online Retail: two tagged large (so the tag limit has something to limit), a
# membership group, and small groups some of which are skipped in some months.
TEST_GROUPS: list[dict[str, Any]] = [
    {"name": "united_kingdom", "where": {"Country": "United Kingdom"}, "tags": {"fpgrowth/size": "large"},
     "mining": {"min_support": 0.03}},
    {"name": "germany", "where": {"Country": "Germany"}, "tags": {"fpgrowth/size": "large"}},
    {"name": "france", "where": {"Country": "France"}, "tags": {"fpgrowth/size": "large"}},
    {"name": "benelux", "where": {"Country": ["Belgium", "Netherlands"]}, "tags": {"fpgrowth/size": "small"}},
    {"name": "eire", "where": {"Country": "EIRE"}, "tags": {"fpgrowth/size": "small"}},
    {"name": "spain", "where": {"Country": "Spain"}, "tags": {"fpgrowth/size": "small"}},
]


def make_config_data(groups: Sequence[Mapping[str, Any]] = TEST_GROUPS, **overrides: Any) -> dict[str, Any]:
    """A project config over the Online Retail file uploaded to the moto bucket."""
    data: dict[str, Any] = {
        "source": {"uri": f"s3://{BUCKET}/raw/online_retail/", "transaction_column": "InvoiceNo",
                   "item_column": "StockCode", "time_column": "InvoiceDate", "filters": list(FILTERS)},
        "partitions": {"type": "monthly", "start": "2010-12-01", "end": "2011-06-01"},
        "mining": {"min_support": 0.05, "min_count": 5, "max_len": 3, "min_transactions": 20, "metric": "confidence",
                   "min_threshold": 0.7},
        "output": {"bucket": BUCKET, "prefix": "results"},
        "executor": {"tag_concurrency_limits": [{"key": "fpgrowth/size", "value": "large", "limit": 1}]},
        "groups": [dict(g) for g in groups],
    }
    data.update(overrides)
    return data


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def upload_online_retail(client: Any) -> None:
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key=RAW_KEY, Body=ONLINE_RETAIL.read_bytes())


def all_groups_job_from_env():
    """The job built from ``$FPGROWTH_CONFIG``, for ``reconstructable`` (step processes rebuild it)."""
    from fpgrowth_dagster.config import load_project_config
    from fpgrowth_dagster.definitions import build_definitions

    return build_definitions(load_project_config()).resolve_job_def("all_groups_job")


def run_all_groups_job(partition_key: str, run_config: Mapping[str, Any] | None = None):
    """Execute all_groups_job for one partition in a fresh process, as a run worker does.

    A new process per run matters: the multiprocess executor's forkserver lives as long as the
    process that started it and keeps the environment (``$FPGROWTH_CONFIG``) it was started with.
    Returns ``(instance, run)`` with the run's record from the real instance in ``$DAGSTER_HOME``.
    """
    import json
    import subprocess
    import sys

    from dagster import DagsterInstance

    proc = subprocess.run(
        [sys.executable, "-m", "fpgrowth_dagster_tests.dagster_helpers", partition_key, json.dumps(run_config or {})],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1],
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RUN_ID ")]
    assert proc.returncode == 0 and lines, f"run process failed ({proc.returncode}):\n{proc.stderr[-5000:]}"
    instance = DagsterInstance.get()
    return instance, instance.get_run_by_id(lines[-1].split()[1])


def _execute(partition_key: str, run_config: Mapping[str, Any]) -> str:
    from dagster import DagsterInstance, execute_job, reconstructable

    with DagsterInstance.get() as instance:
        result = execute_job(reconstructable(all_groups_job_from_env), instance=instance, run_config=dict(run_config),
                             tags={"dagster/partition": partition_key}, raise_on_error=False)
        return result.run_id


def step_intervals(instance: Any, run_id: str) -> list[tuple[str, int, int, str]]:
    """(step key, start order, end order, outcome) from STEP_START and STEP_SUCCESS/STEP_FAILURE events."""
    from dagster import DagsterEventType

    records = instance.get_records_for_run(
        run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
    ).records
    starts: dict[str, int] = {}
    intervals = []
    for record in sorted(records, key=lambda r: r.storage_id):
        event = record.event_log_entry.dagster_event
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.storage_id
        else:
            outcome = "success" if event.event_type == DagsterEventType.STEP_SUCCESS else "failure"
            intervals.append((event.step_key, starts.pop(event.step_key), record.storage_id, outcome))
    assert not starts, f"steps started but never ended: {starts}"
    return intervals


def max_overlap(intervals: Sequence[tuple[str, int, int, str]], keep=lambda step_key: True) -> int:
    """The largest number of the kept steps running at the same time."""
    points = []
    for step_key, start, end, _ in intervals:
        if keep(step_key):
            points += [(start, 1), (end, -1)]
    running = peak = 0
    for _, delta in sorted(points):
        running += delta
        peak = max(peak, running)
    return peak


def read_parquet_object(client: Any, key: str):
    from fpgrowth_dagster.s3io import parquet_to_frame

    return parquet_to_frame(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@functools.lru_cache(maxsize=1)
def _local_rows():
    from fpgrowth_dagster.mining import LongFormat, read_long

    fmt = LongFormat(transaction_column="InvoiceNo", item_column="StockCode", time_column="InvoiceDate",
                     filters=tuple(FILTERS))
    return read_long(io.BytesIO(ONLINE_RETAIL.read_bytes()), fmt, extra_columns=["Country"])


def expected_group_result(config: Any, group_name: str, partition_key: str):
    """The mining core's own result on the same cleaned, windowed, grouped rows (read from the local file)."""
    import pandas as pd

    from fpgrowth_dagster.mining import mine_group, to_baskets

    frame = _local_rows()
    start = pd.Timestamp(partition_key)
    end = start + pd.offsets.MonthBegin(1)
    frame = frame[(frame["time"] >= start) & (frame["time"] < end)]
    group = config.group(group_name)
    (values,) = group.where.values()
    frame = frame[frame["Country"].isin(list(values))]
    return mine_group(to_baskets(frame), config.settings_for(group), group=group_name)


def as_comparable(frame):
    """List columns as tuples, so frames from Parquet and from the mining core compare exactly."""
    out = frame.copy()
    for column in out.columns:
        if len(out) and isinstance(out[column].iloc[0], (list, tuple)):
            out[column] = [tuple(v) for v in out[column]]
    return out.reset_index(drop=True)


if __name__ == "__main__":
    import json
    import sys

    print("RUN_ID", _execute(sys.argv[1], json.loads(sys.argv[2])))
