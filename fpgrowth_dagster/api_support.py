"""Where :mod:`fpgrowth_dagster.api` sends runs: finding the instance, its webserver and daemon; checks; GraphQL.

Every failure to find what a launch needs raises :class:`LaunchError` with the list of what to set
or start, so that a notebook user reads one message instead of a traceback from deep inside Dagster.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_NAME = "all_groups_job"
WEBSERVER_URL_ENV = "FPGROWTH_WEBSERVER_URL"
MODES = ("auto", "webserver", "queue", "local")

NEEDS = """To launch runs from Python, fpgrowth_dagster.api needs:
  - a Dagster instance: DAGSTER_HOME set to an existing directory (its dagster.yaml may be a copy of the
    repository's dagster.yaml; `make dev` uses .dagster_home), or a running `dagster dev` given as
    webserver_url=... or $FPGROWTH_WEBSERVER_URL;
  - the code location: the fpgrowth_dagster package importable by this Python, and the project config
    in $FPGROWTH_CONFIG (default: ./fpgrowth.yaml, else the packaged demo config);
  - S3: the standard AWS environment (AWS_ENDPOINT_URL for a local endpoint such as the one
    `make dev` prints, AWS_REGION, credentials) reaching the config's buckets."""


class LaunchError(RuntimeError):
    """A run cannot be launched: the message says what is missing and how to provide it."""


@dataclass
class Target:
    """Where runs go: ``webserver`` (GraphQL), ``queue`` (a daemon's run queue) or ``local`` (a detached runner)."""

    mode: str
    dagster_home: Path | None = None
    webserver_url: str | None = None
    config: Any = None  # ProjectConfig, loaded in the queue and local modes


# --------------------------------------------------------------------------- finding services


def _cmd_value(cmdline: Sequence[str], names: Sequence[str], default: str) -> str:
    for index, arg in enumerate(cmdline):
        for name in names:
            if arg == name and index + 1 < len(cmdline):
                return cmdline[index + 1]
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return default


def _same_home(process: Any, home: Path) -> bool:
    try:
        value = process.environ().get("DAGSTER_HOME")
    except Exception:  # noqa: BLE001 - processes of other users, or gone
        return False
    return bool(value) and Path(value).resolve() == home.resolve()


def find_services(home: Path) -> dict[str, Any]:
    """The webserver URL and whether a daemon runs, among this machine's processes serving ``home``."""
    import psutil

    found: dict[str, Any] = {"webserver_url": None, "daemon": False}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info.get("cmdline") or []
        text = " ".join(cmdline)
        is_webserver = "dagster_webserver" in text or "dagster-webserver" in text
        is_daemon = "dagster._daemon" in text or "dagster-daemon" in text
        if not (is_webserver or is_daemon) or not _same_home(process, home):
            continue
        if is_daemon and "run" in cmdline:
            found["daemon"] = True
        if is_webserver and found["webserver_url"] is None:
            host = _cmd_value(cmdline, ("--host", "-h"), "127.0.0.1")
            port = _cmd_value(cmdline, ("--port", "-p"), "3000")
            prefix = _cmd_value(cmdline, ("--path-prefix", "-l"), "").rstrip("/")
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            url = f"http://{host}:{port}{prefix}"
            if webserver_answers(url):
                found["webserver_url"] = url
    return found


def webserver_answers(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/server_info", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _queued_coordinator(home: Path) -> bool:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        return type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


def resolve_target(mode: str = "auto", webserver_url: str | None = None,
                   config_path: str | Path | None = None) -> Target:
    """Decide where runs go (see :mod:`fpgrowth_dagster.api`); LaunchError naming what is missing."""
    if mode not in (*MODES, "instance"):
        raise LaunchError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    url = (webserver_url or os.environ.get(WEBSERVER_URL_ENV) or "").rstrip("/") or None
    home_text = os.environ.get("DAGSTER_HOME")
    home = Path(home_text).expanduser() if home_text else None
    if url and mode in ("auto", "webserver", "instance"):
        if not webserver_answers(url):
            raise LaunchError(f"no Dagster webserver answers at {url} (from "
                              f"{'webserver_url' if webserver_url else '$' + WEBSERVER_URL_ENV}).\n{NEEDS}")
        return Target("webserver", dagster_home=home, webserver_url=url)
    if home is None or not home.is_dir():
        problem = "DAGSTER_HOME is not set" if home is None else f"DAGSTER_HOME={home} is not a directory"
        raise LaunchError(f"{problem}, and no webserver was given.\n{NEEDS}")
    if mode == "instance":
        return Target("instance", dagster_home=home)
    services = find_services(home) if mode in ("auto", "webserver", "queue") else {"webserver_url": None,
                                                                                   "daemon": False}
    if mode == "webserver" or (mode == "auto" and services["webserver_url"]):
        if not services["webserver_url"]:
            raise LaunchError(f"mode='webserver' but no dagster dev / dagster-webserver with DAGSTER_HOME={home} "
                              f"is running on this machine; pass webserver_url=...\n{NEEDS}")
        return Target("webserver", dagster_home=home, webserver_url=services["webserver_url"])
    if mode == "queue" and not services["daemon"]:
        raise LaunchError(f"mode='queue' but no dagster-daemon with DAGSTER_HOME={home} is running; queued runs "
                          "would never start. Start `dagster dev` or `dagster-daemon run`, or use mode='local'.")
    chosen = mode
    if mode == "auto":
        chosen = "queue" if services["daemon"] and _queued_coordinator(home) else "local"
    return Target(chosen, dagster_home=home, config=_load_config(config_path))


def _load_config(config_path: str | Path | None) -> Any:
    from fpgrowth_dagster.config import ConfigError, load_project_config

    try:
        return load_project_config(config_path)
    except ConfigError as exc:
        raise LaunchError(f"the project config is not usable: {exc}\n{NEEDS}") from None


# --------------------------------------------------------------------------- checks


def plan_selection(target: Target, partition: str, groups: Sequence[str] | None) -> list[list[str]] | None:
    """Asset key paths of a run limited to ``groups`` (None: the whole job); checks groups and partition."""
    if isinstance(groups, str):
        groups = [groups]
    config = target.config
    if config is not None:
        from fpgrowth_dagster.partitions import build_partitions_def

        partitions_def = build_partitions_def(config.partitions)
        if not partitions_def.has_partition_key(partition):
            keys = partitions_def.get_partition_keys()
            known = f"{keys[0]} .. {keys[-1]}" if len(keys) > 1 else ", ".join(keys) or "none yet"
            raise LaunchError(f"{config.path}: unknown partition {partition!r} (partitions: {known})")
        if groups:
            unknown = [g for g in groups if g not in {c.name for c in config.groups}]
            if unknown:
                raise LaunchError(f"{config.path}: unknown group(s) {', '.join(map(repr, unknown))} "
                                  f"(groups: {', '.join(g.name for g in config.groups)})")
    if not groups:
        return None
    return [["transactions"], *(["fpgrowth", g] for g in dict.fromkeys(groups)), ["group_comparison"]]


def check_s3_reachable(config: Any, timeout: float = 5.0) -> None:
    """Fail early, naming the endpoint and bucket, when the runs could not reach the config's S3 buckets."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    client = boto3.client("s3", region_name=os.environ.get("AWS_REGION") or None,
                          config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}))
    endpoint = client.meta.endpoint_url
    env = os.environ.get("AWS_ENDPOINT_URL")
    where = f"{endpoint} (AWS_ENDPOINT_URL={env})" if env else f"{endpoint} (AWS_ENDPOINT_URL is not set)"
    bucket = config.output.bucket
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise LaunchError(f"no AWS credentials for S3 at {where}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                          f"AWS_PROFILE, or run where an instance role provides them.\n{NEEDS}") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise LaunchError(f"{config.path}: output bucket {bucket!r} does not exist at {where}; is "
                              f"AWS_ENDPOINT_URL the endpoint that holds the data?\n{NEEDS}") from None
        raise LaunchError(f"cannot use S3 bucket {bucket!r} at {where}: {code}: {exc}\n{NEEDS}") from None
    except BotoCoreError as exc:
        raise LaunchError(f"cannot reach S3 at {where}: {exc}\n{NEEDS}") from None


# --------------------------------------------------------------------------- GraphQL

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name locationOrLoadError { __typename
        ... on RepositoryLocation { repositories { name jobs { name } } }
        ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""
LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""
TERMINATE_RUN = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunSuccess { run { status } }
    ... on TerminateRunFailure { message run { status } }
    ... on PythonError { message }
    ... on Error { message }
  }
}
"""


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    from fpgrowth_dagster.stack import GraphQLError, graphql

    try:
        return graphql(url, query, variables or {}, timeout=120)
    except (OSError, GraphQLError) as exc:
        raise LaunchError(f"the Dagster webserver at {url} did not take the request: {exc}") from None


def job_location(url: str) -> tuple[str, str]:
    """(code location, repository) of the webserver's workspace that has ``all_groups_job``."""
    data = _graphql(url, WORKSPACE_QUERY)["workspaceOrError"]
    problems = []
    for entry in data.get("locationEntries") or []:
        location = entry.get("locationOrLoadError") or {}
        if location.get("__typename") == "PythonError":
            problems.append(f"{entry['name']}: {location.get('message', '').strip().splitlines()[0:1]}")
            continue
        for repo in location.get("repositories") or []:
            if any(job["name"] == JOB_NAME for job in repo.get("jobs") or []):
                return entry["name"], repo["name"]
    detail = f" (load errors: {'; '.join(problems)})" if problems else ""
    raise LaunchError(f"the webserver at {url} has no code location with {JOB_NAME}{detail}; start it with "
                      "`dagster dev -m fpgrowth_dagster.definitions` (or `make dev`).")


def launch_graphql(target: Target, *, run_config: dict[str, Any], tags: dict[str, str],
                   selection: list[list[str]] | None) -> str:
    """Launch ``all_groups_job`` through the webserver (as the UI's Launch button does); returns the run id."""
    url = target.webserver_url
    location, repository = job_location(url)
    selector: dict[str, Any] = {"repositoryLocationName": location, "repositoryName": repository,
                                "jobName": JOB_NAME}
    if selection:
        selector["assetSelection"] = [{"path": path} for path in selection]
    params = {"selector": selector, "runConfigData": run_config,
              "executionMetadata": {"tags": [{"key": k, "value": str(v)} for k, v in tags.items()]}}
    result = _graphql(url, LAUNCH_RUN, {"params": params})["launchRun"]
    if result["__typename"] == "LaunchRunSuccess":
        return result["run"]["runId"]
    errors = [e["message"] for e in result.get("errors") or []] or [result.get("message", "")]
    raise LaunchError(f"the webserver at {url} refused the run ({result['__typename']}): {'; '.join(errors)}")


def terminate_graphql(target: Target, run_id: str) -> str:
    result = _graphql(target.webserver_url, TERMINATE_RUN, {"runId": run_id})["terminateRun"]
    if result["__typename"] in ("TerminateRunSuccess", "TerminateRunFailure"):
        return result["run"]["status"]
    raise LaunchError(f"cannot terminate run {run_id} at {target.webserver_url}: {result.get('message')}")

