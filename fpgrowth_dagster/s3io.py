"""S3 input and output for the assets: where every object lives, Parquet bytes, and atomic publication.

Atomicity: S3 ``PutObject`` of the complete bytes is atomic (a reader sees the old object or the
whole new one). A step that writes several objects first uploads every one of them under a staging
key, then copies each to its final key and deletes the staging copies; if anything fails, it deletes
the staging copies and every final key it had already published in this attempt, so a failed step
leaves nothing behind. No object is ever streamed in parts.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fpgrowth_dagster.config import OutputConfig, SourceConfig

SOURCE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq", ".gz")
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
# botocore error codes that are worth a retry (throttling, server side, timeouts).
TRANSIENT_CODES = {
    "RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling", "ThrottlingException",
    "ThrottledException", "RequestThrottled", "RequestLimitExceeded", "InternalError", "ServiceUnavailable",
    "500", "502", "503", "504",
}


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def is_transient_s3_error(exc: BaseException) -> bool:
    """True for connection problems, timeouts, throttling and 5xx answers: a retry may succeed."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)):
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return str(error.get("Code")) in TRANSIENT_CODES or int(status or 0) >= 500
    return False


@dataclass(frozen=True)
class ResultLayout:
    """Keys of every object the assets write under ``s3://bucket/prefix``."""

    output: OutputConfig

    @property
    def bucket(self) -> str:
        return self.output.bucket

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.output.prefix, *parts) if p)

    def transactions_key(self, partition_key: str, group: str) -> str:
        return self._key("transactions", partition_key, f"{group}.parquet")

    def transactions_manifest_key(self, partition_key: str) -> str:
        return self._key("transactions", partition_key, "_manifest.json")

    def group_prefix(self, group: str, partition_key: str) -> str:
        return self._key("groups", group, partition_key) + "/"

    def itemsets_key(self, group: str, partition_key: str) -> str:
        return self._key("groups", group, partition_key, "frequent_itemsets.parquet")

    def rules_key(self, group: str, partition_key: str) -> str:
        return self._key("groups", group, partition_key, "association_rules.parquet")

    def comparison_table_key(self, partition_key: str) -> str:
        return self._key("group_comparison", partition_key, "rule_prevalence.parquet")

    def comparison_plot_key(self, partition_key: str) -> str:
        return self._key("group_comparison", partition_key, "rule_prevalence.png")

    def staging_prefix(self) -> str:
        return self._key("_staging") + "/"

    def uri(self, key: str) -> str:
        return s3_uri(self.bucket, key)


# --------------------------------------------------------------------------- reading


def get_bytes(client: Any, bucket: str, key: str) -> bytes:
    """The whole object."""
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _is_missing(exc: Exception) -> bool:
    """A botocore ClientError saying there is no such key (404 on HEAD, NoSuchKey on GET)."""
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey",
                                                                                            "NotFound")


def get_bytes_if_exists(client: Any, bucket: str, key: str) -> bytes | None:
    """The whole object, or None when there is no such key (one request, not HEAD then GET)."""
    try:
        return get_bytes(client, bucket, key)
    except Exception as exc:
        if _is_missing(exc):
            return None
        raise


def object_exists(client: Any, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except Exception as exc:
        if _is_missing(exc):
            return False
        raise


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix``, sorted."""
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def source_keys(client: Any, source: SourceConfig) -> list[str]:
    """The object keys the source URI names: the object itself, or every CSV/CSV.gz/Parquet object under the prefix.

    Raises FileNotFoundError naming the URI when there is nothing to read.
    """
    bucket, key = source.bucket, source.key
    if key and not key.endswith("/"):
        if not object_exists(client, bucket, key):
            raise FileNotFoundError(f"source {source.uri}: no such S3 object")
        return [key]
    keys = [k for k in list_keys(client, bucket, key) if k.lower().endswith(SOURCE_SUFFIXES)]
    if not keys:
        raise FileNotFoundError(
            f"source {source.uri}: no CSV, CSV.gz or Parquet objects under this prefix")
    return keys


def frame_to_parquet(frame: pd.DataFrame, list_columns: Sequence[str] = ()) -> bytes:
    """Parquet bytes of ``frame`` with ``list_columns`` typed ``list<string>`` (also when empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for name in frame.columns:
        if name in list_columns:
            values = [None if v is None else [str(x) for x in v] for v in frame[name]]
            arrays.append(pa.array(values, type=pa.list_(pa.string())))
        else:
            array = pa.Array.from_pandas(frame[name])
            arrays.append(array.cast(pa.string()) if pa.types.is_null(array.type) else array)
    table = pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def parquet_to_frame(data: bytes) -> pd.DataFrame:
    """Read Parquet bytes; ``list<...>`` columns come back as Python lists."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    frame = table.to_pandas()
    for name, column_type in zip(table.schema.names, table.schema.types):
        if str(column_type).startswith("list<"):
            frame[name] = [list(v) if v is not None else None for v in frame[name]]
    return frame


# --------------------------------------------------------------------------- writing


def delete_keys(client: Any, bucket: str, keys: Sequence[str]) -> None:
    """Delete ``keys`` (ignores keys that do not exist)."""
    keys = list(keys)
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        if chunk:
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})


def publish_atomically(
    client: Any,
    bucket: str,
    objects: Mapping[str, bytes],
    *,
    staging_prefix: str,
    content_types: Mapping[str, str] | None = None,
) -> list[str]:
    """Write every object of ``objects`` (final key -> bytes), all or nothing; returns the final keys.

    Each object is uploaded whole under ``staging_prefix/<unique>/``; only when every upload has
    succeeded are they copied to their final keys. On any failure the staging copies and the final
    keys already published by this call are deleted, then the error is raised.
    """
    content_types = content_types or {}
    stage = f"{staging_prefix.rstrip('/')}/{uuid.uuid4().hex}/"
    staged: dict[str, str] = {}
    published: list[str] = []
    try:
        for index, (key, data) in enumerate(objects.items()):
            staging_key = f"{stage}{index}-{key.rsplit('/', 1)[-1]}"
            extra = {"ContentType": content_types[key]} if key in content_types else {}
            client.put_object(Bucket=bucket, Key=staging_key, Body=bytes(data), **extra)
            staged[key] = staging_key
        for key, staging_key in staged.items():
            extra = {"ContentType": content_types[key], "MetadataDirective": "REPLACE"} if key in content_types else {}
            client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": staging_key}, **extra)
            published.append(key)
    except BaseException:
        _best_effort_delete(client, bucket, [*staged.values(), *published])
        raise
    _best_effort_delete(client, bucket, list(staged.values()))
    return list(objects)


@contextmanager
def unpublish_on_failure(client: Any, bucket: str) -> Iterator[list[str]]:
    """Collect the final keys a step publishes; if the step then fails (checks, a signal...), delete them.

    So a failed step leaves nothing behind even when it fails after its objects were published.
    """
    published: list[str] = []
    try:
        yield published
    except BaseException:
        _best_effort_delete(client, bucket, published)
        raise


def _best_effort_delete(client: Any, bucket: str, keys: list[str]) -> None:
    try:
        delete_keys(client, bucket, keys)
    except Exception:  # the original error matters more; leftovers are only under the staging prefix
        pass
