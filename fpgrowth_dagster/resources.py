"""S3 through dagster-aws's ``S3Resource``, with one boto3 client per process shared by every S3 call.

``S3Resource.get_client()`` builds a new boto3 client on every call (about 0.1-0.3 s each, and a new
connection pool). :class:`SharedS3Resource` keeps its fields (so endpoint, region and credentials
come from the standard AWS environment: ``AWS_ENDPOINT_URL`` (read by boto3 itself),
``AWS_REGION`` (read here: botocore only reads ``AWS_DEFAULT_REGION``), the credentials chain) but caches the client per process and per configuration. The cache is keyed
by the process id, so a client created before a fork is never reused by the child.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from dagster_aws.s3 import S3Resource

_CLIENTS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()

# The AWS environment variables a client depends on: a change (e.g. a test pointing at another
# endpoint) must give a new client, not the cached one.
_AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


class SharedS3Resource(S3Resource):
    """dagster-aws ``S3Resource`` whose ``get_client()`` returns one cached client per process."""

    def _cache_key(self) -> tuple[Any, ...]:
        fields = tuple(sorted((k, repr(v)) for k, v in self._as_config_dict().items()))
        env = tuple(os.environ.get(name) for name in _AWS_ENV)
        return (os.getpid(), fields, env)

    def _as_config_dict(self) -> dict[str, Any]:
        return {
            "region_name": self.region_name,
            "endpoint_url": self.endpoint_url,
            "max_attempts": self.max_attempts,
            "profile_name": self.profile_name,
            "use_ssl": self.use_ssl,
            "verify": self.verify,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "aws_session_token": self.aws_session_token,
            "use_unsigned_session": self.use_unsigned_session,
        }

    def get_client(self) -> Any:
        key = self._cache_key()
        client = _CLIENTS.get(key)
        if client is None:
            with _LOCK:
                client = _CLIENTS.get(key)
                if client is None:
                    pid = os.getpid()
                    for stale in [k for k in _CLIENTS if k[0] != pid]:
                        del _CLIENTS[stale]  # inherited through fork: never share a socket pool
                    client = self._new_client()
                    _CLIENTS[key] = client
        return client


    def _new_client(self) -> Any:
        from dagster_aws.s3.utils import construct_s3_client

        return construct_s3_client(
            max_attempts=self.max_attempts,
            region_name=self.region_name or default_region(),
            endpoint_url=self.endpoint_url,
            use_unsigned_session=self.use_unsigned_session,
            profile_name=self.profile_name,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
        )


def default_region() -> str | None:
    """``AWS_REGION`` when set: botocore itself only reads ``AWS_DEFAULT_REGION`` (and the profile)."""
    return os.environ.get("AWS_REGION") or None


def clients_created() -> int:
    """How many clients this process holds (for tests of the one-client rule)."""
    pid = os.getpid()
    return sum(1 for k in _CLIENTS if k[0] == pid)
