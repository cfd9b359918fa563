"""The results explorer, the plots and ``fpgrowth-dagster plot``, on results that real runs wrote to moto's S3.

The module materialises two months of three demo groups once (through ``launch_partitions``, i.e. real
runs in a real instance), then compares everything the explorer returns with the Parquet objects read
directly with boto3 and pyarrow, and with mlxtend's own ``association_rules`` on the same itemsets.
"""

from __future__ import annotations

import io
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import boto3
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fpgrowth_dagster.stack import REPO_ROOT, prepare_dagster_home
from fpgrowth_dagster_tests.notebook_support import PARTITIONS, write_small_config

BUCKET = "fpgrowth-demo"
# The module materialises its results with real runs once (about a minute on an idle 2-CPU machine).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Both months of germany, france (mined) and usa (skipped) materialised by real runs."""
    from fpgrowth_dagster.api import launch_partitions
    from fpgrowth_dagster.demo import upload_demo_data
    from fpgrowth_dagster.explorer import ResultsExplorer

    tmp = tmp_path_factory.mktemp("explorer")
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    config = write_small_config(tmp / "fpgrowth.yaml")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ENDPOINT_URL": moto_server, "AWS_REGION": "us-east-1",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "DAGSTER_HOME": str(tmp / "home"),
                            "FPGROWTH_CONFIG": str(config)}.items():
            env.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "FPGROWTH_WEBSERVER_URL"):
            env.delenv(name, raising=False)
        upload_demo_data(moto_server, config)
        prepare_dagster_home(tmp / "home", coordinator="queued")
        handles = launch_partitions(list(PARTITIONS), max_concurrent=2, progress=False, timeout=900)
        assert [h.status for h in handles] == ["SUCCESS", "SUCCESS"], [h.report() for h in handles]
        yield {"explorer": ResultsExplorer.from_config(config), "config": config, "s3": boto3.client("s3"),
               "tmp": tmp, "handles": handles}


def _stored(s3, key: str) -> pd.DataFrame:
    """A Parquet object as the assets wrote it, read with pyarrow (lists as Python lists)."""
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    frame = table.to_pandas()
    for name in ("itemset", "antecedents", "consequents"):
        if name in frame:
            frame[name] = [list(v) for v in frame[name]]
    return frame


def test_available_lists_exactly_the_groups_and_months_with_objects(results: dict) -> None:
    explorer, s3 = results["explorer"], results["s3"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="results/groups/").get("Contents", [])]
    expected = sorted({tuple(k.split("/")[2:4]) for k in keys})
    table = explorer.available()
    assert list(zip(table["group"], table["partition"])) == expected
    assert expected == [(g, p) for g in ("france", "germany") for p in PARTITIONS]  # usa was skipped
    assert table["itemsets"].all() and table["rules"].all()
    assert explorer.groups() == ["germany", "france"]  # config order
    assert explorer.partitions("france") == list(PARTITIONS)
    summary = results["handles"][1].group_table().set_index("group")
    assert summary.loc["usa", "status"] == "skipped"


def test_dataframes_equal_what_the_assets_wrote(results: dict) -> None:
    explorer, s3 = results["explorer"], results["s3"]
    for group, partition in zip(explorer.available()["group"], explorer.available()["partition"]):
        stored_itemsets = _stored(s3, f"results/groups/{group}/{partition}/frequent_itemsets.parquet")
        stored_rules = _stored(s3, f"results/groups/{group}/{partition}/association_rules.parquet")
        assert len(stored_rules) > 0

        lists = explorer.itemsets(group, partition, form="lists")
        pd.testing.assert_frame_equal(lists, stored_itemsets)
        mlx = explorer.itemsets(group, partition)
        assert list(mlx.columns) == ["support", "itemsets"]
        assert list(mlx["itemsets"]) == [frozenset(i) for i in stored_itemsets["itemset"]]
        np.testing.assert_array_equal(mlx["support"].to_numpy(), stored_itemsets["support"].to_numpy())

        rules = explorer.rules(group, partition)
        assert list(rules.columns) == list(stored_rules.columns)
        assert list(rules["antecedents"]) == [frozenset(a) for a in stored_rules["antecedents"]]
        assert list(rules["consequents"]) == [frozenset(c) for c in stored_rules["consequents"]]
        pd.testing.assert_frame_equal(rules.drop(columns=["antecedents", "consequents"]),
                                      stored_rules.drop(columns=["antecedents", "consequents"]))
        pd.testing.assert_frame_equal(explorer.rules(group, partition, form="lists"), stored_rules)


def test_mlxtend_association_rules_on_the_explorer_itemsets_give_the_stored_rules(results: dict) -> None:
    from mlxtend.frequent_patterns import association_rules

    explorer = results["explorer"]
    config = explorer.config
    for group in ("germany", "france"):
        partition = PARTITIONS[-1]
        stored = explorer.itemsets(group, partition, form="lists")
        n_transactions = round(stored["count"].iloc[0] / stored["support"].iloc[0])
        settings = config.settings_for(group)
        expected = association_rules(explorer.itemsets(group, partition), num_itemsets=n_transactions,
                                     metric=settings.metric, min_threshold=settings.min_threshold)
        ours = explorer.rules(group, partition)
        key = lambda f: sorted(zip(map(sorted, f["antecedents"]), map(sorted, f["consequents"])))  # noqa: E731
        assert key(ours) == key(expected)
        merged = ours.assign(a=[tuple(sorted(x)) for x in ours["antecedents"]],
                             c=[tuple(sorted(x)) for x in ours["consequents"]]).merge(
            expected.assign(a=[tuple(sorted(x)) for x in expected["antecedents"]],
                            c=[tuple(sorted(x)) for x in expected["consequents"]]), on=["a", "c"])
        for metric in ("support", "confidence", "lift", "leverage"):
            np.testing.assert_allclose(merged[f"{metric}_x"], merged[f"{metric}_y"], rtol=1e-12)


def test_filter_rules_by_item_metric_and_threshold(results: dict) -> None:
    from fpgrowth_dagster.explorer import as_lists, filter_rules

    rules = results["explorer"].rules("germany", PARTITIONS[-1])
    item = next(iter(rules["consequents"].iloc[0]))
    mentioning = filter_rules(rules, item=item)
    expected = [i for i, (a, c) in enumerate(zip(rules["antecedents"], rules["consequents"])) if item in a | c]
    assert len(mentioning) == len(expected) > 0
    strong = filter_rules(rules, metric="lift", min_value=2.0, max_value=5.0)
    assert len(strong) == int(((rules["lift"] >= 2.0) & (rules["lift"] <= 5.0)).sum())
    assert list(strong["lift"]) == sorted(strong["lift"], reverse=True)
    top = filter_rules(rules, consequent=item, metric="confidence", top=3)
    assert len(top) <= 3 and all(item in c for c in top["consequents"])
    assert top["confidence"].iloc[0] == rules[[item in c for c in rules["consequents"]]]["confidence"].max()
    with pytest.raises(ValueError, match="need a metric"):
        filter_rules(rules, min_value=1.0)
    records = as_lists(top)
    assert isinstance(records[0]["antecedents"], list)


def test_compare_rule_across_groups_and_months(results: dict) -> None:
    explorer = results["explorer"]
    rules = explorer.rules("germany", PARTITIONS[-1], form="lists")
    # A rule that germany has in May: compared over both groups and both months.
    row = rules.iloc[0]
    table = explorer.compare_rule(row["antecedents"], row["consequents"], metrics=("confidence", "lift"))
    assert list(zip(table["group"], table["partition"])) == [(g, p) for g in ("france", "germany")
                                                              for p in PARTITIONS]
    for record in table.itertuples():
        other = explorer.rules(record.group, record.partition, form="lists")
        hit = other[[a == list(row["antecedents"]) and c == list(row["consequents"])
                     for a, c in zip(other["antecedents"], other["consequents"])]]
        assert record.present == (len(hit) == 1)
        if record.present:
            assert record.confidence == hit["confidence"].iloc[0] and record.lift == hit["lift"].iloc[0]
        else:
            assert np.isnan(record.lift)
    assert table.set_index(["group", "partition"]).loc[("germany", PARTITIONS[-1]), "present"]


def test_missing_results_name_the_object(results: dict) -> None:
    from fpgrowth_dagster.explorer import ResultsNotFound

    with pytest.raises(ResultsNotFound, match=r"s3://fpgrowth-demo/results/groups/usa/2011-05-01/association_rules"
                                              r"\.parquet does not exist"):
        results["explorer"].rules("usa", PARTITIONS[-1])


def test_rules_plot_has_the_expected_axes_and_is_a_real_png(results: dict) -> None:
    from matplotlib.collections import PathCollection

    from fpgrowth_dagster.plots import plot_group_rules, png_size, save_png

    explorer = results["explorer"]
    rules = explorer.rules("germany", PARTITIONS[-1])
    fig = plot_group_rules(explorer, "germany", PARTITIONS[-1])
    ax, colorbar = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel(), colorbar.get_ylabel()) == ("support", "confidence", "lift")
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    offsets = points.get_offsets()
    assert len(offsets) == len(rules)
    np.testing.assert_allclose(sorted(offsets[:, 0]), sorted(rules["support"]))
    np.testing.assert_allclose(sorted(points.get_array()), sorted(rules["lift"]))
    path = save_png(fig, results["tmp"] / "rules.png", dpi=80)
    data = path.read_bytes()
    assert png_size(data) == (int(fig.get_figwidth() * 80), int(fig.get_figheight() * 80))
    assert len(data) > 10_000


def test_heatmap_is_group_by_rule_and_a_real_png(results: dict) -> None:
    from fpgrowth_dagster.plots import plot_rule_heatmap, png_size, save_png

    explorer = results["explorer"]
    matrix = explorer.rule_matrix(PARTITIONS[-1], "confidence", top=12)
    assert list(matrix.index) == ["germany", "france"] and matrix.shape[1] == 12
    fig = plot_rule_heatmap(explorer, PARTITIONS[-1], metric="confidence", top=12)
    ax, colorbar = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel(), colorbar.get_ylabel()) == ("rule", "group", "confidence")
    (image,) = ax.get_images()
    shown = np.ma.filled(image.get_array(), np.nan)
    np.testing.assert_array_equal(shown, matrix.to_numpy(dtype=float))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["germany", "france"]
    data = save_png(fig, results["tmp"] / "heatmap.png").read_bytes()
    width, height = png_size(data)
    assert width > 400 and height > 200 and len(data) > 10_000


def test_plot_cli_writes_pngs_and_names_missing_results(results: dict) -> None:
    from fpgrowth_dagster.plots import png_size

    tmp = results["tmp"]
    cli = [sys.executable, "-m", "fpgrowth_dagster", "plot"]
    ok = subprocess.run([*cli, "rules", "--group", "france", "--partition", PARTITIONS[0], "--out",
                         str(tmp / "cli_rules.png")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert png_size((tmp / "cli_rules.png").read_bytes()) == (750, 500)
    heat = subprocess.run([*cli, "heatmap", "--partition", PARTITIONS[-1], "--metric", "lift", "--top", "8",
                           "--out", str(tmp / "cli_heatmap.png")], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=300)
    assert heat.returncode == 0, heat.stderr
    assert "cli_heatmap.png" in heat.stdout and (tmp / "cli_heatmap.png").stat().st_size > 10_000
    missing = subprocess.run([*cli, "rules", "--group", "usa", "--partition", PARTITIONS[-1], "--out",
                              str(tmp / "usa.png")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert missing.returncode == 1
    assert "results/groups/usa/2011-05-01/association_rules.parquet does not exist" in missing.stderr
    assert not (tmp / "usa.png").exists()
