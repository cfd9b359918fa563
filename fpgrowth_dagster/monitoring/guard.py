"""Memory guard: stop a group that would exhaust memory with a clear error, before the kernel kills it.

Two checks, both free of Dagster so the mining core stays usable anywhere:

* before mining, :func:`check_memory_estimate` counts the itemsets the settings would produce
  (pyfim's pattern spectrum counts even 1e20 itemsets in milliseconds) and refuses a group
  whose estimated memory exceeds the budget;
* during mining, :class:`MemoryGuard` watches the process's resident memory from a native thread
  (it keeps sampling while pyfim's C code holds the GIL) and, once the budget is exceeded,
  interrupts the guarded (main) thread with SIGINT, which pyfim honours; the interrupt is turned
  into :class:`MemoryBudgetExceeded` naming the group and what to change.

The budget is the resident memory of the whole step process (what an OOM killer looks at).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fpgrowth_dagster.mining.errors import BudgetExceeded
from fpgrowth_dagster.monitoring.measure import current_rss
from fpgrowth_dagster.monitoring.signals import _native, install_sender_recorder, sender_recorder_installed

# Peak bytes per frequent itemset through mining and the output frame, measured on mushroom
# (53,583 to 3,755,511 itemsets of mean length 7 to 9: 378 to 561 bytes); rules come on top.
BYTES_PER_ITEMSET = 600
# Share of the available memory a step may take by default, split between running steps.
DEFAULT_BUDGET_FRACTION = 0.8
MIB = 2**20


class MemoryBudgetExceeded(BudgetExceeded):
    """A group's estimated or observed memory exceeded its budget; the message says what to change."""

    def __init__(
        self,
        message: str,
        *,
        group: str | None,
        phase: str,
        budget_bytes: int,
        observed_bytes: int | None = None,
        estimated_bytes: int | None = None,
        expected_itemsets: int | None = None,
    ) -> None:
        super().__init__(message)
        self.group = group
        self.phase = phase  # "estimate" (before mining) or "mining" (observed)
        self.budget_bytes = budget_bytes
        self.observed_bytes = observed_bytes
        self.estimated_bytes = estimated_bytes
        self.expected_itemsets = expected_itemsets

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "phase": self.phase,
            "budget_bytes": self.budget_bytes,
            "observed_bytes": self.observed_bytes,
            "estimated_bytes": self.estimated_bytes,
            "expected_itemsets": self.expected_itemsets,
            "message": str(self),
        }


def _mib(value: int | float) -> str:
    return f"{value / MIB:,.0f} MiB"


def advice(settings: Any | None, budget_bytes: int) -> str:
    """What to change, with the current values, in the order that usually helps most."""
    budget_mib = round(budget_bytes / MIB)
    if settings is not None and getattr(settings, "max_memory_mb", None) is None:
        memory = (
            f"or run the group where more memory is free (its budget is the default share of the available "
            f"memory, {budget_mib:,} MiB; max_memory_mb sets it)"
        )
    else:
        memory = f"or raise max_memory_mb (now {budget_mib})"
    if settings is None:
        return f"raise min_support or min_count, set max_len, use target 'closed' or 'maximal', {memory}"
    max_len = getattr(settings, "max_len", None)
    return (
        f"raise min_support (now {getattr(settings, 'min_support', '?')}) "
        f"or min_count (now {getattr(settings, 'min_count', '?')}), "
        f"set a small max_len (now {'unset' if max_len is None else max_len}, e.g. 3), "
        f"use target 'closed' or 'maximal' (now {getattr(settings, 'target', '?')!r}), {memory}"
    )


def _where(group: str | None, partition: str | None) -> str:
    text = f"group {group!r}" if group is not None else "this group"
    return f"{text} (partition {partition})" if partition else text


def default_memory_budget_bytes(fraction: float = DEFAULT_BUDGET_FRACTION) -> int:
    """This process's RSS plus its share of the available memory (cgroup headroom included).

    The share is ``fraction`` of the available memory divided among the group steps currently
    registered on the machine, so concurrent steps do not each plan on all of it.
    """
    from fpgrowth_dagster.monitoring.processes import registered_steps
    from fpgrowth_dagster.monitoring.status import effective_available_memory

    others = sum(1 for pid in registered_steps() if pid != os.getpid())
    return current_rss() + int(fraction * effective_available_memory() / (1 + others))


def memory_budget_bytes(settings: Any | None = None, max_memory_mb: int | None = None) -> int:
    """The budget in force: an explicit ``max_memory_mb``, else the settings' one, else the default."""
    if max_memory_mb is None and settings is not None:
        max_memory_mb = getattr(settings, "max_memory_mb", None)
    if max_memory_mb is not None:
        if int(max_memory_mb) <= 0:
            raise ValueError(f"max_memory_mb must be a positive number of MiB, got {max_memory_mb!r}")
        return int(max_memory_mb) * MIB
    return default_memory_budget_bytes()


@dataclass(frozen=True)
class MemoryEstimate:
    """How much memory mining one group would need, from the exact number of itemsets."""

    n_transactions: int
    n_items: int
    expected_itemsets: int | None
    bytes_per_itemset: int
    baseline_rss_bytes: int
    estimated_peak_bytes: int
    note: str = ""
    # Set when counting stopped early: expected_itemsets is a lower bound, the itemsets up to this length.
    counted_up_to: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def expected_itemset_count(baskets: Sequence[Sequence[str]], settings: Any,
                           limit: int | None = None) -> tuple[int, int | None]:
    """Frequent itemsets the settings give, counted without materialising them: ``(count, None)`` when
    exact, ``(count, k)`` when the itemsets up to length ``k`` already exceed ``limit``."""
    from fpgrowth_dagster.mining.engines import expected_itemset_count as count

    return count(
        baskets,
        min_support=float(settings.min_support),
        min_count=int(getattr(settings, "min_count", 1) or 1),
        max_len=getattr(settings, "max_len", None),
        target=getattr(settings, "target", "all"),
        limit=limit,
    )


def estimate_mining_memory(baskets: Sequence[Sequence[str]], settings: Any,
                           budget_bytes: int | None = None) -> MemoryEstimate:
    """Estimated peak RSS of mining ``baskets`` with ``settings`` in this process.

    With a budget, counting stops once the itemsets counted so far would not fit in it.
    """
    n_items = len({item for basket in baskets for item in basket})
    baseline = current_rss()
    if len(baskets) < int(getattr(settings, "min_transactions", 0) or 0):
        return MemoryEstimate(
            len(baskets), n_items, 0, BYTES_PER_ITEMSET, baseline, baseline, "below min_transactions: skipped"
        )
    max_itemsets = getattr(settings, "max_itemsets", None)
    limits = [int(max_itemsets)] if max_itemsets is not None else []
    if budget_bytes is not None:
        limits.append(max(0, (budget_bytes - baseline) // BYTES_PER_ITEMSET))
    expected, up_to = expected_itemset_count(baskets, settings, min(limits) if limits else None)
    if max_itemsets is not None and expected > int(max_itemsets):
        # The engine refuses before materialising anything, with its own budget error.
        return MemoryEstimate(
            len(baskets),
            n_items,
            expected,
            BYTES_PER_ITEMSET,
            baseline,
            baseline,
            "over max_itemsets: the engine refuses before mining",
            up_to,
        )
    return MemoryEstimate(
        len(baskets), n_items, expected, BYTES_PER_ITEMSET, baseline, baseline + expected * BYTES_PER_ITEMSET,
        counted_up_to=up_to,
    )


def check_memory_estimate(
    baskets: Sequence[Sequence[str]],
    settings: Any,
    budget_bytes: int,
    *,
    group: str | None = None,
    partition: str | None = None,
) -> MemoryEstimate:
    """Refuse a group whose estimated peak exceeds the budget (raises :class:`MemoryBudgetExceeded`).

    When the settings' ``max_itemsets`` already keeps the worst case inside the budget, nothing is
    counted here (the engine counts, and refuses, before it materialises anything).
    """
    max_itemsets = getattr(settings, "max_itemsets", None)
    baseline = current_rss()
    if max_itemsets is not None and baseline + int(max_itemsets) * BYTES_PER_ITEMSET <= budget_bytes:
        n_items = len({item for basket in baskets for item in basket})
        return MemoryEstimate(
            len(baskets),
            n_items,
            None,
            BYTES_PER_ITEMSET,
            baseline,
            baseline + int(max_itemsets) * BYTES_PER_ITEMSET,
            "bounded by max_itemsets: not counted",
        )
    estimate = estimate_mining_memory(baskets, settings, budget_bytes)
    if estimate.estimated_peak_bytes > budget_bytes:
        at_least = "" if estimate.counted_up_to is None else "at least "
        raise MemoryBudgetExceeded(
            f"{_where(group, partition)}: mining would need about {_mib(estimate.estimated_peak_bytes)}, over its "
            f"memory budget of {_mib(budget_bytes)}: {estimate.n_transactions:,} transactions and "
            f"{estimate.n_items:,} items give {at_least}{estimate.expected_itemsets:,} frequent itemsets. "
            f"Not mined. To fix: {advice(settings, budget_bytes)}.",
            group=group,
            phase="estimate",
            budget_bytes=budget_bytes,
            estimated_bytes=estimate.estimated_peak_bytes,
            expected_itemsets=estimate.expected_itemsets,
        )
    return estimate


class _PythonWatchdog:
    """Fallback when the native module is missing: the same job on a Python thread (blind while C holds the GIL)."""

    def __init__(self, budget: int, interval: float, target: int) -> None:
        self.state = {"tripped": False, "peak_rss": current_rss(), "trip_rss": 0, "budget": budget, "samples": 0}
        self._stop = threading.Event()
        self._budget, self._interval, self._target = budget, interval, target
        self._thread = threading.Thread(target=self._run, name="fpgrowth-memory-guard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            rss = current_rss()
            self.state["samples"] += 1
            self.state["peak_rss"] = max(self.state["peak_rss"], rss)
            if self._budget and rss > self._budget and not self.state["tripped"]:
                self.state.update(tripped=True, trip_rss=rss)
                signal.pthread_kill(self._target, signal.SIGINT)

    def status(self) -> dict[str, Any]:
        return dict(self.state)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=5)
        return dict(self.state)


class _NativeWatchdog:
    """The native watchdog thread (keeps sampling while C code holds the GIL)."""

    def __init__(self, budget: int, interval: float, target: int) -> None:
        _native.watchdog_start(budget, interval, target)

    def status(self) -> dict[str, Any]:
        return dict(_native.watchdog_status())

    def stop(self) -> dict[str, Any]:
        return dict(_native.watchdog_stop())


class MemoryGuard:
    """``with MemoryGuard(budget, group=...):`` stops the block once the process's RSS exceeds the budget.

    On the main thread, a watchdog samples RSS every ``interval`` seconds and on the first excess
    sends SIGINT to the main thread; pyfim's C code aborts on it, and the guard's own SIGINT handler
    (in place for the block, delegating every other SIGINT to the previous handler, e.g. Dagster's
    termination) raises :class:`MemoryBudgetExceeded`. The handler also stops the watchdog and puts
    the previous handler back, so the error is right even when Python runs it only after the block.
    On another thread the guard only observes, and raises after the block if the budget was exceeded.
    Nested guards are not supported.
    """

    def __init__(
        self,
        budget_bytes: int,
        *,
        group: str | None = None,
        partition: str | None = None,
        settings: Any | None = None,
        interval: float = 0.05,
    ) -> None:
        self.budget_bytes = int(budget_bytes)
        self.group, self.partition, self.settings = group, partition, settings
        self.interval = interval
        self.state: dict[str, Any] = {}
        self._watchdog: _NativeWatchdog | _PythonWatchdog | None = None
        self._main = False
        self._previous_handler: Any = None
        self._handler_installed = False
        self._recorder_on_sigint = False

    def __enter__(self) -> MemoryGuard:
        self._main = threading.current_thread() is threading.main_thread()
        if self._main:
            self._recorder_on_sigint = sender_recorder_installed(signal.SIGINT)
            self._previous_handler = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)
            self._handler_installed = True
            if self._recorder_on_sigint:
                install_sender_recorder(signal.SIGINT)
        budget = self.budget_bytes if self._main else 0
        kind = _NativeWatchdog if _native is not None else _PythonWatchdog
        self._watchdog = kind(budget, self.interval, threading.get_ident())
        return self

    @property
    def tripped(self) -> bool:
        return bool(self.state.get("tripped"))

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            watchdog, self._watchdog = self._watchdog, None
            self.state = watchdog.stop()

    def _restore_handler(self) -> None:
        if not self._handler_installed:
            return
        self._handler_installed = False
        # Also puts Python's C handler back where pyfim left its own after an abort.
        previous = self._previous_handler
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
        if self._recorder_on_sigint:
            install_sender_recorder(signal.SIGINT)

    def _error(self, cause_text: str = " while mining") -> MemoryBudgetExceeded:
        observed = int(self.state.get("trip_rss") or self.state.get("peak_rss") or 0)
        return MemoryBudgetExceeded(
            f"{_where(self.group, self.partition)}: stopped by the memory guard{cause_text}: the step process reached "
            f"{_mib(observed)} of resident memory, over its budget of {_mib(self.budget_bytes)}. "
            f"To fix: {advice(self.settings, self.budget_bytes)}.",
            group=self.group,
            phase="mining",
            budget_bytes=self.budget_bytes,
            observed_bytes=observed,
        )

    def _on_sigint(self, signum: int, frame: Any) -> None:
        watchdog = self._watchdog
        if watchdog is not None and watchdog.status().get("tripped"):
            self._stop_watchdog()
            self._restore_handler()
            raise self._error()
        if self.tripped:  # stopped already, our SIGINT arriving late
            self._restore_handler()
            raise self._error()
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        late: BaseException | None = None
        try:
            self._stop_watchdog()
            # A SIGINT the watchdog sent is run by Python at its next check: here, while our handler is in place.
            for _ in range(3):
                _noop()
        except BaseException as raised:  # noqa: BLE001 - re-raised below unless it is our own
            late = raised
        finally:
            self._restore_handler()
        if not self._main and int(self.state.get("peak_rss") or 0) > self.budget_bytes:
            self.state.update(tripped=True, trip_rss=int(self.state["peak_rss"]))
        if self.tripped:
            error = late if isinstance(late, MemoryBudgetExceeded) else self._error()
            if isinstance(exc, MemoryBudgetExceeded):
                return False  # already the right error (raised by our handler inside the block)
            raise error from (exc if exc is not None else None)
        if late is not None:
            raise late
        return False


def _noop() -> None:
    return None
