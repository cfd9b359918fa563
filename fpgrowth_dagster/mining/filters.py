"""Row filters declared as data (column, operator, value), never as evaluated code.

Real transaction logs need cleaning before basket analysis (for UCI Online Retail: drop
cancelled invoices, whose number starts with "C", and rows with Quantity <= 0). Filters come
from config files and command lines, so they are parsed from plain text or dicts and applied
with a fixed set of vectorised comparisons.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fpgrowth_dagster.mining.errors import InputError

COMPARISON_OPS = ("==", "!=", ">", ">=", "<", "<=")
ORDER_OPS = (">", ">=", "<", "<=")
SET_OPS = ("in", "not_in")
PREFIX_OPS = ("startswith", "not_startswith")
UNARY_OPS = ("notnull",)
FILTER_OPS = COMPARISON_OPS + SET_OPS + PREFIX_OPS + UNARY_OPS


@dataclass(frozen=True)
class RowFilter:
    """Keep the rows where ``column OP value`` holds.

    ``in``/``not_in`` take a tuple of values (comma-separated when parsed from text);
    ``notnull`` takes no value. Order comparisons (``>``, ``>=``, ``<``, ``<=``) are numeric,
    or by time on a datetime column.
    """

    column: str
    op: str
    value: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise InputError(f"filter column must be a non-empty string, got {self.column!r}")
        if self.op not in FILTER_OPS:
            raise InputError(f"unknown filter operator {self.op!r} in filter on column {self.column!r}; "
                             f"known operators: {', '.join(FILTER_OPS)}")
        if self.op in UNARY_OPS:
            if self.value is not None:
                raise InputError(f"filter {self.column!r} {self.op} takes no value, got {self.value!r}")
        elif self.value is None:
            raise InputError(f"filter {self.column!r} {self.op} needs a value")
        if self.op in SET_OPS:
            values = self.value
            if isinstance(values, str):
                values = tuple(v.strip() for v in values.split(","))
            elif not isinstance(values, tuple):
                values = tuple(values)
            object.__setattr__(self, "value", values)
        if self.op in ORDER_OPS:
            _require_number_or_time(self)

    def __str__(self) -> str:
        if self.op in UNARY_OPS:
            return f"{self.column} {self.op}"
        if self.op in SET_OPS:
            return f"{self.column} {self.op} {','.join(str(v) for v in self.value)}"
        return f"{self.column} {self.op} {self.value}"

    @classmethod
    def parse(cls, text: str) -> RowFilter:
        """Parse ``"COLUMN OP VALUE"``, e.g. ``"Quantity > 0"`` or ``"InvoiceNo not_startswith C"``.

        The operator is the first whitespace-separated token that is a known operator, so column
        names may contain spaces; the value is the rest of the text, kept as written (a string;
        order comparisons convert it to a number or a time).
        """
        tokens = text.split()
        for index, token in enumerate(tokens):
            if token in FILTER_OPS and index > 0:
                column = " ".join(tokens[:index])
                rest = _rest_after(text, index)
                value: Any = rest if rest else None
                if token in ORDER_OPS and value is not None:
                    value = _as_number_if_possible(value)
                return cls(column, token, value)
        raise InputError(
            f"cannot parse filter {text!r}: expected 'COLUMN OP VALUE' with OP one of {', '.join(FILTER_OPS)}"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowFilter:
        """Build from ``{"column": ..., "op": ..., "value": ...}`` (``value`` optional for notnull)."""
        unknown = set(data) - {"column", "op", "value"}
        if unknown:
            raise InputError(f"unknown filter keys {sorted(unknown)} in {dict(data)!r}; expected column, op, value")
        missing = {"column", "op"} - set(data)
        if missing:
            raise InputError(f"filter {dict(data)!r} is missing {sorted(missing)}")
        return cls(data["column"], data["op"], data.get("value"))

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"column": self.column, "op": self.op, "value": value}

    def mask(self, frame: pd.DataFrame, *, source: str, row_numbers: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of the rows of ``frame`` that this filter keeps.

        ``row_numbers`` (1-based data rows of the file) are used to name offending rows.
        """
        if self.column not in frame.columns:
            raise InputError(
                f"{source}: filter '{self}' uses column {self.column!r}, which does not exist; "
                f"columns: {', '.join(map(str, frame.columns))}"
            )
        col = frame[self.column]
        op = self.op
        if op == "notnull":
            return col.notna().to_numpy()
        if op in PREFIX_OPS:
            starts = col.astype("string").str.startswith(str(self.value)).fillna(False).to_numpy(dtype=bool)
            return starts if op == "startswith" else ~starts
        if op in ORDER_OPS:
            left, right = self._ordered_operands(col, source, row_numbers)
            with np.errstate(invalid="ignore"):
                result = {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]
            return np.asarray(result, dtype=bool) & col.notna().to_numpy()
        if op in SET_OPS:
            values = [self._coerce_equal_value(col, v, source) for v in self.value]
            isin = col.isin(values).to_numpy(dtype=bool)
            return isin if op == "in" else ~isin
        value = self._coerce_equal_value(col, self.value, source)
        equal = (col == value).fillna(False).to_numpy(dtype=bool)
        return equal if op == "==" else ~equal

    def _ordered_operands(self, col: pd.Series, source: str, row_numbers: np.ndarray | None) -> tuple[Any, Any]:
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            try:
                right = pd.Timestamp(self.value)
            except (ValueError, TypeError) as exc:
                raise InputError(
                    f"{source}: filter '{self}' compares datetime column {self.column!r} "
                    f"with {self.value!r}, which is not a time: {exc}"
                ) from None
            if right.tzinfo is None and getattr(col.dtype, "tz", None) is not None:
                right = right.tz_localize(col.dtype.tz)
            return col.to_numpy(), right.to_datetime64() if right.tzinfo is None else right
        right = _as_number_if_possible(self.value)
        if isinstance(right, (str, pd.Timestamp)) and not pd.api.types.is_numeric_dtype(col.dtype):
            return self._time_operands(col, source, row_numbers)
        if not isinstance(right, (int, float, np.number)) or isinstance(right, bool):
            raise InputError(f"{source}: filter '{self}' needs a numeric value, got {self.value!r}")
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            return col.to_numpy(dtype="float64", na_value=np.nan), right
        numbers = pd.to_numeric(col, errors="coerce")
        bad = col.notna().to_numpy() & numbers.isna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            row = int(row_numbers[first]) if row_numbers is not None else first + 1
            raise InputError(
                f"{source}: filter '{self}' is numeric but column {self.column!r} holds the non-numeric "
                f"value {col.iloc[first]!r} (data row {row}; {int(bad.sum())} such rows)"
            )
        return numbers.to_numpy(dtype="float64", na_value=np.nan), right

    def _time_operands(self, col: pd.Series, source: str, row_numbers: np.ndarray | None) -> tuple[Any, Any]:
        """A time comparison on a text column (e.g. a CSV time column before it is parsed)."""
        right = pd.Timestamp(self.value)
        times = pd.to_datetime(col, errors="coerce", format="mixed")
        bad = col.notna().to_numpy() & times.isna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            row = int(row_numbers[first]) if row_numbers is not None else first + 1
            raise InputError(
                f"{source}: filter '{self}' compares times but column {self.column!r} holds the value "
                f"{col.iloc[first]!r}, which is not a time (data row {row}; {int(bad.sum())} such rows)"
            )
        if right.tzinfo is None and getattr(times.dtype, "tz", None) is not None:
            right = right.tz_localize(times.dtype.tz)
        return times.to_numpy(), right.to_datetime64() if right.tzinfo is None else right

    def _coerce_equal_value(self, col: pd.Series, value: Any, source: str) -> Any:
        """Compare like with like: text values against numeric or datetime columns are converted."""
        if pd.api.types.is_bool_dtype(col.dtype) and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "false"):
                return lowered == "true"
        if pd.api.types.is_numeric_dtype(col.dtype) and isinstance(value, str):
            number = _as_number_if_possible(value)
            if isinstance(number, str):
                raise InputError(
                    f"{source}: filter '{self}' compares numeric column {self.column!r} with the non-numeric value {value!r}"
                )
            return number
        if pd.api.types.is_datetime64_any_dtype(col.dtype) and isinstance(value, str):
            return pd.Timestamp(value)
        if not pd.api.types.is_numeric_dtype(col.dtype) and not isinstance(value, str):
            return str(value)
        return value


def _rest_after(text: str, token_index: int) -> str:
    """The text after the ``token_index``-th whitespace token, stripped at both ends."""
    rest = text.strip()
    for _ in range(token_index + 1):
        parts = rest.split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
    return rest.strip()


def _as_number_if_possible(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return value
    return value


def _require_number_or_time(row_filter: RowFilter) -> None:
    value = row_filter.value
    if isinstance(value, bool):
        raise InputError(f"filter '{row_filter}' needs a numeric or time value, got {value!r}")
    if isinstance(value, (int, float, np.number, pd.Timestamp)):
        return
    if isinstance(value, str):
        if not isinstance(_as_number_if_possible(value), str):
            return
        try:
            pd.Timestamp(value)
            return
        except (ValueError, TypeError):
            pass
    raise InputError(f"filter '{row_filter}' needs a numeric or time value, got {value!r}")

