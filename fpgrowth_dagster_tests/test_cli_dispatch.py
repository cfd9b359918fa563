"""The console script starts, lists its subcommands and rejects an unknown one."""

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fpgrowth_dagster", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_mine_command():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "mine" in result.stdout


def test_no_command_prints_usage_and_exits_2():
    result = run_cli()
    assert result.returncode == 2
    assert "usage: fpgrowth-dagster" in result.stderr


def test_unknown_command_is_rejected():
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
