"""Start-up: the CLI lists its commands without importing them, and a command imports only what it needs.

The wall times are measured by ``benchmarks/startup.py``; these tests check the imports behind them."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
import typer

from fleetwise.cli import _SETTINGS, COMMANDS

HEAVY = ("scipy", "matplotlib", "statsmodels", "pandas")

PROBE = """
import json, sys
import typer
import fleetwise.cli
from fleetwise.cli import app, main
typer.main.get_command(app)  # the CLI app, built
sys.argv = ["fleetwise", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*argv: str) -> set[str]:
    """Modules loaded by a fresh interpreter that builds the CLI and runs ``fleetwise ARGV``."""
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], check=False, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_help_imports_no_command_and_no_heavy_library():
    loaded = _modules_after("--help")
    assert _heavy(loaded) == []
    assert sorted(m for m in loaded if m.startswith("fleetwise.cli.")) == []  # no command module at all
    assert "typer.rich_utils" not in loaded  # the list of commands is plain click help


def test_a_command_imports_its_own_module_only():
    loaded = _modules_after("plan", "--help")
    assert "fleetwise.cli.plan" in loaded
    assert _heavy(loaded) == []  # scipy.stats is imported by the search itself, when plan runs
    others = {f"fleetwise.cli.{m}" for m, _ in COMMANDS.values()} - {"fleetwise.cli.plan", "fleetwise.cli.checks"}
    assert sorted(others & loaded) == []


def _real_commands() -> dict[str, tuple[str, click.Command]]:
    """Every command as its module registers it (imports them all)."""
    import importlib

    out = {}
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        sub = typer.Typer(**_SETTINGS)
        importlib.import_module(f"fleetwise.cli.{module}").register(sub)
        out.update({name: (module, cmd) for name, cmd in typer.main.get_group(sub).commands.items()})
    return out


def test_the_command_table_matches_the_commands():
    """COMMANDS names every command, in the module that registers it, with the start of its own help."""
    real = _real_commands()
    assert sorted(COMMANDS) == sorted(real)
    for name, (module, summary) in COMMANDS.items():
        assert real[name][0] == module, name
        help_text = " ".join((real[name][1].help or "").split())
        assert help_text.startswith(summary), f"{name}: {summary!r} does not start {help_text[:120]!r}"


def test_help_lists_every_command_within_80_columns(cli):
    res = cli("--help")
    assert res.code == 0
    listed = [line.split()[0] for line in res.out.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    assert listed == list(COMMANDS)
    assert max(len(line) for line in res.out.splitlines()) <= 80


@pytest.mark.parametrize("argv", [("plan", "--help"), ("traffic", "synth", "--help"), ("calibrate", "--help")])
def test_each_command_still_shows_its_own_help(cli, argv):
    res = cli(*argv)
    assert res.code == 0 and res.err == ""
    assert f"fleetwise {' '.join(argv[:-1])}" in res.out


def test_a_mistyped_command_is_still_suggested(cli, user_error):
    user_error(cli("simulat"), "no such command 'simulat'", "did you mean 'simulate'")
