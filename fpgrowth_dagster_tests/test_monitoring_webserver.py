"""A run terminated through the webserver's GraphQL ``terminateRun`` under a real ``dagster dev``.

The run (launched with ``dagster job launch``, dequeued by the daemon of ``dagster dev``) ends
CANCELED and the group step that was mining leaves a termination record saying it was a user
termination. While it runs, ``fpgrowth-dagster status`` finds every Dagster process by role.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from fpgrowth_dagster.config import load_project_config
from fpgrowth_dagster.monitoring.processes import registered_steps
from fpgrowth_dagster.s3io import ResultLayout, list_keys
from fpgrowth_dagster.stack import (
    REPO_ROOT,
    child_env,
    graphql,
    log_tail,
    prepare_dagster_home,
    start_dagster_dev,
    stop_process,
)
from fpgrowth_dagster_tests.dagster_helpers import BUCKET, make_config_data, upload_online_retail, write_config
from fpgrowth_dagster_tests.test_monitoring_dagster import PARTITION, growing_group, wait_until_mining

TERMINATE_RUN = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunSuccess { run { runId status } }
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""
RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }
"""


@pytest.mark.slow
def test_terminate_run_through_graphql_is_recorded_as_user_termination(
    aws_env: str, dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterInstance

    client = boto3.client("s3")
    upload_online_retail(client)
    config_path = write_config(
        tmp_path / "fpgrowth.yaml",
        make_config_data(
            groups=[
                growing_group("france_rules", 16000),
                {"name": "germany", "where": {"Country": "Germany"}},
            ]
        ),
    )
    diagnostics = tmp_path / "diagnostics.jsonl"
    state = tmp_path / "state"
    monkeypatch.setenv("FPGROWTH_STATE_DIR", str(state))  # where this test reads the step registrations
    env = child_env(
        {
            "DAGSTER_HOME": str(dagster_home),
            "FPGROWTH_CONFIG": str(config_path),
            "FPGROWTH_DIAGNOSTICS_PATH": str(diagnostics),
            "FPGROWTH_STATE_DIR": str(state),
        }
    )
    prepare_dagster_home(dagster_home, coordinator="queued")
    proc, url = start_dagster_dev(env=env, log_path=tmp_path / "dagster-dev.log", cwd=REPO_ROOT)
    run_id = str(uuid.uuid4())
    try:
        dagster = Path(sys.executable).with_name("dagster")
        launched = subprocess.run(
            [
                str(dagster),
                "job",
                "launch",
                "-m",
                "fpgrowth_dagster.definitions",
                "-j",
                "all_groups_job",
                "--tags",
                json.dumps({"dagster/partition": PARTITION}),
                "--run-id",
                run_id,
            ],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
        )
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]

        deadline = time.monotonic() + 400
        step = None
        while step is None:
            step = next((s for s in registered_steps().values() if s.get("group") == "france_rules"), None)
            assert time.monotonic() < deadline, f"the slow group's step did not start:\n{log_tail(proc)}"
            time.sleep(0.2)
        wait_until_mining(int(step["pid"]))

        status = json.loads(
            subprocess.run(
                [sys.executable, "-m", "fpgrowth_dagster", "status", "--json", "--sample-seconds", "0.2"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        )
        roles = {p["role"] for p in status["dagster_processes"] if "role" in p}
        assert {"dagster dev", "daemon", "webserver", "code server", "run worker", "step process"} <= roles, roles
        (listed,) = [p for p in status["dagster_processes"] if p.get("pid") == int(step["pid"])]
        assert listed["group"] == "france_rules" and listed["run_id"] == run_id and listed["rss_bytes"] > 0

        answer = graphql(url, TERMINATE_RUN, {"runId": run_id})["terminateRun"]
        assert answer["__typename"] == "TerminateRunSuccess", answer
        deadline = time.monotonic() + 300
        while (run_status := graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]) != "CANCELED":
            assert run_status in ("CANCELING", "STARTED", "STARTING"), run_status
            assert time.monotonic() < deadline, f"run still {run_status}:\n{log_tail(proc)}"
            time.sleep(1)
    finally:
        stop_process(proc)

    records = [json.loads(line) for line in diagnostics.read_text().splitlines()]
    (record,) = [r for r in records if r["group"] == "france_rules"]
    assert record["cause"] == "user_termination"
    assert record["signal"] == "SIGINT" and record["run_id"] == run_id and record["partition"] == PARTITION
    assert record["run_status"] in ("CANCELING", "CANCELED")
    # Dagster's termination thread in the step process sends the SIGINT to its own process.
    assert record["sender"]["pid"] == int(step["pid"]) == record["pid"] and record["sender"]["relation"] == "self"
    assert record["error"].startswith("DagsterExecutionInterruptedError")
    assert record["step"]["peak_rss_bytes"] > record["step"]["rss_start_bytes"]
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(run_id)
        assert run.status.value == "CANCELED"
        logged = [r.user_message for r in instance.all_logs(run_id) if "fpgrowth termination record" in r.user_message]
    assert logged and json.loads(logged[0].split(": ", 1)[1])["cause"] == "user_termination"
    layout = ResultLayout(load_project_config(config_path).output)
    assert list_keys(client, BUCKET, layout.group_prefix("france_rules", PARTITION)) == []
    assert list_keys(client, BUCKET, layout.staging_prefix()) == []
