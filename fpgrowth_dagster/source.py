"""Reading the raw source for one window and splitting it into the groups' rows.

The ``transactions`` asset reads every source object once per partition with the mining core's
``read_long`` (validation, row filters), keeps the rows of the window and the columns the groups'
``where`` clauses select on, then gives each group its rows, or the reason it has none.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from fpgrowth_dagster.config import ProjectConfig
from fpgrowth_dagster.s3io import get_bytes, s3_uri, source_keys


def _source_columns(data: bytes) -> list[str]:
    """Column names of a CSV / gzipped CSV / Parquet object."""
    import pyarrow.parquet as pq

    if data[:4] == b"PAR1":
        return list(pq.ParquetFile(io.BytesIO(data)).schema_arrow.names)
    compression = "gzip" if data[:2] == b"\x1f\x8b" else None
    return [str(c) for c in pd.read_csv(io.BytesIO(data), nrows=0, compression=compression).columns]


def _where_mask(frame: pd.DataFrame, where: dict[str, tuple[Any, ...]], columns: dict[str, str]) -> pd.Series:
    """Rows where every ``column`` holds one of its values: by number on numeric columns, else as text."""
    mask = pd.Series(True, index=frame.index)
    for column, values in where.items():
        col = frame[columns[column]]
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            numbers = [n for n in (_as_number(v) for v in values) if n is not None]
            mask &= col.isin(numbers).to_numpy()
        else:
            mask &= col.astype("string").isin({str(v) for v in values}).fillna(False).to_numpy(dtype=bool)
    return mask


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_window(client: Any, config: ProjectConfig, window: tuple[Any, Any] | None) -> tuple[pd.DataFrame, dict]:
    """The cleaned rows of the source in ``window``, with every ``where`` column; and facts for metadata.

    Returns the frame (``transaction``, ``item``, [``time``], where columns under their own names)
    and ``{"objects": [...], "rows_read": n, "missing_columns": [...]}``.
    """
    from fpgrowth_dagster.mining import LongFormat, read_long

    src = config.source
    fmt = LongFormat(transaction_column=src.transaction_column, item_column=src.item_column,
                     time_column=src.time_column, filters=tuple(src.filters))
    renamed = {src.transaction_column: "transaction", src.item_column: "item"}
    if src.time_column:
        renamed[src.time_column] = "time"
    keys = source_keys(client, src)
    frames: list[pd.DataFrame] = []
    seen_columns: set[str] = set()
    for key in keys:
        uri = s3_uri(src.bucket, key)
        data = get_bytes(client, src.bucket, key)
        available = _source_columns(data)
        seen_columns.update(available)
        extra = [c for c in config.where_columns if c in available and c not in renamed]
        frame = read_long(io.BytesIO(data), fmt, name=uri, extra_columns=extra)
        if window is not None:
            frame = frame[_in_window(frame["time"], window)]
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    missing = [c for c in config.where_columns if c not in seen_columns]
    return frame, {"objects": [s3_uri(src.bucket, k) for k in keys], "missing_columns": missing,
                   "renamed": renamed}


def _in_window(times: pd.Series, window: tuple[Any, Any]) -> pd.Series:
    start, end = window
    tz = getattr(times.dt, "tz", None)
    if tz is None:  # naive times are read as wall-clock times of the partitions' time zone
        start, end = pd.Timestamp(start).tz_localize(None), pd.Timestamp(end).tz_localize(None)
    else:
        start, end = pd.Timestamp(start).tz_convert(tz), pd.Timestamp(end).tz_convert(tz)
    return (times >= start) & (times < end)


def split_groups(frame: pd.DataFrame, config: ProjectConfig, facts: dict) -> dict[str, dict[str, Any]]:
    """Per group: its rows (``transaction``, ``item``) or the error that keeps it from having any."""
    renamed = facts["renamed"]
    columns = {c: renamed.get(c, c) for c in config.where_columns}
    out: dict[str, dict[str, Any]] = {}
    for group in config.groups:
        missing = [c for c in group.where if c in facts["missing_columns"]]
        if missing:
            out[group.name] = {"error": (
                f"{config.path}: group {group.name!r}: where column(s) {', '.join(map(repr, missing))} not in the "
                f"source ({', '.join(facts['objects'])})")}
            continue
        rows = frame[_where_mask(frame, dict(group.where), columns)] if group.where else frame
        out[group.name] = {"rows": rows[["transaction", "item"]].reset_index(drop=True)}
    return out
