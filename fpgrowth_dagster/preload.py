"""What the forkserver loads once, before it forks a process for each group step.

The executor's ``preload_modules`` name this module (see :mod:`fpgrowth_dagster.definitions`).
Importing it does, in the forkserver, the work every step process would otherwise repeat: import
the code location and the modules a group step uses, resolve the ``Definitions`` into its
repository and jobs (the asset graph of every group), and parse botocore's S3 and SQS models.
Nothing here opens a socket or a file that a child could share: a forked step starts warm and
safe. Measured in benchmarks/RESULTS.md: 0.37 s of overhead per group instead of 0.54 s.
"""

from __future__ import annotations

import importlib

from fpgrowth_dagster.definitions import defs
from fpgrowth_dagster.resources import warm_aws_clients

# Modules a group step imports on first use, beyond what the definitions import at load time.
STEP_MODULES = (
    "fpgrowth_dagster.mining",
    "fpgrowth_dagster.monitoring.dagster_step",
    "pyarrow.parquet",
    "psutil",
)


def warm() -> None:
    """Import, resolve and parse what a step needs; idempotent."""
    for name in STEP_MODULES:
        importlib.import_module(name)
    defs.get_repository_def().get_all_jobs()  # resolves the asset graph and every job on it
    warm_aws_clients()


warm()
