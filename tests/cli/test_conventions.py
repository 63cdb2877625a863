"""One set of command-line conventions, checked over every command (README, "Command-line conventions").

The table below is the contract: what each command takes as its input file (the first argument), its main
output (-o/--out), whether it prints a result (then --json), which old spellings still work (hidden), and
whether it takes SLO targets (then --ttft-ms / --tpot-ms). A new command must be added here."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

# command path: (input argument or None, has -o/--out, prints a result (--json), hidden old spellings, SLO)
COMMANDS = {
    "plan": (None, True, True, ("--csv",), True),
    "perf": (None, True, True, (), False),
    "calibrate": ("POINTS", True, True, ("--output",), False),
    "validate": ("POINTS", False, True, (), False),
    "forecast": ("SERIES", False, True, (), False),
    "optimize": ("SERIES", False, True, ("--series",), True),
    "simulate": ("TRACE", False, True, ("--trace",), True),
    "compare": ("TRACE", False, True, ("--trace",), True),
    "catalog": ("SECTION", False, True, (), False),
    "emulate": (None, False, False, (), False),
    "replay": ("TRACE", True, True, ("--trace",), True),
    "testbed": ("TRACE", False, True, ("--trace",), True),
    "traffic summarize": ("FILE", False, True, (), False),
    "traffic convert": ("FILE", True, True, (), False),
    "traffic synth": (None, True, True, (), False),
    "control": (None, False, False, (), True),
    "control manifests": (None, False, False, (), False),
    "gateway": (None, False, False, (), False),
    "gateway calibrate": (None, False, True, (), False),
    "report costs": (None, False, True, (), False),
}


def _commands() -> dict[str, object]:
    from fleetwise.cli import _register, app

    _register()
    group = typer.main.get_group(app)
    out = {}

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if path:
            out[" ".join(path)] = cmd
        for name, sub in (subs or {}).items():
            walk(sub, [*path, name])

    walk(group, [])
    return out


ALL = _commands()


def _options(cmd) -> dict[str, object]:
    return {opt: p for p in cmd.params for opt in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ()))
            if opt.startswith("-")}


def test_the_table_lists_every_command():
    groups = {"traffic", "report"}
    assert set(ALL) == set(COMMANDS) | groups, set(ALL) ^ (set(COMMANDS) | groups)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_command_follows_the_conventions(path):
    arg, has_out, prints, old, slo = COMMANDS[path]
    cmd = ALL[path]
    opts = _options(cmd)
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    if arg is None:
        assert not args, f"{path}: takes no positional input"
    else:
        assert args and (args[0].metavar or args[0].name.upper()) == arg, f"{path}: input is the first argument {arg}"
    if has_out:
        assert "-o" in opts and "--out" in opts and opts["-o"] is opts["--out"], f"{path}: -o/--out"
    else:
        assert "--output" not in opts or opts["--output"].hidden, path
    assert ("--json" in opts) == prints, f"{path}: --json when it prints a result"
    for spelling in old:
        assert spelling in opts and opts[spelling].hidden, f"{path}: {spelling} kept, hidden"
    if slo:
        assert {"--ttft-ms", "--tpot-ms"} <= set(opts), f"{path}: SLO targets as --ttft-ms/--tpot-ms"


def test_every_command_has_short_help_without_value_types_on_flags_or_old_spellings():
    from fleetwise.cli import app

    runner = CliRunner()
    for path in sorted(COMMANDS):
        res = runner.invoke(app, [*path.split(), "-h"], env={"COLUMNS": "100"})
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output, f"{path}: a flag shows a value type"
        for spelling in COMMANDS[path][3]:
            assert not re.search(re.escape(spelling) + r"\b(?!-)", res.output), f"{path}: {spelling} shows in --help"


def test_version_and_short_help():
    from fleetwise.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and re.fullmatch(r"fleetwise \S+\n", res.output), res.output
    assert runner.invoke(app, ["-h"]).exit_code == 0


def test_accelerator_syntax_sets_the_gpu_count_and_must_agree():
    from fleetwise.cli.options import accelerator
    from fleetwise.errors import ConfigError

    assert accelerator("h100:8", None) == ("h100", 8)
    assert accelerator("h100", 4) == ("h100", 4)
    assert accelerator("h100:8", 8) == ("h100", 8)
    with pytest.raises(ConfigError, match="says 8 GPUs but --gpus says 4"):
        accelerator("h100:8", 4)
    with pytest.raises(ConfigError, match="TYPE:COUNT"):
        accelerator("h100:x", None)
