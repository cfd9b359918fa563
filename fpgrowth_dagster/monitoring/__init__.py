"""Resource monitoring, termination diagnostics and the memory guard of group steps.

Everything here except :mod:`fpgrowth_dagster.monitoring.dagster_step` is free of Dagster, so it
works in plain processes, the CLI and tests alike. Heavy imports (psutil) stay inside functions.
"""

from fpgrowth_dagster.monitoring.diagnostics import (
    DIAGNOSTICS_ENV,
    StepTerminated,
    TerminationWatch,
    append_record,
    diagnostics_path,
    read_records,
)
from fpgrowth_dagster.monitoring.guard import (
    MemoryBudgetExceeded,
    MemoryEstimate,
    MemoryGuard,
    check_memory_estimate,
    estimate_mining_memory,
    memory_budget_bytes,
)
from fpgrowth_dagster.monitoring.measure import StepMeasurement, measure_step
from fpgrowth_dagster.monitoring.signals import SignalSender, last_sender, native_available
from fpgrowth_dagster.monitoring.status import get_system_resource_status, recommend_max_concurrent

__all__ = [
    "DIAGNOSTICS_ENV",
    "MemoryBudgetExceeded",
    "MemoryEstimate",
    "MemoryGuard",
    "SignalSender",
    "StepMeasurement",
    "StepTerminated",
    "TerminationWatch",
    "append_record",
    "check_memory_estimate",
    "diagnostics_path",
    "estimate_mining_memory",
    "get_system_resource_status",
    "last_sender",
    "measure_step",
    "memory_budget_bytes",
    "native_available",
    "read_records",
    "recommend_max_concurrent",
]
