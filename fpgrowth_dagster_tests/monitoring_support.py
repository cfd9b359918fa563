"""Child processes for the monitoring tests: real processes that receive real signals.

Run as ``python -m fpgrowth_dagster_tests.monitoring_support SCENARIO OUT_DIR``. Each scenario
writes ``ready`` (its pid) when the parent may signal it, and ``outcome.json`` at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from fpgrowth_dagster.monitoring.diagnostics import StepTerminated, TerminationWatch
from fpgrowth_dagster.monitoring.measure import measure_step

MIB = 2**20


def _ready(out: Path) -> None:
    (out / "ready.tmp").write_text(str(os.getpid()))
    os.replace(out / "ready.tmp", out / "ready")


def _outcome(out: Path, **data: object) -> None:
    (out / "outcome.json").write_text(json.dumps(data, default=str))


def wait_for_ready(out: Path, proc: object, timeout: float = 60.0) -> int:
    """The child's pid once it is ready to be signalled."""
    deadline = time.monotonic() + timeout
    while not (out / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"child not ready (exit code {proc.poll()})")  # type: ignore[attr-defined]
        time.sleep(0.05)
    return int((out / "ready").read_text())


def _busy_until(flag: threading.Event | None, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (flag and flag.is_set()):
        sum(range(5000))
        time.sleep(0.005)


def scenario_sigterm(out: Path, *, second_signal_during_cleanup: bool = False) -> int:
    """A 'step' with background threads like Dagster's (none blocks SIGTERM) under a TerminationWatch."""
    stop_threads = threading.Event()
    for name in ("QueueFeederThread", "termination-handler"):
        threading.Thread(target=stop_threads.wait, name=name, daemon=True).start()
    path = out / "diagnostics.jsonl"
    with measure_step("slow_group", "2011-01-01", log=lambda line: None, record_history=False) as step:
        watch = TerminationWatch(
            group="slow_group",
            partition="2011-01-01",
            run_id="run-1",
            step_key="fpgrowth__slow",
            measurement=step,
            path=path,
        )
        try:
            with watch:
                _ready(out)
                try:
                    _busy_until(None, 120)
                except StepTerminated:
                    if second_signal_during_cleanup:
                        (out / "cleanup").write_text("started")
                        _busy_until(None, 3)  # the parent signals again meanwhile: recorded, not raised
                    raise
        except StepTerminated as exc:
            _outcome(
                out,
                terminated=True,
                summary=str(exc),
                records=len(watch.records),
                cleanup_finished=second_signal_during_cleanup,
            )
            return 3
    _outcome(out, terminated=False)
    return 0


def scenario_sigint(out: Path) -> int:
    """SIGINT under the watch: KeyboardInterrupt is recorded and propagates."""
    path = out / "diagnostics.jsonl"
    watch = TerminationWatch(group="g", partition=None, path=path)
    try:
        with watch:
            _ready(out)
            if os.environ.get("SELF_INTERRUPT") == "1":
                os.kill(os.getpid(), signal.SIGINT)  # what Dagster's termination thread does
            _busy_until(None, 120)
    except KeyboardInterrupt:
        _outcome(out, interrupted=True, cause=watch.records[-1]["cause"] if watch.records else None)
        return 4
    _outcome(out, interrupted=False)
    return 0


def scenario_guard_python(out: Path) -> int:
    """Python code allocating without end: the guard stops it at the budget."""
    from fpgrowth_dagster.monitoring.guard import MemoryBudgetExceeded, MemoryGuard
    from fpgrowth_dagster.monitoring.measure import current_rss

    budget = current_rss() + 200 * MIB
    hoard = []
    try:
        with MemoryGuard(budget, group="hoarder", partition="2011-01-01"):
            _ready(out)
            while True:
                hoard.append(bytearray(4 * MIB))
                sum(range(1000))
    except MemoryBudgetExceeded as exc:
        hoard.clear()
        handler_after = signal.getsignal(signal.SIGINT)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
            interrupt_after = False
        except KeyboardInterrupt:
            interrupt_after = True
        _outcome(
            out,
            error=str(exc),
            phase=exc.phase,
            observed=exc.observed_bytes,
            budget=budget,
            handler_is_default=handler_after is signal.default_int_handler,
            interrupt_after=interrupt_after,
        )
        return 5
    return 0


def scenario_guard_pyfim(out: Path, mushroom: str) -> int:
    """pyfim materialising millions of itemsets in C (holding the GIL): the native watchdog stops it."""
    from fpgrowth_dagster.mining.engines import mine_itemsets
    from fpgrowth_dagster.monitoring.guard import MemoryBudgetExceeded, MemoryGuard
    from fpgrowth_dagster.monitoring.measure import current_rss

    baskets = [line.split() for line in Path(mushroom).read_text().splitlines()]
    budget = current_rss() + 250 * MIB
    _ready(out)
    try:
        with MemoryGuard(budget, group="mushroom", partition=None):
            found = mine_itemsets(baskets, min_support=0.03)
        _outcome(out, stopped=False, itemsets=len(found))
        return 0
    except MemoryBudgetExceeded as exc:
        cause = exc.__cause__
        try:
            os.kill(os.getpid(), signal.SIGINT)  # pyfim's C handler must not be left on SIGINT
            time.sleep(1)
            interrupt_after = False
        except KeyboardInterrupt:
            interrupt_after = True
        _outcome(
            out,
            stopped=True,
            error=str(exc),
            observed=exc.observed_bytes,
            budget=budget,
            cause=f"{type(cause).__name__}: {cause}" if cause else None,
            interrupt_after=interrupt_after,
        )
        return 5


def main(argv: list[str]) -> int:
    scenario, out = argv[0], Path(argv[1])
    if scenario == "sigterm":
        return scenario_sigterm(out)
    if scenario == "sigterm_twice":
        return scenario_sigterm(out, second_signal_during_cleanup=True)
    if scenario == "sigint":
        return scenario_sigint(out)
    if scenario == "guard_python":
        return scenario_guard_python(out)
    if scenario == "guard_pyfim":
        return scenario_guard_pyfim(out, argv[2])
    raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
