"""Orchestration overhead per group: ``all_groups_job`` against a plain ProcessPoolExecutor, same run.

Both sides do the same work for every group of one partition of the demo config (Online Retail):
read the group's rows written by ``transactions`` from S3 (moto's server), run the mining core
(``mine_group`` with the group's settings) and write the itemsets and rules as Parquet to S3 with the
same atomic publication. The pool is the seed's way (``execute_parallel_global_fpgrowth(num_workers=N)``:
one task per group); Dagster runs the group assets of ``all_groups_job`` under the multiprocess
executor with the same ``max_concurrent``. For each start method (spawn; forkserver
preloading only imports; forkserver preloading ``fpgrowth_dagster.preload``, the project's default,
which also resolves the definitions and parses botocore's models; the pool's forkserver preloads the
modules its task needs) and repetition:

    overhead per group = (Dagster wall - pool wall) / groups

Each measurement runs in a fresh interpreter, as a Dagster run does in its run worker: its wall time
includes starting its forkserver (or spawning), as the pool's does. Sharing one process would give
every measurement the forkserver, and the preloaded modules, of the first.

Where the Dagster time goes comes from the run's event log: per step, the step process start-up
(STEP_WORKER_STARTING -> STEP_WORKER_STARTED: process start, imports, loading the code location),
resource set-up (-> STEP_START), the step body (-> STEP_SUCCESS, with the mining seconds from the
materialisation metadata) and the run's own start and end.

    .venv/bin/python benchmarks/bench_orchestration.py [--partition 2011-03-01] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fpgrowth_dagster.stack import aws_env, prepare_dagster_home, start_moto, stop_process  # noqa: E402

DEFINITIONS_MODULE = "fpgrowth_dagster.definitions"


# --------------------------------------------------------------------------- the pool (the seed's way)


def pool_mine_group(group: str, partition: str) -> dict[str, Any]:
    """One group in a pool worker: the same reads, mining core and writes as the group asset, without Dagster."""
    import boto3

    from fpgrowth_dagster.config import load_project_config
    from fpgrowth_dagster.mining import mine_group, to_baskets
    from fpgrowth_dagster.s3io import (PARQUET_CONTENT_TYPE, ResultLayout, frame_to_parquet, get_bytes,
                                       parquet_to_frame, publish_atomically)

    global _CLIENT
    if _CLIENT is None:  # one client per worker process, as the seed did
        _CLIENT = boto3.client("s3", region_name=os.environ["AWS_REGION"])
    config = load_project_config()
    layout = ResultLayout(config.output)
    manifest = json.loads(get_bytes(_CLIENT, layout.bucket, layout.transactions_manifest_key(partition)))
    rows = parquet_to_frame(get_bytes(_CLIENT, layout.bucket, manifest["groups"][group]["key"]))
    result = mine_group(to_baskets(rows), config.settings_for(group), group=group)
    if result.status == "mined":
        base = f"bench-pool/{group}/{partition}"
        objects = {f"{base}/frequent_itemsets.parquet": frame_to_parquet(result.itemsets, ["itemset"]),
                   f"{base}/association_rules.parquet": frame_to_parquet(result.rules, ["antecedents", "consequents"])}
        publish_atomically(_CLIENT, layout.bucket, objects, staging_prefix=layout.staging_prefix(),
                           content_types={k: PARQUET_CONTENT_TYPE for k in objects})
    return {"group": group, "status": result.status, "seconds": result.seconds}


_CLIENT: Any = None
# What the pool's forkserver preloads: the modules its task needs (no Dagster).
POOL_PRELOAD = ["fpgrowth_dagster.mining", "fpgrowth_dagster.s3io", "fpgrowth_dagster.config", "pandas",
                "pyarrow.parquet", "boto3"]


def run_pool(groups: list[str], partition: str, method: str, workers: int) -> dict[str, Any]:
    method = "forkserver" if method.startswith("forkserver") else method
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(POOL_PRELOAD)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = list(pool.map(pool_mine_group, groups, [partition] * len(groups)))
    wall = time.perf_counter() - started
    return {"wall": wall, "mining_seconds": sum(r["seconds"] or 0 for r in results),
            "statuses": {r["group"]: r["status"] for r in results}}


# --------------------------------------------------------------------------- Dagster


def recon_job():
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module(DEFINITIONS_MODULE, "defs", working_directory=str(REPO_ROOT))
    return repo.get_reconstructable_job("all_groups_job")


# "forkserver-plain" preloads only imports (the code location and its libraries), as the project did
# before fpgrowth_dagster.preload: each step then resolves the definitions and parses botocore's models.
PLAIN_PRELOAD = ["fpgrowth_dagster.definitions", "dagster", "pandas", "pyarrow.parquet", "dagster_aws.s3"]


def execution_config(method: str, workers: int, preload: list[str]) -> dict[str, Any]:
    if method == "spawn":
        start: dict[str, Any] = {"spawn": {}}
    else:
        start = {"forkserver": {"preload_modules": PLAIN_PRELOAD if method == "forkserver-plain" else preload}}
    return {"execution": {"config": {"max_concurrent": workers, "start_method": start}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_dagster(instance: Any, keys: list[Any], partition: str, method: str, workers: int,
                preload: list[str]) -> dict[str, Any]:
    from dagster import execute_job

    started = time.perf_counter()
    with execute_job(recon_job(), instance=instance, run_config=execution_config(method, workers, preload),
                     tags={"dagster/partition": partition}, asset_selection=keys) as result:
        wall = time.perf_counter() - started
        if not result.success:
            raise RuntimeError(f"dagster run {result.run_id} failed ({method})")
        run_id = result.run_id
    return {"wall": wall, "run_id": run_id, **phases(instance, run_id)}


def phases(instance: Any, run_id: str) -> dict[str, Any]:
    """Per-step phases from the event log timestamps (seconds, summed over steps) and run-level gaps."""
    from dagster import DagsterEventType as T

    per_step: dict[str, dict[str, float]] = {}
    run_times: dict[str, float] = {}
    mining = 0.0
    events = 0
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        events += 1
        if event is None:
            continue
        if event.event_type in (T.RUN_START, T.RUN_SUCCESS):
            run_times[event.event_type.value] = record.timestamp
        if event.step_key:
            per_step.setdefault(event.step_key, {}).setdefault(event.event_type.value, record.timestamp)
        if event.event_type == T.ASSET_MATERIALIZATION:
            value = event.event_specific_data.materialization.metadata.get("seconds")
            mining += float(getattr(value, "value", 0) or 0)

    def span(a: T, b: T) -> float:
        return sum(s[b.value] - s[a.value] for s in per_step.values() if a.value in s and b.value in s)

    steps = len(per_step)
    first = min((s.get(T.STEP_WORKER_STARTING.value, 1e18) for s in per_step.values()), default=0)
    last = max((s.get(T.STEP_SUCCESS.value, 0) for s in per_step.values()), default=0)
    return {
        "steps": steps,
        "events": events,
        "process_start_s": span(T.STEP_WORKER_STARTING, T.STEP_WORKER_STARTED) / max(steps, 1),
        "resource_init_s": span(T.STEP_WORKER_STARTED, T.STEP_START) / max(steps, 1),
        "step_body_s": span(T.STEP_START, T.STEP_SUCCESS) / max(steps, 1),
        "mining_s": mining / max(steps, 1),
        "run_start_to_first_step_s": first - run_times.get(T.RUN_START.value, first),
        "last_step_to_run_end_s": run_times.get(T.RUN_SUCCESS.value, last) - last,
    }


# --------------------------------------------------------------------------- one measurement per process


def measure(side: str, method: str, partition: str, workers: int) -> dict[str, Any]:
    """One measurement in a fresh interpreter (as each Dagster run has its own run worker process).

    multiprocessing keeps one forkserver per process, started with the preload of its first user:
    measurements sharing a process would all run on the first one's forkserver.
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", side, "--methods", method,
               "--partition", partition, "--workers", str(workers)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{side} measurement with {method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_here(side: str, method: str, partition: str, workers: int) -> dict[str, Any]:
    from dagster import AssetKey, DagsterInstance

    from fpgrowth_dagster.config import load_project_config
    from fpgrowth_dagster.definitions import PRELOAD_MODULES

    groups = [g.name for g in load_project_config().groups]
    if side == "pool":
        return run_pool(groups, partition, method, workers)
    with DagsterInstance.get() as instance:
        return run_dagster(instance, [AssetKey(["fpgrowth", g]) for g in groups], partition, method, workers,
                           list(PRELOAD_MODULES))


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partition", default="2011-03-01")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="max_concurrent = pool workers")
    parser.add_argument("--methods", default="spawn,forkserver-plain,forkserver",
                        help="spawn; forkserver-plain (preload imports only); forkserver (the project's default)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--results", type=Path, help="update this benchmark's section of this RESULTS.md")
    parser.add_argument("--no-compute-logs", action="store_true",
                        help="instance without step stdout/stderr capture (NoOpComputeLogManager), to measure its cost")
    parser.add_argument("--from-json", type=Path, help="only report the measurements of an earlier --json file")
    parser.add_argument("--measure", choices=("pool", "dagster"), help=argparse.SUPPRESS)  # one measurement
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_here(args.measure, args.methods, args.partition, args.workers)))
        return 0
    if args.from_json:
        rows = json.loads(args.from_json.read_text())
        args.repeat = len({r["rep"] for r in rows})
        section = report(rows, args, rows[0]["groups"])
        if args.results:
            write_results(args.results, section)
        return 0

    from dagster import AssetKey, DagsterInstance, execute_job

    from fpgrowth_dagster.config import DEMO_CONFIG_PATH, load_project_config
    from fpgrowth_dagster.demo import upload_demo_data

    workdir = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    config_path = Path(os.environ.get("FPGROWTH_CONFIG") or DEMO_CONFIG_PATH)
    moto, endpoint = start_moto(workdir / "moto.log")
    try:
        home = prepare_dagster_home(workdir / "home")
        if args.no_compute_logs:
            with open(home / "dagster.yaml", "a") as f:
                f.write("\ncompute_logs:\n  module: dagster.core.storage.noop_compute_log_manager\n"
                        "  class: NoOpComputeLogManager\n")
        os.environ.update({**aws_env(endpoint), "FPGROWTH_CONFIG": str(config_path), "DAGSTER_HOME": str(home)})
        upload_demo_data(endpoint, config_path)
        config = load_project_config(config_path)
        groups = [g.name for g in config.groups]
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        rows: list[dict[str, Any]] = []
        with DagsterInstance.get() as instance:
            # The per-group data both sides read: `transactions` of the partition, once.
            with execute_job(recon_job(), instance=instance, tags={"dagster/partition": args.partition},
                             run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                             asset_selection=[AssetKey("transactions")]) as setup:
                assert setup.success, "materialising transactions failed"
            for rep in range(args.repeat):
                for method in methods:
                    pool = measure("pool", method, args.partition, args.workers)
                    dag = measure("dagster", method, args.partition, args.workers)
                    row = {"rep": rep, "method": method, "groups": len(groups), "pool_wall": pool["wall"],
                           "dagster_wall": dag["wall"], "overhead_per_group": (dag["wall"] - pool["wall"]) / len(groups),
                           "pool_mining_s": pool["mining_seconds"], "load1": os.getloadavg()[0],
                           **{f"dagster_{k}": v for k, v in dag.items()}}
                    rows.append(row)
                    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                          file=sys.stderr, flush=True)
                    if args.json:  # after every measurement, so an interrupted benchmark keeps what it measured
                        args.json.write_text(json.dumps(rows, indent=1))
        section = report(rows, args, len(groups))
        if args.results:
            write_results(args.results, section)
    finally:
        stop_process(moto)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


RESULTS_START, RESULTS_END = "<!-- bench_orchestration:start -->", "<!-- bench_orchestration:end -->"
COLUMNS = (
    ("pool wall s", "pool_wall"), ("Dagster wall s", "dagster_wall"), ("overhead per group s", "overhead_per_group"),
    ("step process start s", "dagster_process_start_s"), ("job load + resource init s", "dagster_resource_init_s"),
    ("step body s", "dagster_step_body_s"), ("of which mining s", "dagster_mining_s"),
    ("run start to 1st step s", "dagster_run_start_to_first_step_s"), ("events per step", "events_per_step"),
)


def median_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: per start method, the median of each column over the repetitions."""
    lines = ["| start method | reps | " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(COLUMNS)]
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [{**r, "events_per_step": r["dagster_events"] / max(r["dagster_steps"], 1)}
               for r in rows if r["method"] == method]
        cells = [f"{statistics.median(r[key] for r in sel):.2f}" for _, key in COLUMNS]
        lines.append(f"| {method} | {len(sel)} | " + " | ".join(cells) + " |")
    return lines


def machine() -> str:
    """CPU model, Python and the versions that matter here."""
    import platform
    from importlib.metadata import version

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    packages = ", ".join(f"{name} {version(name)}" for name in ("dagster", "dagster-aws", "boto3", "moto", "pandas"))
    return f"{model}, Python {platform.python_version()}, {packages}"


def report(rows: list[dict[str, Any]], args: argparse.Namespace, n_groups: int) -> str:
    """The Markdown section for RESULTS.md (also printed)."""
    loads = [r["load1"] for r in rows if "load1" in r]
    load = (f"1-minute load average {min(loads):.1f} to {max(loads):.1f} during the measurements"
            if loads else "load average not recorded")
    text = "\n".join([
        f"Partition {args.partition} of the demo config: {n_groups} groups (Online Retail countries), "
        f"max_concurrent = pool workers = {args.workers}, {args.repeat} repetition(s), medians; "
        f"{load}, on {os.cpu_count()} CPUs ({machine()}).",
        "",
        *median_table(rows),
        "",
        "Each measurement ran in a fresh interpreter, so the Dagster wall includes starting the run's forkserver "
        "(and the pool's its own). Per-step columns are averages over the run's steps from its event log: step "
        "process start = STEP_WORKER_STARTING -> STEP_WORKER_STARTED (fork, instance), job load + resource init "
        "(the job's definition and execution plan, resources) -> STEP_START, step body = STEP_START -> STEP_SUCCESS "
        "(S3 client, reads, mining, writes, asset check, metadata), mining = the mining core's own seconds.",
    ])
    print(text)
    return text


def write_results(path: Path, section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (between its markers), or append it."""
    block = f"{RESULTS_START}\n## Orchestration overhead (`benchmarks/bench_orchestration.py`)\n\n{section}\n{RESULTS_END}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if RESULTS_START in text and RESULTS_END in text:
        head, rest = text.split(RESULTS_START, 1)
        text = head + block + rest.split(RESULTS_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
