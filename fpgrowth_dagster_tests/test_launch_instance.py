"""The shipped instance files: dagster.yaml (development, SQLite) and dagster.postgres.yaml (production).

The Postgres test talks to the real PostgreSQL server at 127.0.0.1:5432 (started by .ci/run): it creates
a throw-away database, builds an instance from dagster.postgres.yaml with the settings of
dagster.postgres.env, executes a real multiprocess run and reads the run and its events back with SQL.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, In, execute_job, job, op, reconstructable

REPO_ROOT = Path(__file__).resolve().parents[1]
DEV_YAML = REPO_ROOT / "dagster.yaml"
POSTGRES_YAML = REPO_ROOT / "dagster.postgres.yaml"
POSTGRES_ENV = REPO_ROOT / "dagster.postgres.env"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a shell env file (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


@op
def count_letters(context) -> int:  # noqa: ANN001 (dagster rejects string annotations here)
    context.log.info("counting letters")
    return len("frequent itemsets")


@op(ins={"letters": In(int)})
def double(letters: int) -> int:
    return 2 * letters


@job
def postgres_probe_job() -> None:
    double(count_letters())


def test_dev_instance_settings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(DEV_YAML, home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert queue.max_concurrent_runs == 2
        assert {"key": "dagster/backfill", "limit": 1} in queue.tag_concurrency_limits
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert instance.get_settings("telemetry") == {"enabled": False}
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert Path(instance.root_directory) == home


@pytest.fixture
def postgres_database() -> Iterator[dict[str, str]]:
    """A fresh database on the local server, dropped afterwards; yields the DAGSTER_PG_* settings."""
    import psycopg2

    settings = read_env_file(POSTGRES_ENV)
    admin = dict(
        host=settings["DAGSTER_PG_HOST"],
        port=int(settings["DAGSTER_PG_PORT"]),
        user=settings["DAGSTER_PG_USERNAME"],
        password=settings["DAGSTER_PG_PASSWORD"],
        dbname=settings["DAGSTER_PG_DB"],
    )
    try:
        conn = psycopg2.connect(connect_timeout=5, **admin)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"PostgreSQL from {POSTGRES_ENV.name} ({admin['host']}:{admin['port']}) is not reachable: {exc}")
    conn.autocommit = True
    name = f"fpgrowth_test_{uuid.uuid4().hex[:12]}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {**settings, "DAGSTER_PG_DB": name}
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def test_postgres_instance_stores_a_real_run(
    postgres_database: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(POSTGRES_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in postgres_database.items():
        monkeypatch.setenv(key, value)

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        # Multiprocess executor: the step processes write their events to Postgres too.
        with execute_job(reconstructable(postgres_probe_job), instance=instance) as result:
            assert result.success
            assert result.output_for_node("double") == 34
            run_id = result.run_id

    conn = psycopg2.connect(
        host=postgres_database["DAGSTER_PG_HOST"],
        port=int(postgres_database["DAGSTER_PG_PORT"]),
        user=postgres_database["DAGSTER_PG_USERNAME"],
        password=postgres_database["DAGSTER_PG_PASSWORD"],
        dbname=postgres_database["DAGSTER_PG_DB"],
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pipeline_name, status FROM runs WHERE run_id = %s", (run_id,))
            assert cur.fetchall() == [("postgres_probe_job", "SUCCESS")]
            cur.execute(
                "SELECT dagster_event_type, step_key FROM event_logs"
                " WHERE run_id = %s AND dagster_event_type IS NOT NULL",
                (run_id,),
            )
            events = cur.fetchall()
    finally:
        conn.close()
    event_types = {event_type for event_type, _ in events}
    # Run events keep their historical names in storage (PIPELINE_START for RUN_START, ...).
    expected = {DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS,
                DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    assert {event_type.value for event_type in expected} <= event_types
    succeeded = {step for event_type, step in events if event_type == DagsterEventType.STEP_SUCCESS.value}
    assert succeeded == {"count_letters", "double"}
    # Nothing went to the SQLite files Dagster would otherwise create under DAGSTER_HOME.
    assert not (home / "history").exists()
    assert not list(home.rglob("*.db"))
