"""Reading transactions: long tables (CSV, gzipped CSV, Parquet), basket lines and FIMI ``.dat``.

Every reader returns item labels as strings, exactly as written in the file (invoice
"536365" and stock code "85123A" stay as they are; an integer CustomerID does not become
"17850.0"), and every validation error names the file, column, row or value at fault.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fpgrowth_dagster.mining.errors import InputError
from fpgrowth_dagster.mining.filters import FILTER_OPS, RowFilter
from fpgrowth_dagster.mining.sources import GZIP_MAGIC, Source, is_parquet, read_bytes, source_name, text_lines

__all__ = [
    "FILTER_OPS",
    "LongFormat",
    "RowFilter",
    "group_baskets",
    "read_basket",
    "read_fimi",
    "read_long",
    "to_baskets",
]

# pandas' documented default NA strings; key columns use only the empty field as missing, so an
# item literally called "NA" or "null" stays an item.
PANDAS_NA_STRINGS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)
MAX_ROWS_LISTED = 5


@dataclass(frozen=True)
class LongFormat:
    """Which columns of a long table (one row per transaction line) hold what.

    ``filters`` are applied in order before validation of the key columns; they may be given
    as :class:`RowFilter`, ``"COLUMN OP VALUE"`` strings or dicts.
    """

    transaction_column: str
    item_column: str
    group_column: str | None = None
    time_column: str | None = None
    filters: tuple[RowFilter, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("transaction_column", "item_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"LongFormat.{name} must be a non-empty column name, got {value!r}")
        filters = tuple(_as_filter(f) for f in (self.filters or ()))
        object.__setattr__(self, "filters", filters)

    @property
    def key_columns(self) -> list[str]:
        """Columns whose values are labels: transaction, item and group."""
        cols = [self.transaction_column, self.item_column]
        if self.group_column:
            cols.append(self.group_column)
        return cols

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LongFormat:
        known = {"transaction_column", "item_column", "group_column", "time_column", "filters"}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown long-format keys {sorted(unknown)}; expected {sorted(known)}")
        return cls(**{k: (tuple(v) if k == "filters" else v) for k, v in data.items()})

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_column": self.transaction_column,
            "item_column": self.item_column,
            "group_column": self.group_column,
            "time_column": self.time_column,
            "filters": [f.to_dict() for f in self.filters],
        }


def _as_filter(spec: RowFilter | str | Mapping[str, Any]) -> RowFilter:
    if isinstance(spec, RowFilter):
        return spec
    if isinstance(spec, str):
        return RowFilter.parse(spec)
    if isinstance(spec, Mapping):
        return RowFilter.from_dict(spec)
    raise InputError(f"a filter must be a RowFilter, 'COLUMN OP VALUE' text or a dict, got {spec!r}")


# --------------------------------------------------------------------------- long format


def read_long(
    source: Source,
    fmt: LongFormat,
    *,
    name: str | None = None,
    extra_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a long table, apply ``fmt.filters`` and validate it.

    Returns columns ``transaction``, ``item`` (strings), ``group`` (string, if configured),
    ``time`` (datetime64, if configured), then ``extra_columns`` under their own names. The
    index holds 1-based data row numbers of the file (header excluded), for messages.
    """
    label = source_name(source, name)
    data = read_bytes(source, label)
    parquet = is_parquet(data, label)
    available = _parquet_columns(data, label) if parquet else _csv_columns(data, label)

    wanted: list[str] = []
    for col in [*fmt.key_columns, fmt.time_column, *extra_columns, *(f.column for f in fmt.filters)]:
        if col and col not in wanted:
            wanted.append(col)
    _require_columns(label, fmt, available, wanted, extra_columns)

    frame = _read_parquet(data, label, wanted) if parquet else _read_csv(data, label, wanted, fmt)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    if frame.empty:
        raise InputError(f"{label}: no data rows")
    frame = _apply_filters(frame, fmt.filters, label)

    out = pd.DataFrame(index=frame.index)
    out["transaction"] = _labels(frame[fmt.transaction_column], label, fmt.transaction_column)
    out["item"] = _labels(frame[fmt.item_column], label, fmt.item_column)
    if fmt.group_column:
        out["group"] = _labels(frame[fmt.group_column], label, fmt.group_column)
    if fmt.time_column:
        out["time"] = _parse_time(frame[fmt.time_column], label, fmt.time_column)
    for col in extra_columns:
        if col not in out.columns:
            out[col] = frame[col]
    return out


def _csv_columns(data: bytes, label: str) -> list[str]:
    try:
        header = pd.read_csv(io.BytesIO(data), nrows=0, compression="gzip" if data[:2] == GZIP_MAGIC else None)
    except pd.errors.EmptyDataError:
        raise InputError(f"{label}: empty file (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise InputError(f"{label}: cannot read as CSV: {exc}") from None
    return [str(c) for c in header.columns]


def _parquet_columns(data: bytes, label: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.ParquetFile(io.BytesIO(data)).schema_arrow.names)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses for broken files
        raise InputError(f"{label}: cannot read as Parquet: {exc}") from None


def _require_columns(
    label: str, fmt: LongFormat, available: list[str], wanted: list[str], extra_columns: Sequence[str]
) -> None:
    missing = [c for c in wanted if c not in available]
    if not missing:
        return
    roles = []
    for col in missing:
        if col == fmt.transaction_column:
            roles.append(f"transaction column {col!r}")
        elif col == fmt.item_column:
            roles.append(f"item column {col!r}")
        elif col == fmt.group_column:
            roles.append(f"group column {col!r}")
        elif col == fmt.time_column:
            roles.append(f"time column {col!r}")
        elif col in extra_columns:
            roles.append(f"column {col!r}")
        else:
            used_by = [str(f) for f in fmt.filters if f.column == col]
            roles.append(f"column {col!r} used by filter '{used_by[0]}'")
    raise InputError(f"{label}: missing {', '.join(roles)}; the file has columns: {', '.join(available)}")


def _read_csv(data: bytes, label: str, columns: list[str], fmt: LongFormat) -> pd.DataFrame:
    text_columns = set(fmt.key_columns) | ({fmt.time_column} if fmt.time_column else set())
    na_values = {c: ([""] if c in text_columns else list(PANDAS_NA_STRINGS)) for c in columns}
    try:
        return pd.read_csv(
            io.BytesIO(data),
            usecols=columns,
            dtype={c: str for c in text_columns},
            keep_default_na=False,
            na_values=na_values,
            compression="gzip" if data[:2] == GZIP_MAGIC else None,
            low_memory=False,
        )[columns]
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{label}: cannot read as CSV: {exc}") from None


def _read_parquet(data: bytes, label: str, columns: list[str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data), columns=columns)
    except Exception as exc:
        raise InputError(f"{label}: cannot read as Parquet: {exc}") from None
    return table.to_pandas()[columns]


def _apply_filters(frame: pd.DataFrame, filters: Sequence[RowFilter], label: str) -> pd.DataFrame:
    trail: list[str] = []
    for row_filter in filters:
        before = len(frame)
        keep = row_filter.mask(frame, source=label, row_numbers=frame.index.to_numpy())
        frame = frame[keep]
        trail.append(f"'{row_filter}' removed {before - len(frame)} of {before}")
        if frame.empty:
            raise InputError(f"{label}: no rows left after the filters ({'; '.join(trail)})")
    return frame


def _row_list(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:MAX_ROWS_LISTED])
    more = f" and {len(rows) - MAX_ROWS_LISTED} more" if len(rows) > MAX_ROWS_LISTED else ""
    return f"{shown}{more}"


def _labels(col: pd.Series, label: str, column: str) -> pd.Series:
    """The values of a key column as exact string labels; nulls and empty labels are errors."""
    if pd.api.types.is_float_dtype(col.dtype):
        values = col.to_numpy(dtype="float64", na_value=np.nan)
        finite = np.isfinite(values)
        if finite.any() and np.all(values[finite] == np.round(values[finite])):
            # Integer-valued floats (an int column with missing values): "17850", not "17850.0".
            text = pd.Series([str(int(v)) if ok else None for v, ok in zip(values, finite)], index=col.index)
        else:
            text = pd.Series([repr(float(v)) if ok else None for v, ok in zip(values, finite)], index=col.index)
        strings = text.astype("string")
    elif pd.api.types.is_string_dtype(col.dtype) and not pd.api.types.is_object_dtype(col.dtype):
        strings = col.astype("string")
    else:
        strings = col.map(lambda v: v if v is None or isinstance(v, str) or pd.isna(v) else str(v)).astype("string")
    bad = strings.isna() | (strings == "")
    bad_mask = bad.fillna(True).to_numpy(dtype=bool)
    if bad_mask.any():
        rows = col.index.to_numpy()[bad_mask]
        raise InputError(
            f"{label}: column {column!r} has {len(rows)} empty or null values, in data rows {_row_list(rows)}"
            " (counting from 1 after the header); drop them with a filter such as "
            f"'{column} notnull' or fix the file"
        )
    return strings.astype(str)


def _parse_time(col: pd.Series, label: str, column: str) -> pd.Series:
    nulls = col.isna().to_numpy()
    if nulls.any():
        rows = col.index.to_numpy()[nulls]
        raise InputError(f"{label}: time column {column!r} has {len(rows)} null values, in data rows {_row_list(rows)}")
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        return col
    text = col.astype(str)
    try:
        return pd.to_datetime(text)
    except (ValueError, TypeError, OverflowError):
        pass
    parsed = pd.to_datetime(text, format="mixed", errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        rows = col.index.to_numpy()[bad]
        raise InputError(
            f"{label}: time column {column!r} has {len(rows)} values that are not times, "
            f"first {text.iloc[int(np.flatnonzero(bad)[0])]!r} in data row {int(rows[0])}"
            f" (rows {_row_list(rows)})"
        )
    return parsed


# --------------------------------------------------------------------------- baskets


def to_baskets(long_df: pd.DataFrame) -> list[list[str]]:
    """One list of items per transaction, items deduplicated and sorted, transactions sorted by label.

    The order depends only on the set of (transaction, item) pairs, not on the row order.
    """
    if long_df.empty:
        return []
    pairs = long_df[["transaction", "item"]].astype(str).drop_duplicates()
    pairs = pairs.sort_values(["transaction", "item"], kind="stable")
    transactions = pairs["transaction"].to_numpy()
    items = pairs["item"].tolist()
    starts = np.flatnonzero(np.r_[True, transactions[1:] != transactions[:-1]])
    ends = np.r_[starts[1:], len(items)]
    return [items[s:e] for s, e in zip(starts.tolist(), ends.tolist())]


def group_baskets(long_df: pd.DataFrame) -> dict[str, list[list[str]]]:
    """Baskets per group (groups sorted by name); the whole table is group ``all`` without a group column."""
    if "group" not in long_df.columns:
        return {"all": to_baskets(long_df)}
    return {str(g): to_baskets(part) for g, part in long_df.groupby("group", sort=True)}


def _basket(items: Iterable[str]) -> list[str]:
    return sorted(set(items))


def read_basket(source: Source, delimiter: str = ",", *, name: str | None = None) -> list[list[str]]:
    """One transaction per line, items separated by ``delimiter`` (plain or gzipped).

    Items are taken exactly as split (only the line terminator is dropped: the groceries item
    ``"cream cheese "`` keeps its trailing space). A blank line is an empty transaction; an empty
    item between two delimiters is an error naming the line.
    """
    label = source_name(source, name)
    if not delimiter:
        raise InputError(f"{label}: the basket delimiter must not be empty")
    baskets: list[list[str]] = []
    for number, line in enumerate(text_lines(source, label), start=1):
        if line == "":
            baskets.append([])
            continue
        items = line.split(delimiter)
        if "" in items:
            raise InputError(
                f"{label}: line {number} has an empty item (two delimiters {delimiter!r} in a row, "
                f"or one at the start or end): {line[:80]!r}"
            )
        baskets.append(_basket(items))
    if not baskets:
        raise InputError(f"{label}: no transactions (the file is empty)")
    return baskets


def read_fimi(source: Source, *, name: str | None = None) -> list[list[str]]:
    """FIMI ``.dat`` (plain or gzipped): one transaction per line, items separated by whitespace.

    Trailing spaces and a missing final newline are accepted; a blank line is an empty transaction.
    """
    label = source_name(source, name)
    baskets = [_basket(line.split()) for line in text_lines(source, label)]
    if not baskets:
        raise InputError(f"{label}: no transactions (the file is empty)")
    return baskets
