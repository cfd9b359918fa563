"""The run worker that :mod:`fpgrowth_dagster.api` starts when no ``dagster dev`` / daemon serves the instance.

``python -m fpgrowth_dagster.local_runner --run-id ID --spec JSON`` runs in its own session, detached
from the caller (a notebook kernel, a script), so that the caller's exit, crash or restart never
interrupts the run and the run's processes never live inside the caller. It does what a Dagster run
worker does: creates the run in the instance of ``$DAGSTER_HOME`` under the given id, waits for a
local run slot (at most the instance's ``max_concurrent_runs`` runs started this way at once), then
executes it with the job's multiprocess executor, whose step processes are its own children and are
all reaped before it exits. SIGTERM or SIGINT, or a terminate from the UI (run status CANCELING),
cancel the run the way Dagster cancels any run.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

JOB_NAME = "all_groups_job"
RUNNER_TAG = "fpgrowth/launcher"
SLOTS_DIR = "fpgrowth_local_slots"
SLOT_POLL_SECONDS = 1.0
CANCEL_POLL_SECONDS = 2.0


def all_groups_job_definition():  # -> JobDefinition; module level so that ``reconstructable`` can point at it
    """``all_groups_job`` of the code location (``fpgrowth_dagster.definitions``, config from $FPGROWTH_CONFIG)."""
    from fpgrowth_dagster.definitions import defs

    return defs.resolve_job_def(JOB_NAME)


def local_slot_limit(instance: Any) -> int | None:
    """The instance's ``concurrency.runs.max_concurrent_runs`` (None: no limit configured, or -1)."""
    try:
        queue = instance.get_concurrency_config().run_queue_config
    except Exception:  # noqa: BLE001 - an instance without a run queue has no limit to honour
        return None
    limit = getattr(queue, "max_concurrent_runs", None) if queue is not None else None
    return limit if isinstance(limit, int) and limit > 0 else None


@contextmanager
def run_slot(home: Path, limit: int | None, on_wait: Any = None) -> Iterator[int | None]:
    """Hold one of ``limit`` slot files under ``home`` (an exclusive ``flock``) for as long as the run lasts.

    A lock dies with its process, so a killed runner never keeps a slot.
    """
    if not limit:
        yield None
        return
    directory = home / SLOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for index in range(limit):
            handle = open(directory / f"slot-{index}.lock", "a+")  # noqa: SIM115 - closed below
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if not waited and on_wait is not None:
            on_wait(limit)
            waited = True
        time.sleep(SLOT_POLL_SECONDS)


def _watch_for_cancel(instance_ref: Any, run_id: str, stop: threading.Event) -> None:
    """Turn a CANCELING status (a terminate from the UI) into SIGINT for this process, as a run worker would."""
    from dagster import DagsterInstance, DagsterRunStatus

    with DagsterInstance.from_ref(instance_ref) as instance:
        while not stop.wait(CANCEL_POLL_SECONDS):
            run = instance.get_run_by_id(run_id)
            if run is not None and run.status == DagsterRunStatus.CANCELING:
                os.kill(os.getpid(), signal.SIGINT)
                return


def create_run(instance: Any, run_id: str, spec: dict[str, Any]) -> tuple[Any, Any]:
    """Create the run (status NOT_STARTED) exactly as ``execute_job`` would, but under ``run_id``."""
    from dagster import AssetKey, reconstructable

    recon = reconstructable(all_groups_job_definition)
    job_def = recon.get_definition()
    selection = spec.get("asset_selection")
    tags = {**job_def.tags, **spec.get("tags", {}),
            RUNNER_TAG: f"local pid {os.getpid()} on {socket.gethostname()}"}
    run = instance.create_run_for_job(
        job_def=job_def,
        run_id=run_id,
        run_config=spec.get("run_config") or {},
        tags=tags,
        asset_selection=frozenset(AssetKey(path) for path in selection) if selection else None,
        job_code_origin=recon.get_python_origin(),
    )
    return recon, run


def execute(run_id: str, spec: dict[str, Any]) -> int:
    """Create and execute the run; 0 if it succeeded."""
    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.execution.api import execute_run
    from dagster._utils.interrupts import capture_interrupts

    with capture_interrupts(), DagsterInstance.get() as instance:
        recon, run = create_run(instance, run_id, spec)
        print(f"created run {run_id} ({run.job_name}, tags {json.dumps(dict(run.tags))})", flush=True)

        def waiting(limit: int) -> None:
            message = (f"waiting for a local run slot: {limit} run(s) started from Python are in progress "
                       "(concurrency.runs.max_concurrent_runs of dagster.yaml)")
            print(message, flush=True)
            instance.report_engine_event(message, run)

        home = Path(instance.root_directory)
        with run_slot(home, local_slot_limit(instance), waiting):
            run = instance.get_run_by_id(run_id)
            if run.status == DagsterRunStatus.CANCELING:
                instance.report_run_canceled(run, message="canceled before it started")
                return 1
            stop = threading.Event()
            watcher = threading.Thread(target=_watch_for_cancel, args=(instance.get_ref(), run_id, stop),
                                       daemon=True)
            watcher.start()
            try:
                result = execute_run(recon, run, instance)
            finally:
                stop.set()
        final = instance.get_run_by_id(run_id)
        print(f"run {run_id} finished: {final.status.value}", flush=True)
        return 0 if result.success else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fpgrowth_dagster.local_runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-id", required=True, help="id of the run to create and execute")
    parser.add_argument("--spec", required=True,
                        help='JSON: {"run_config": {...}, "tags": {...}, "asset_selection": [[...], ...]}')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not os.environ.get("DAGSTER_HOME"):
        print("error: DAGSTER_HOME is not set", file=sys.stderr)
        return 2
    return execute(args.run_id, json.loads(args.spec))


if __name__ == "__main__":
    sys.exit(main())
