"""``make demo`` and ``make dev``: the whole product on one machine, with an embedded S3 endpoint.

``python -m fpgrowth_dagster.demo`` starts moto's S3 server on a free loopback port, uploads the
shipped Online Retail data to the bucket of the demo config, launches ``all_groups_job`` for the
demo window(s) with the real ``dagster job launch`` command, waits for each run, prints a summary
per group and stops everything it started (also on Ctrl-C). It exits non-zero if a run failed.

``--dev`` starts the same S3 endpoint and data plus ``dagster dev`` (webserver and daemon) and
prints what to do in the UI and from another shell, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from fpgrowth_dagster.stack import (
    REPO_ROOT,
    StackError,
    aws_env,
    child_env,
    prepare_dagster_home,
    start_dagster_dev,
    start_moto,
    stop_process,
)

JOB_NAME = "all_groups_job"
DEMO_DATA_DIR = REPO_ROOT / "data" / "online_retail"
DEV_DAGSTER_HOME = REPO_ROOT / ".dagster_home"
# The latest window of the demo data; `--partitions` runs others (2010-12-01 .. 2011-05-01).
DEFAULT_PARTITIONS = ("2011-05-01",)
BACKFILL_EXAMPLE = ("2011-01-01", "2011-05-01")
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def demo_config_path() -> Path:
    """The project config the demo runs: ``$FPGROWTH_CONFIG`` if set, else the packaged demo config."""
    from fpgrowth_dagster.config import CONFIG_ENV_VAR, DEMO_CONFIG_PATH

    return Path(os.environ[CONFIG_ENV_VAR]) if os.environ.get(CONFIG_ENV_VAR) else DEMO_CONFIG_PATH


def upload_demo_data(endpoint_url: str, config_path: Path, data_dir: Path = DEMO_DATA_DIR) -> list[str]:
    """Create the source and output buckets of the config and upload the shipped data; returns the source URIs."""
    import boto3

    from fpgrowth_dagster.config import load_project_config

    config = load_project_config(config_path)
    files = sorted(p for p in data_dir.iterdir() if p.name.endswith(DATA_SUFFIXES))
    if not files:
        raise StackError(f"{data_dir}: no data files ({', '.join(DATA_SUFFIXES)}) to upload")
    client = boto3.client("s3", **_boto_kwargs(endpoint_url))
    for bucket in dict.fromkeys([config.source.bucket, config.output.bucket]):
        client.create_bucket(Bucket=bucket)
    source = config.source
    if source.key.endswith("/") or source.key == "":
        keys = [f"{source.key}{p.name}" for p in files]
    elif len(files) == 1:
        keys = [source.key]
    else:
        raise StackError(f"{config.path}: source.uri {source.uri} names one object but {data_dir} holds {len(files)}")
    for path, key in zip(files, keys):
        client.upload_file(str(path), source.bucket, key)
    return [f"s3://{source.bucket}/{key}" for key in keys]


def _boto_kwargs(endpoint_url: str) -> dict[str, str]:
    env = aws_env(endpoint_url)
    return {"endpoint_url": endpoint_url, "region_name": env["AWS_REGION"],
            "aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}


def dagster_executable() -> str:
    candidate = Path(sys.executable).with_name("dagster")
    return str(candidate) if candidate.exists() else "dagster"


def launch_command(partition: str, run_id: str | None = None) -> list[str]:
    """The ``dagster job launch`` command line for one window (the CLI has no --partition flag: a tag does it)."""
    argv = [dagster_executable(), "job", "launch", "-m", "fpgrowth_dagster.definitions", "-j", JOB_NAME,
            "--tags", json.dumps({"dagster/partition": partition})]
    if run_id:
        argv += ["--run-id", run_id]
    return argv


def wait_for_run(run_id: str, timeout: float, poll: float = 1.0) -> str:
    """Poll the instance (DAGSTER_HOME) until the run has finished; returns its status name."""
    from dagster import DagsterInstance

    deadline = time.monotonic() + timeout
    with DagsterInstance.get() as instance:
        while True:
            run = instance.get_run_by_id(run_id)
            status = run.status.value if run else "NOT_FOUND"
            if status in FINISHED:
                return status
            if time.monotonic() > deadline:
                raise StackError(f"run {run_id} still {status} after {timeout:.0f} s")
            time.sleep(poll)


class Stack(contextlib.ExitStack):
    """Processes started by the demo, stopped in reverse order on exit (normal, error or Ctrl-C)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = workdir

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.callback(stop_process, proc)
        return proc


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so that ``finally`` blocks stop the children either way."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(args: argparse.Namespace) -> int:
    """Start S3, upload the data, launch the job per window through the CLI, print the summary; 0 if all succeeded."""
    from fpgrowth_dagster.demo_summary import print_run_summary

    config_path = demo_config_path()
    workdir = Path(tempfile.mkdtemp(prefix="fpgrowth-demo-"))
    home = Path(args.dagster_home) if args.dagster_home else workdir / "dagster_home"
    failed: list[str] = []
    completed = False
    try:
        with _terminate_as_interrupt(), Stack(workdir) as stack:
            moto_proc, endpoint = start_moto(workdir / "moto.log")
            stack.track(moto_proc)
            print(f"Embedded S3 endpoint (moto) at {endpoint}")
            uris = upload_demo_data(endpoint, config_path)
            print(f"Uploaded the demo data: {', '.join(uris)}")
            prepare_dagster_home(home, coordinator="default")
            env = child_env({**aws_env(endpoint), "DAGSTER_HOME": str(home),
                             "FPGROWTH_CONFIG": str(config_path)})
            os.environ.update(env)  # this process reads the same instance and S3 endpoint
            print(f"Dagster instance: {home} (project dagster.yaml, DefaultRunCoordinator: no daemon needed)")
            for partition in args.partitions:
                run_id = str(uuid.uuid4())
                argv = launch_command(partition, run_id)
                print(f"\n$ {' '.join(_shell_quote(a) for a in ['dagster', *argv[1:]])}")
                started = time.monotonic()
                launcher = stack.track(_start_launch(argv, env, workdir / f"launch-{partition}.log"))
                if launcher.wait(timeout=args.timeout) != 0:
                    raise StackError(f"dagster job launch exited with {launcher.returncode}; see "
                                     f"{workdir / f'launch-{partition}.log'}")
                status = wait_for_run(run_id, timeout=args.timeout)
                print_run_summary(run_id, partition, status, time.monotonic() - started, top=args.top)
                if status != "SUCCESS":
                    failed.append(partition)
                stop_process(launcher)  # its code server outlives the CLI until the run ends
        completed = True
        if failed:
            print(f"\nRun(s) failed for window(s) {', '.join(failed)}: logs in {workdir}", file=sys.stderr)
            return 1
        print("\nDone: the embedded S3 endpoint and every process the demo started are stopped.")
        print("Run `make dev` to launch the same job, backfills and schedules from the Dagster UI.")
        return 0
    except KeyboardInterrupt:
        print("\nInterrupted: stopped every process the demo started.", file=sys.stderr)
        return 130
    finally:
        if completed and not failed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif workdir.exists():
            print(f"Logs and instance kept in {workdir}", file=sys.stderr)


def _start_launch(argv: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    from fpgrowth_dagster.stack import start_process

    return start_process(argv, env=env, log_path=log_path, cwd=REPO_ROOT)


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def run_dev(args: argparse.Namespace) -> int:
    """S3 with the demo data plus ``dagster dev``, with the steps printed, until Ctrl-C."""
    config_path = demo_config_path()
    workdir = Path(tempfile.mkdtemp(prefix="fpgrowth-dev-"))
    home = Path(args.dagster_home) if args.dagster_home else DEV_DAGSTER_HOME
    try:
        with _terminate_as_interrupt(), Stack(workdir) as stack:
            moto_proc, endpoint = start_moto(workdir / "moto.log")
            stack.track(moto_proc)
            uris = upload_demo_data(endpoint, config_path)
            prepare_dagster_home(home, coordinator="queued")
            env = child_env({**aws_env(endpoint), "DAGSTER_HOME": str(home), "FPGROWTH_CONFIG": str(config_path)})
            print("Starting dagster dev (webserver, daemon, code server)...", flush=True)
            dev_proc, url = start_dagster_dev(env=env, log_path=workdir / "dagster-dev.log", cwd=REPO_ROOT,
                                              port=args.port)
            stack.track(dev_proc)
            print(dev_instructions(url, endpoint, home, config_path, uris, workdir), flush=True)
            while dev_proc.poll() is None:
                time.sleep(0.5)
            print(f"dagster dev exited with code {dev_proc.returncode}; log: {workdir / 'dagster-dev.log'}",
                  file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nStopped dagster dev and the S3 endpoint.", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0


def dev_instructions(url: str, endpoint: str, home: Path, config_path: Path, uris: Sequence[str],
                     workdir: Path) -> str:
    """What to do next, printed by ``make dev``."""
    first, last = BACKFILL_EXAMPLE
    exports = "\n".join(f"  export {k}={_shell_quote(v)}" for k, v in {
        **aws_env(endpoint), "DAGSTER_HOME": str(home), "FPGROWTH_CONFIG": str(config_path)}.items())
    return f"""
Dagster UI: {url}
Embedded S3 (moto): {endpoint}   data: {', '.join(uris)}
Instance: {home}/dagster.yaml (run queue: at most 2 runs at once, backfills 1)   logs: {workdir}

1. A backfill from the UI: Jobs > {JOB_NAME} > Materialize all / Open launchpad, or
   Assets > select all > Materialize > choose partitions (e.g. {first} to {last}) > Launch backfill.
   The run queue (Runs > Queue) starts the runs one backfill run at a time.
2. From another shell, with this environment:
{exports}
  dagster job launch -m fpgrowth_dagster.definitions -j {JOB_NAME} --tags '{{"dagster/partition": "{last}"}}'
   (the run is queued; the daemon of this `dagster dev` starts it)
3. The schedule: Automation > the schedule of {JOB_NAME} > Start; it runs the job for the latest complete window.

Results land in S3 under the demo bucket; each group's materialisation shows its URIs and top rules.
Press Ctrl-C to stop dagster dev and the S3 endpoint.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fpgrowth_dagster.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev", action="store_true", help="start dagster dev (UI and daemon) instead of one job run")
    parser.add_argument("--partitions", type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
                        default=list(DEFAULT_PARTITIONS),
                        help=f"comma-separated partition keys (windows) to run (default: {','.join(DEFAULT_PARTITIONS)})")
    parser.add_argument("--dagster-home", help="DAGSTER_HOME to use (default: a temporary one; .dagster_home for --dev)")
    parser.add_argument("--port", type=int, default=None, help="webserver port for --dev (default: a free one)")
    parser.add_argument("--top", type=int, default=5, help="top rules to show per window")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for each run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with logs and instance")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_dev(args) if args.dev else run_demo(args)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
