"""``all_groups_job``: every group of one partition in one run, the replacement for ``num_workers``.

The job selects ``transactions``, every group asset and ``group_comparison``; its partitions come
from the assets. How many group steps run at once is the multiprocess executor's ``max_concurrent``
and ``tag_concurrency_limits`` (configured in ``definitions.py``, changeable per launch in run config).
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetsDefinition, AssetSelection, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

ALL_GROUPS_JOB = "all_groups_job"


def build_all_groups_job(
    transactions: AssetsDefinition, groups: Sequence[AssetsDefinition], comparison: AssetsDefinition
) -> UnresolvedAssetJobDefinition:
    """One run per partition: transactions -> every group (in parallel) -> group_comparison."""
    return define_asset_job(
        name=ALL_GROUPS_JOB,
        selection=AssetSelection.assets(transactions, *groups, comparison),
        description=(
            "Mine every group of one partition: transactions, then each fpgrowth/<group> in parallel "
            "(bounded by the executor's max_concurrent and tag_concurrency_limits), then group_comparison."
        ),
        tags={"fpgrowth/job": "all_groups"},
    )
