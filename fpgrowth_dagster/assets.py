"""The assets, all partitioned alike: ``transactions``, one ``fpgrowth/<group>`` per group, ``group_comparison``.

``transactions`` reads the raw source for its window once and writes one Parquet object per group,
so each group step loads only its own rows. Group assets are built from the project config by a
factory. Errors that a retry cannot fix (bad data, bad settings, a group whose mining fails) raise
``Failure(allow_retries=False)`` naming the group, the partition and the cause; transient S3 errors
propagate to the assets' ``RetryPolicy``.
"""

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    RetryPolicy,
    asset,
)

from fpgrowth_dagster import comparison
from fpgrowth_dagster.checks import group_check_specs, mined_group_checks, skipped_group_checks
from fpgrowth_dagster.config import GroupConfig, ProjectConfig
from fpgrowth_dagster.partitions import partition_window
from fpgrowth_dagster.resources import SharedS3Resource
from fpgrowth_dagster.s3io import (
    PARQUET_CONTENT_TYPE,
    ResultLayout,
    delete_keys,
    frame_to_parquet,
    get_bytes,
    get_bytes_if_exists,
    is_transient_s3_error,
    list_keys,
    parquet_to_frame,
    publish_atomically,
    unpublish_on_failure,
)
from fpgrowth_dagster.source import read_window, split_groups

TRANSACTIONS_KEY = AssetKey("transactions")
COMPARISON_KEY = AssetKey("group_comparison")
GROUP_KEY_PREFIX = "fpgrowth"
ASSET_GROUP = "fpgrowth"
# Transient S3 errors (throttling, 5xx, connection drops) are retried; everything else raises
# Failure(allow_retries=False), which Dagster never retries.
S3_RETRY_POLICY = RetryPolicy(max_retries=3, delay=2.0, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
TOP_RULES_SHOWN = 10


def group_asset_key(group: str) -> AssetKey:
    return AssetKey([GROUP_KEY_PREFIX, group])


@contextmanager
def clear_failures(what: str) -> Iterator[None]:
    """Turn non-transient errors into a Failure that names ``what`` and is not retried."""
    try:
        yield
    except Failure:
        raise
    except Exception as exc:
        if is_transient_s3_error(exc):
            raise
        raise Failure(description=f"{what}: {type(exc).__name__}: {exc}", allow_retries=False) from exc


# --------------------------------------------------------------------------- transactions


def build_transactions_asset(config: ProjectConfig, partitions_def: PartitionsDefinition) -> AssetsDefinition:
    layout = ResultLayout(config.output)

    @asset(
        key=TRANSACTIONS_KEY,
        partitions_def=partitions_def,
        group_name=ASSET_GROUP,
        retry_policy=S3_RETRY_POLICY,
        kinds={"s3", "parquet"},
        description=(f"Cleaned transactions of the window from {config.source.uri}, one Parquet object per group "
                     f"under s3://{layout.bucket}/{config.output.prefix}/transactions/<partition>/."),
    )
    def transactions(context: AssetExecutionContext, s3: SharedS3Resource) -> MaterializeResult:
        partition = context.partition_key
        with clear_failures(f"transactions, partition {partition}"):
            client = s3.get_client()
            window = partition_window(partitions_def, partition)
            frame, facts = read_window(client, config, window)
            per_group = split_groups(frame, config, facts)
            objects: dict[str, bytes] = {}
            manifest: dict[str, Any] = {"partition": partition, "source": facts["objects"],
                                        "window": [str(w) for w in window] if window else None, "groups": {}}
            table = ["| group | rows | transactions | items |", "|---|---:|---:|---:|"]
            for name, part in per_group.items():
                if "error" in part:
                    manifest["groups"][name] = {"error": part["error"]}
                    table.append(f"| {name} | error | | |")
                    continue
                rows = part["rows"]
                key = layout.transactions_key(partition, name)
                objects[key] = frame_to_parquet(rows)
                n_tx, n_items = int(rows["transaction"].nunique()), int(rows["item"].nunique())
                manifest["groups"][name] = {"key": key, "rows": len(rows), "transactions": n_tx, "items": n_items}
                table.append(f"| {name} | {len(rows)} | {n_tx} | {n_items} |")
            manifest_key = layout.transactions_manifest_key(partition)
            objects[manifest_key] = json.dumps(manifest, indent=1).encode()
            publish_atomically(client, layout.bucket, objects, staging_prefix=layout.staging_prefix(),
                               content_types={k: PARQUET_CONTENT_TYPE for k in objects if k != manifest_key})
        errors = {n: g["error"] for n, g in manifest["groups"].items() if "error" in g}
        for name, error in errors.items():
            context.log.error(f"group {name}, partition {partition}: {error}")
        return MaterializeResult(metadata={
            "rows_in_window": len(frame),
            "transactions": int(frame["transaction"].nunique()),
            "items": int(frame["item"].nunique()),
            "groups_written": len(objects) - 1,
            "groups_with_errors": MetadataValue.json(errors) if errors else 0,
            "source_objects": MetadataValue.json(facts["objects"]),
            "manifest": MetadataValue.path(layout.uri(manifest_key)),
            "groups": MetadataValue.md("\n".join(table)),
        })

    return transactions


# --------------------------------------------------------------------------- groups


def top_rules_markdown(rules: pd.DataFrame | None, n: int = TOP_RULES_SHOWN) -> str:
    """The ``n`` rules with the highest lift (then confidence) as a Markdown table."""
    if rules is None or rules.empty:
        return "_no rules_"
    top = rules.sort_values(["lift", "confidence"], ascending=False, kind="stable").head(n)
    lines = ["| antecedents | consequents | support | confidence | lift |", "|---|---|---:|---:|---:|"]
    for a, c, s, conf, lift in zip(top["antecedents"], top["consequents"], top["support"], top["confidence"],
                                   top["lift"]):
        lines.append(f"| {', '.join(a)} | {', '.join(c)} | {s:.4f} | {conf:.3f} | {lift:.2f} |")
    return "\n".join(lines)


def load_group_rows(client: Any, layout: ResultLayout, group: str, partition: str) -> pd.DataFrame:
    """The group's rows written by ``transactions``; Failure naming the cause when there are none."""
    manifest_key = layout.transactions_manifest_key(partition)
    manifest_bytes = get_bytes_if_exists(client, layout.bucket, manifest_key)
    if manifest_bytes is None:
        raise Failure(description=f"group {group}, partition {partition}: transactions of this partition are not "
                                  f"materialised ({layout.uri(manifest_key)} missing); materialise 'transactions' first",
                      allow_retries=False)
    manifest = json.loads(manifest_bytes)
    entry = manifest["groups"].get(group)
    if entry is None:
        raise Failure(description=f"group {group}, partition {partition}: not in the transactions of this partition "
                                  "(group added to the config later?); re-materialise 'transactions'",
                      allow_retries=False)
    if "error" in entry:
        raise Failure(description=f"group {group}, partition {partition}: {entry['error']}", allow_retries=False)
    return parquet_to_frame(get_bytes(client, layout.bucket, entry["key"]))


def build_group_asset(config: ProjectConfig, group: GroupConfig, partitions_def: PartitionsDefinition
                      ) -> AssetsDefinition:
    """The asset ``fpgrowth/<group>``: mine the group's rows of one partition and publish itemsets and rules."""
    layout = ResultLayout(config.output)
    key = group_asset_key(group.name)
    where = ", ".join(f"{c} in {list(v)}" for c, v in group.where.items()) or "all rows"

    @asset(
        key=key,
        deps=[TRANSACTIONS_KEY],
        partitions_def=partitions_def,
        group_name=ASSET_GROUP,
        retry_policy=S3_RETRY_POLICY,
        op_tags=dict(group.tags),
        tags=dict(group.tags),
        check_specs=group_check_specs(key),
        kinds={"python", "s3", "parquet"},
        description=group.description or f"FP-Growth itemsets and association rules of group {group.name} ({where}).",
    )
    def _group_asset(context: AssetExecutionContext, s3: SharedS3Resource) -> MaterializeResult:
        from fpgrowth_dagster.mining import mine_group, to_baskets
        from fpgrowth_dagster.monitoring.dagster_step import monitored_group_step

        partition = context.partition_key
        what = f"group {group.name}, partition {partition}"
        # Resource figures, termination records (SIGTERM, run termination) and the memory guard.
        with monitored_group_step(context, group=group.name, partition_key=partition, asset_key=key) as step, \
                clear_failures(what):
            client = s3.get_client()
            settings = config.settings_for(group)
            rows = load_group_rows(client, layout, group.name, partition)
            baskets = to_baskets(rows)
            with step.memory_guard(settings, baskets):
                result = mine_group(baskets, settings, group=group.name)
            summary = result.summary()
            if result.status == "failed":
                raise Failure(description=f"{what}: mining failed: {result.reason}",
                              metadata={"summary": MetadataValue.json(summary)}, allow_retries=False)
            base = {
                "status": result.status,
                "transactions": result.n_transactions,
                "items": result.n_items,
                "itemsets": result.n_itemsets,
                "rules": result.n_rules,
                "seconds": float(result.seconds),
                "peak_rss_bytes": int(result.peak_rss_bytes or 0),
                "peak_rss_mb": round((result.peak_rss_bytes or 0) / 2**20, 1),
                "settings": MetadataValue.json(_settings_dict(settings)),
            }
            if result.status == "skipped":
                # Leave no results from an earlier materialisation that no longer hold.
                delete_keys(client, layout.bucket, list_keys(client, layout.bucket,
                                                             layout.group_prefix(group.name, partition)))
                context.log.info(f"{what}: skipped: {result.reason}")
                checks = skipped_group_checks(client, layout, group.name, partition, result.reason or "")
                return MaterializeResult(metadata={**base, "reason": result.reason or "", **step.metadata()},
                                         check_results=checks)
            itemsets_key = layout.itemsets_key(group.name, partition)
            rules_key = layout.rules_key(group.name, partition)
            started = time.perf_counter()
            with unpublish_on_failure(client, layout.bucket) as published:
                published += publish_atomically(
                    client, layout.bucket,
                    {itemsets_key: frame_to_parquet(result.itemsets, ["itemset"]),
                     rules_key: frame_to_parquet(result.rules, ["antecedents", "consequents"])},
                    staging_prefix=layout.staging_prefix(),
                    content_types={itemsets_key: PARQUET_CONTENT_TYPE, rules_key: PARQUET_CONTENT_TYPE},
                )
                write_seconds = time.perf_counter() - started
                checks = mined_group_checks(client, layout, group.name, partition, n_itemsets=result.n_itemsets,
                                            n_rules=result.n_rules, settings=settings)
        context.log.info(f"{what}: {result.n_transactions} transactions, {result.n_itemsets} itemsets, "
                         f"{result.n_rules} rules in {result.seconds:.2f} s")
        return MaterializeResult(
            metadata={
                **base,
                "write_seconds": round(write_seconds, 3),
                "frequent_itemsets": MetadataValue.path(layout.uri(itemsets_key)),
                "association_rules": MetadataValue.path(layout.uri(rules_key)),
                "top_rules": MetadataValue.md(top_rules_markdown(result.rules)),
                **step.metadata(),
            },
            check_results=checks,
        )

    return _group_asset


def _settings_dict(settings: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


# --------------------------------------------------------------------------- comparison


def build_comparison_asset(config: ProjectConfig, partitions_def: PartitionsDefinition) -> AssetsDefinition:
    layout = ResultLayout(config.output)

    @asset(
        key=COMPARISON_KEY,
        deps=[group_asset_key(g.name) for g in config.groups],
        partitions_def=partitions_def,
        group_name=ASSET_GROUP,
        retry_policy=S3_RETRY_POLICY,
        kinds={"s3", "parquet"},
        description="Which association rules hold in many groups and which are specific to one (table and plot).",
    )
    def group_comparison(context: AssetExecutionContext, s3: SharedS3Resource) -> MaterializeResult:
        partition = context.partition_key
        with clear_failures(f"group_comparison, partition {partition}"):
            client = s3.get_client()
            rules_by_group: dict[str, pd.DataFrame] = {}
            without: dict[str, str] = {}
            for group in config.groups:
                stored = get_bytes_if_exists(client, layout.bucket, layout.rules_key(group.name, partition))
                if stored is not None:
                    rules_by_group[group.name] = parquet_to_frame(stored)
                else:
                    without[group.name] = "skipped or not materialised"
            table = comparison.rule_prevalence(rules_by_group)
            png = comparison.prevalence_plot(table, rules_by_group)
            table_key = layout.comparison_table_key(partition)
            plot_key = layout.comparison_plot_key(partition)
            publish_atomically(client, layout.bucket,
                               {table_key: frame_to_parquet(table, ["antecedents", "consequents", "groups"]),
                                plot_key: png},
                               staging_prefix=layout.staging_prefix(),
                               content_types={table_key: PARQUET_CONTENT_TYPE, plot_key: "image/png"})
        summary = comparison.markdown_summary(table, sorted(rules_by_group), without)
        return MaterializeResult(metadata={
            "groups_compared": len(rules_by_group),
            "distinct_rules": len(table),
            "rules_in_every_group": int((table["n_groups"] == len(rules_by_group)).sum()) if len(table) else 0,
            "rules_specific_to_one_group": int((table["n_groups"] == 1).sum()) if len(table) else 0,
            "table": MetadataValue.path(layout.uri(table_key)),
            "plot_uri": MetadataValue.path(layout.uri(plot_key)),
            "plot": MetadataValue.md(comparison.png_markdown(png)),
            "summary": MetadataValue.md(summary),
        })

    return group_comparison


def build_assets(config: ProjectConfig, partitions_def: PartitionsDefinition
                 ) -> tuple[AssetsDefinition, list[AssetsDefinition], AssetsDefinition]:
    """``transactions``, the group assets in config order, ``group_comparison``."""
    groups = [build_group_asset(config, g, partitions_def) for g in config.groups]
    return (build_transactions_asset(config, partitions_def), groups,
            build_comparison_asset(config, partitions_def))
