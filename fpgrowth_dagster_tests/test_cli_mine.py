"""``fpgrowth-dagster mine`` as a real subprocess: grouped Online Retail, engine exactness, exit codes."""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fpgrowth_dagster.mining import DEFAULTS, association_rules, mine_itemsets, read_basket, read_fimi

ONLINE_RETAIL = "online_retail/online_retail_2010-12_to_2011-05.csv.gz"
CLEANING = ["--filter", "InvoiceNo not_startswith C", "--filter", "Quantity > 0"]
CONSOLE_SCRIPT = Path(sys.executable).parent / "fpgrowth-dagster"
MEMORY_LIMIT = 4 * 2**30  # a runaway group fails inside the child instead of exhausting the machine


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_mine(*args: str | Path, console_script: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT)] if console_script else [sys.executable, "-m", "fpgrowth_dagster"]
    return subprocess.run([*command, "mine", *map(str, args)], capture_output=True, text=True, timeout=600,
                          preexec_fn=_limit_memory)


def retail_by_country(data_dir: Path, out: Path, *extra: str, console_script: bool = False):
    return run_mine(data_dir / ONLINE_RETAIL, "--format", "long", "--group-column", "Country", *CLEANING,
                    "--min-support", "0.01", *extra, "--out", out, console_script=console_script)


def list_rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(tuple(v) if not isinstance(v, (str, float, int)) else v for v in row)
            for row in frame.itertuples(index=False)]


@pytest.fixture(scope="module")
def auto_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("mine_auto")
    return retail_by_country(data_dir, out, console_script=True), out


def test_every_country_is_mined_or_skipped_with_default_guards(auto_run) -> None:
    proc, out = auto_run
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    groups = summary["groups"]
    assert len(groups) == 36 and summary["totals"]["groups"] == 36
    assert {g["status"] for g in groups} == {"mined", "skipped"}
    assert summary["totals"]["failed"] == 0
    assert summary["settings"]["min_count"] == DEFAULTS.min_count
    assert summary["settings"]["min_transactions"] == DEFAULTS.min_transactions
    assert summary["source"]["filters"] == [{"column": "InvoiceNo", "op": "not_startswith", "value": "C"},
                                            {"column": "Quantity", "op": ">", "value": 0}]
    assert sum(g["n_transactions"] for g in groups) == 8455
    for group in groups:
        directory = out / group["dir"]
        if group["status"] == "skipped":
            assert group["reason"].endswith(f"< min_transactions {DEFAULTS.min_transactions}")
            assert not (directory / "frequent_itemsets.parquet").exists()
        else:
            itemsets = pd.read_parquet(directory / "frequent_itemsets.parquet")
            rules = pd.read_parquet(directory / "association_rules.parquet")
            assert (len(itemsets), len(rules)) == (group["n_itemsets"], group["n_rules"])
            assert group["n_items"] > 0 and group["seconds"] > 0 and group["peak_rss_bytes"] > 0
    uk = next(g for g in groups if g["group"] == "United Kingdom")
    assert uk["dir"] == "United_Kingdom" and uk["status"] == "mined" and uk["n_transactions"] == 7726
    # one progress line per group on stderr
    assert sum(line.startswith("[") for line in proc.stderr.splitlines()) == 36
    assert "[36/36]" in proc.stderr


def test_mined_countries_equal_the_mlxtend_engine_exactly(auto_run, data_dir: Path, tmp_path: Path) -> None:
    _, auto_out = auto_run
    proc = retail_by_country(data_dir, tmp_path, "--engine", "mlxtend")
    assert proc.returncode == 0, proc.stderr
    auto = {g["group"]: g for g in json.loads((auto_out / "summary.json").read_text())["groups"]}
    reference = {g["group"]: g for g in json.loads((tmp_path / "summary.json").read_text())["groups"]}
    assert {k: g["status"] for k, g in auto.items()} == {k: g["status"] for k, g in reference.items()}
    mined = [g for g in auto.values() if g["status"] == "mined"]
    assert len(mined) == 10
    for group in mined:
        for table in ("frequent_itemsets.parquet", "association_rules.parquet"):
            ours = pd.read_parquet(auto_out / group["dir"] / table)
            theirs = pd.read_parquet(tmp_path / group["dir"] / table)
            if table.startswith("frequent"):
                assert list_rows(ours) == list_rows(theirs), group["group"]
            else:
                label_columns = ["antecedents", "consequents"]
                assert list_rows(ours[label_columns]) == list_rows(theirs[label_columns]), group["group"]
                pd.testing.assert_frame_equal(ours.drop(columns=label_columns), theirs.drop(columns=label_columns),
                                              rtol=0, atol=1e-9)


def test_a_failing_group_gives_exit_1_and_the_others_are_written(data_dir: Path, tmp_path: Path) -> None:
    proc = retail_by_country(data_dir, tmp_path, "--max-itemsets", "1000")
    assert proc.returncode == 1, proc.stderr
    groups = {g["group"]: g for g in json.loads((tmp_path / "summary.json").read_text())["groups"]}
    failed = sorted(name for name, g in groups.items() if g["status"] == "failed")
    assert failed == ["France", "Germany", "United Kingdom"]  # 1,512, 1,106 and 2,142 itemsets
    for name in failed:
        assert groups[name]["reason"].startswith("BudgetExceeded:") and "max_itemsets=1,000" in groups[name]["reason"]
        assert not (tmp_path / groups[name]["dir"] / "frequent_itemsets.parquet").exists()
    spain = groups["Spain"]
    assert spain["status"] == "mined"
    assert len(pd.read_parquet(tmp_path / spain["dir"] / "frequent_itemsets.parquet")) == spain["n_itemsets"] == 23
    assert "[35/36] United Kingdom: failed: BudgetExceeded" in proc.stderr


def test_basket_and_fimi_inputs_are_one_group_all(data_dir: Path, tmp_path: Path) -> None:
    groceries = data_dir / "groceries" / "groceries.csv"
    proc = run_mine(groceries, "--format", "basket", "--min-support", "0.02", "--metric", "lift",
                    "--min-threshold", "1.5", "--out", tmp_path / "groceries")
    assert proc.returncode == 0, proc.stderr
    expected = mine_itemsets(read_basket(groceries), min_support=0.02, min_count=DEFAULTS.min_count)
    itemsets = pd.read_parquet(tmp_path / "groceries" / "all" / "frequent_itemsets.parquet")
    assert list_rows(itemsets) == list_rows(expected.to_frame())
    rules = pd.read_parquet(tmp_path / "groceries" / "all" / "association_rules.parquet")
    assert len(rules) == len(association_rules(expected, metric="lift", min_threshold=1.5)) > 0
    chess = data_dir / "chess" / "chess.dat"
    proc = run_mine(chess, "--format", "fimi", "--min-support", "0.9", "--target", "closed", "--max-len", "3",
                    "--out", tmp_path / "chess")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "chess" / "summary.json").read_text())
    expected_chess = mine_itemsets(read_fimi(chess), min_support=0.9, min_count=5, target="closed", max_len=3)
    assert [g["group"] for g in summary["groups"]] == ["all"]
    assert summary["groups"][0]["n_itemsets"] == len(expected_chess) > 0
    assert summary["settings"]["target"] == "closed" and summary["settings"]["max_len"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--item-column", "Item"], r"online_retail_2010-12_to_2011-05\.csv\.gz: missing item column 'Item'; "
                                    r"the file has columns: InvoiceNo, StockCode"),
        (["--filter", "Qty > 0"], r"missing column 'Qty' used by filter 'Qty > 0'"),
        (["--filter", "Quantity > 10000000"], r"no rows left after the filters"),
        (["--min-support", "1.5"], r"min_support must be a number in \(0, 1\], got 1.5"),
        (["--metric", "confidance"], r"unknown metric 'confidance'"),
        (["--filter", "Quantity is big"], r"cannot parse filter 'Quantity is big'"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_message(data_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    if "--min-support" not in args:
        args = [*args, "--min-support", "0.01"]
    proc = run_mine(data_dir / ONLINE_RETAIL, "--format", "long", *args, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fpgrowth-dagster mine: ")
    assert re.search(message, last), last
    assert not (tmp_path / "out" / "summary.json").exists()


def test_usage_errors_exit_2(data_dir: Path, tmp_path: Path) -> None:
    missing = run_mine(tmp_path / "nope.csv", "--format", "long", "--min-support", "0.1", "--out", tmp_path)
    assert missing.returncode == 2 and f"{tmp_path / 'nope.csv'}: file not found" in missing.stderr
    wrong = run_mine(data_dir / "chess" / "chess.dat", "--format", "fimi", "--group-column", "Country",
                     "--min-support", "0.9", "--out", tmp_path)
    assert wrong.returncode == 2 and "--group-column applies only to --format long" in wrong.stderr
    no_support = run_mine(data_dir / "chess" / "chess.dat", "--format", "fimi", "--out", tmp_path)
    assert no_support.returncode == 2 and "--min-support" in no_support.stderr
