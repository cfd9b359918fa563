"""The local stack behind ``make demo`` and ``make dev``: an embedded S3 endpoint, a Dagster home, ``dagster dev``.

Every process is started in its own session with SIGINT and SIGTERM at their defaults, so that
it can be stopped as a whole (its process group) with SIGTERM, whatever the caller's own signal
dispositions are: a process started with ``&`` from a script inherits an ignored SIGINT, which
Dagster then copies to SIGTERM, and such a ``dagster dev`` can no longer be stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTANCE_YAML = REPO_ROOT / "dagster.yaml"
DEFINITIONS_MODULE = "fpgrowth_dagster.definitions"
DEFAULT_RUN_COORDINATOR = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}

# Dummy credentials: the embedded endpoint accepts anything, and real ones must never leak into it.
DEMO_REGION = "us-east-1"
DEMO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
AWS_VARS_TO_CLEAR = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_SECURITY_TOKEN")


class StackError(RuntimeError):
    """A process of the local stack did not start or answer; the message says which and shows its log."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def aws_env(endpoint_url: str) -> dict[str, str]:
    """The standard AWS environment that points boto3 (and every child process) at ``endpoint_url``."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": DEMO_REGION,
        "AWS_DEFAULT_REGION": DEMO_REGION,
        **DEMO_CREDENTIALS,
    }


def child_env(updates: Mapping[str, str], *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``updates``, minus AWS settings that would override them."""
    env = dict(os.environ if base is None else base)
    if "AWS_ENDPOINT_URL" in updates:
        for name in AWS_VARS_TO_CLEAR:
            env.pop(name, None)
    env.update(updates)
    return env


def reset_signals() -> None:
    """Runs in the child before exec: default SIGINT/SIGTERM, whatever the parent ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_process(
    argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``argv`` in its own session (its own process group), signals reset, output to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed in stop_process
    try:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=str(cwd) if cwd else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=reset_signals,
        )
    except BaseException:
        log.close()
        raise
    proc._fpgrowth_log = log  # type: ignore[attr-defined]
    proc._fpgrowth_log_path = log_path  # type: ignore[attr-defined]
    return proc


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> int | None:
    """SIGTERM the process group of ``proc`` (it and everything it started), then SIGKILL after ``timeout``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    # Children of the group (code servers, run workers) may outlive the leader: make sure they go too.
    deadline = time.monotonic() + timeout
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    log = getattr(proc, "_fpgrowth_log", None)
    if log is not None:
        log.close()
    return proc.returncode


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def log_tail(proc: subprocess.Popen, lines: int = 30) -> str:
    """The last lines a process started by :func:`start_process` wrote, for error messages."""
    path = getattr(proc, "_fpgrowth_log_path", None)
    if path is None or not Path(path).exists():
        return "(no log)"
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def wait_http(url: str, *, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    """Wait until ``url`` answers (any HTTP status); fail early, with the log, if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} before answering {url}:\n{log_tail(proc)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise StackError(f"{what} did not answer {url} within {timeout:.0f} s:\n{log_tail(proc)}") from None
            time.sleep(0.2)


def start_moto(log_path: Path, *, attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """moto's standalone server on a free loopback port, in its own session; returns (process, URL)."""
    last_error: Exception | None = None
    for _ in range(attempts):
        port = free_port()
        proc = start_process(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=child_env({}),
            log_path=log_path,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{url}/moto-api/", proc=proc, what="moto server", timeout=60)
            return proc, url
        except StackError as exc:  # e.g. the port was taken between choosing and binding it
            last_error = exc
            stop_process(proc)
    raise StackError(f"could not start the moto server: {last_error}")


def prepare_dagster_home(home: Path, *, coordinator: str = "queued", source: Path = INSTANCE_YAML) -> Path:
    """Write ``home/dagster.yaml`` from the project's dagster.yaml.

    ``coordinator="default"`` swaps in Dagster's DefaultRunCoordinator so that a run launched with
    ``dagster job launch`` starts at once without a daemon; ``"queued"`` keeps the run queue (a
    daemon, e.g. the one ``dagster dev`` starts, dequeues the runs).
    """
    if coordinator not in ("queued", "default"):
        raise ValueError(f"coordinator must be 'queued' or 'default', got {coordinator!r}")
    if not source.is_file():
        raise StackError(f"{source}: the project's instance file is missing (run from a checkout of the repository)")
    home.mkdir(parents=True, exist_ok=True)
    text = source.read_text()
    if coordinator == "default":
        settings = yaml.safe_load(text) or {}
        settings["run_coordinator"] = DEFAULT_RUN_COORDINATOR
        header = (
            f"# Written from {source.name} with the DefaultRunCoordinator: a launched run starts at once,\n"
            "# without a daemon (the run queue settings below are then not used).\n"
        )
        text = header + yaml.safe_dump(settings, sort_keys=False)
    (home / "dagster.yaml").write_text(text)
    return home


class GraphQLError(RuntimeError):
    """The webserver answered a GraphQL request with errors."""


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 60.0) -> dict:
    """POST one GraphQL request to the Dagster webserver at ``url`` (e.g. http://127.0.0.1:3000); returns ``data``."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise GraphQLError(json.dumps(payload["errors"])[:2000])
    return payload["data"]


def start_dagster_dev(
    *, env: Mapping[str, str], log_path: Path, cwd: Path, port: int | None = None, timeout: float = 180.0
) -> tuple[subprocess.Popen, str]:
    """``dagster dev`` (webserver, daemon, code server) for the project's Definitions; returns (process, URL).

    ``env`` must hold DAGSTER_HOME. Stop it with :func:`stop_process` (SIGTERM to its group).
    """
    port = port or free_port()
    dagster = Path(sys.executable).with_name("dagster")
    argv = [str(dagster) if dagster.exists() else "dagster", "dev", "-m", DEFINITIONS_MODULE,
            "-h", "127.0.0.1", "-p", str(port)]
    proc = start_process(argv, env=env, log_path=log_path, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/server_info", proc=proc, what="dagster dev", timeout=timeout)
        _wait_code_location_loaded(url, proc, timeout)
    except BaseException:
        stop_process(proc)
        raise
    return proc, url


def _wait_code_location_loaded(url: str, proc: subprocess.Popen, timeout: float) -> None:
    query = """
    { workspaceOrError { __typename ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise StackError(f"dagster dev exited with code {proc.returncode}:\n{log_tail(proc)}")
        try:
            entries = graphql(url, query)["workspaceOrError"].get("locationEntries", [])
        except (OSError, GraphQLError):
            entries = []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [e["locationOrLoadError"] for e in entries
                      if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
            if errors:
                raise StackError(f"the code location failed to load: {errors[0].get('message')}")
            return
        if time.monotonic() > deadline:
            raise StackError(f"the code location did not load within {timeout:.0f} s:\n{log_tail(proc)}")
        time.sleep(0.5)
