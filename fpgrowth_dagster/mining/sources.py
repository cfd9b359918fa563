"""Byte sources of transaction files: paths or binary file objects, gzip and Parquet detection.

Readers accept a local path or an open binary file (e.g. an S3 object body wrapped in BytesIO,
with ``name`` given for messages); the format is known from the name's suffix or the magic bytes.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO

from fpgrowth_dagster.mining.errors import InputError

Source = str | Path | IO[bytes]

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


def source_name(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    return str(getattr(source, "name", None) or "<stream>")


def read_bytes(source: Source, label: str) -> bytes:
    """All bytes of a path or a binary file object (InputError naming the file if unreadable)."""
    if isinstance(source, (str, Path)):
        try:
            return Path(source).read_bytes()
        except FileNotFoundError:
            raise InputError(f"{label}: file not found") from None
        except IsADirectoryError:
            raise InputError(f"{label}: is a directory, not a file") from None
        except OSError as exc:
            raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None
    data = source.read()
    if isinstance(data, str):
        raise InputError(f"{label}: expected a binary file object (open it with 'rb')")
    return bytes(data)


def decompressed(data: bytes, label: str) -> bytes:
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{label}: broken gzip data: {exc}") from None
    return data


def is_parquet(data: bytes, label: str) -> bool:
    return data[:4] == PARQUET_MAGIC or label.lower().endswith(PARQUET_SUFFIXES)


def text_lines(source: Source, label: str) -> list[str]:
    """Lines of a (possibly gzipped) UTF-8 text file without their terminators (LF or CRLF)."""
    data = decompressed(read_bytes(source, label), label)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{label}: line {line} is not valid UTF-8 ({exc.reason})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file ended with a newline: there is no further line
    return [line[:-1] if line.endswith("\r") else line for line in lines]
